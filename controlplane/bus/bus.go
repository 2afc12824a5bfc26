// Package bus carries session address updates over NATS: who is the primary
// and who are the secondaries of each session namespace, and where they
// listen (DESIGN.md, "NATS").
//
// Every placement, move, scale or release is published as an [Update] on
// subject xfaas.addr.<function>.<session>. A [Publisher] stamps updates
// with a sequence number from a hybrid clock; a [Table] follows the subjects
// of some functions (or all) and keeps, per container, the update with the
// highest sequence number. Control-plane replicas use a Table as their
// routing cache; session containers of functions that declare dependencies
// use one to find the primaries they pull state from.
//
// # Ordering and staleness
//
// Updates go over core NATS, at most once and without cross-publisher
// ordering: two control-plane replicas may publish about one session, and a
// subscriber may see their updates in either order, or miss one while
// reconnecting. The sequence number alone decides: an update older than what
// a table holds for that container never overwrites it, whatever its arrival
// order, so tables that saw the same updates agree. A "down" removes the
// container and is remembered for [TableOptions.TombstoneTTL] so that a late
// "up" of the same container does not bring it back.
//
// A table is a cache, never the source of truth (that is the namespace
// registry: Consul, or memory in dev). It can be stale in two ways. It may
// miss an update entirely (a lost message, or one published before it
// subscribed): on a miss it asks a responder of the lookup subject (see
// [ServeLookups]), which the control plane answers from its own table and,
// when that knows no primary, from its registry. And it
// may point at a container that died without a "down": a caller that
// cannot reach the address reports the state unavailable until a newer
// update arrives. Sequence numbers come from wall clocks, so across processes
// "later wins" holds to within the clocks' skew (NTP keeps it to
// milliseconds; placements of one session are seconds apart).
//
// See RATIONALE.md for why address updates use core NATS and not JetStream.
package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/hint"
)

// ErrInvalid is wrapped by every error about a malformed update, subject
// token or lookup.
var ErrInvalid = errors.New("invalid address update")

// SubjectPrefix starts every address update subject.
const SubjectPrefix = "xfaas.addr."

// Roles of a container in its namespace.
const (
	RolePrimary   = "primary"
	RoleSecondary = "secondary"
)

// States of a container.
const (
	Up   = "up"
	Down = "down"
)

// Limits on the free-form fields of an update.
const (
	maxContainerLen = 128
	maxNodeLen      = 256
	maxAddrLen      = 1024
)

// Update says where one container of a session namespace is, or that it is
// gone. The JSON form is the public contract of DESIGN.md.
type Update struct {
	Function  string `json:"function"`
	Session   string `json:"session"`
	Role      string `json:"role"`      // RolePrimary or RoleSecondary
	Container string `json:"container"` // the container id
	Node      string `json:"node"`
	Addr      string `json:"addr"`  // the container's wire address; required when up
	State     string `json:"state"` // Up or Down
	// Seq orders updates of one container: the highest wins. Publisher
	// assigns it (unix nanoseconds from a hybrid clock).
	Seq uint64 `json:"seq"`
}

// Subject is the subject of the updates of (function, session). It does not
// check its arguments; see CheckFunction and CheckSession.
func Subject(function, session string) string {
	return SubjectPrefix + function + "." + session
}

// CheckFunction returns an error wrapping ErrInvalid unless name is a
// function name ([a-z0-9][a-z0-9_-]{0,62}), which is safe as a subject token.
func CheckFunction(name string) error {
	if !fnconfig.ValidFunctionName(name) {
		return fmt.Errorf("%w: %q is not a function name", ErrInvalid, name)
	}
	return nil
}

// CheckSession returns an error wrapping ErrInvalid unless id is a session
// id: 32 lowercase hex digits, or "default".
func CheckSession(id string) error {
	if !hint.ValidSessionID(id) {
		return fmt.Errorf("%w: %q is not a session id", ErrInvalid, id)
	}
	return nil
}

// ParseSubject returns the function and session of an update subject.
func ParseSubject(subject string) (function, session string, err error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix)
	if ok {
		function, session, ok = strings.Cut(rest, ".")
	}
	if !ok {
		return "", "", fmt.Errorf("%w: subject %q is not %s<function>.<session>", ErrInvalid, subject, SubjectPrefix)
	}
	if err := CheckFunction(function); err != nil {
		return "", "", err
	}
	if err := CheckSession(session); err != nil {
		return "", "", err
	}
	return function, session, nil
}

// Validate checks every field of u.
func (u Update) Validate() error {
	if err := CheckFunction(u.Function); err != nil {
		return err
	}
	if err := CheckSession(u.Session); err != nil {
		return err
	}
	switch {
	case u.Role != RolePrimary && u.Role != RoleSecondary:
		return fmt.Errorf("%w: role %q is neither %s nor %s", ErrInvalid, u.Role, RolePrimary, RoleSecondary)
	case u.State != Up && u.State != Down:
		return fmt.Errorf("%w: state %q is neither %s nor %s", ErrInvalid, u.State, Up, Down)
	case !validContainer(u.Container):
		return fmt.Errorf("%w: container %q is not an id (1 to %d of [A-Za-z0-9._:-])", ErrInvalid, u.Container, maxContainerLen)
	case u.State == Up && u.Addr == "":
		return fmt.Errorf("%w: container %s is up without an address", ErrInvalid, u.Container)
	case len(u.Addr) > maxAddrLen || len(u.Node) > maxNodeLen:
		return fmt.Errorf("%w: address or node of container %s too long", ErrInvalid, u.Container)
	case u.Seq == 0:
		return fmt.Errorf("%w: update of container %s has no seq", ErrInvalid, u.Container)
	}
	return nil
}

func validContainer(id string) bool {
	if len(id) == 0 || len(id) > maxContainerLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// Encode returns the JSON form of u.
func (u Update) Encode() []byte {
	b, _ := json.Marshal(u) // strings and a number: cannot fail
	return b
}

// Decode parses and validates an update. Unknown fields are ignored, so that
// a newer publisher may add some.
func Decode(data []byte) (Update, error) {
	var u Update
	if err := json.Unmarshal(data, &u); err != nil {
		return Update{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := u.Validate(); err != nil {
		return Update{}, err
	}
	return u, nil
}

// decodeOn decodes an update received on subject, which must be the
// update's own subject: a payload cannot claim another session.
func decodeOn(subject string, data []byte) (Update, error) {
	u, err := Decode(data)
	if err != nil {
		return Update{}, err
	}
	if subject != Subject(u.Function, u.Session) {
		return Update{}, fmt.Errorf("%w: update of %s/%s on subject %s", ErrInvalid, u.Function, u.Session, subject)
	}
	return u, nil
}

// newer reports whether a supersedes b, two updates of one container. The
// order is total, so every table keeps the same update whatever order the
// updates arrive in: by seq, then "down" over "up" (a tie with a release is
// resolved as released), then by the remaining fields.
func newer(a, b Update) bool {
	if a.Seq != b.Seq {
		return a.Seq > b.Seq
	}
	if a.State != b.State {
		return a.State == Down
	}
	if a.Addr != b.Addr {
		return a.Addr > b.Addr
	}
	if a.Role != b.Role {
		return a.Role > b.Role
	}
	return a.Node > b.Node
}
