package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/hint"
)

// Function is a deployed function: the record kept in the functions
// bucket. Its secrets (the hint keys) never leave the control plane.
type Function struct {
	Name    string          `json:"name"`
	Version uint64          `json:"version"` // the bucket revision of this record
	Digest  string          `json:"digest"`
	Size    int             `json:"size"`
	Config  fnconfig.Config `json:"config"`
	// VerifyKey checks the session hints of the function (text form).
	VerifyKey string `json:"verify_key,omitempty"`
	// HookKeyset seals the labels a hook computes (text form): a full
	// secret, made at the first deploy with a hook and kept after, so the
	// hook's sessions keep their ids if it is removed and named again. It
	// never verifies client hints: that is VerifyKey's alone.
	HookKeyset string `json:"hook_keyset,omitempty"`
	// Incarnation is made when the function is created and kept by its
	// updates; a function deleted and created again under its name has a
	// new one. Its sessions' checkpoints and logs carry it (see
	// proxy.Binding). Empty for records from before incarnations.
	Incarnation string    `json:"incarnation,omitempty"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`

	verify hint.VerifyKey
	seal   hint.Keyset
}

// parseKeys fills the parsed forms of the text keys: verify from VerifyKey
// only, seal from HookKeyset.
func (f *Function) parseKeys() error {
	if f.VerifyKey != "" {
		k, err := hint.ParseVerifyKey(f.VerifyKey)
		if err != nil {
			return err
		}
		f.verify = k
	}
	if f.HookKeyset != "" {
		k, err := hint.ParseKeyset(f.HookKeyset)
		if err != nil {
			return err
		}
		f.seal = k
	}
	return nil
}

// Buckets of the function store.
const (
	functionsBucket = "xfaas-functions"
	modulesBucket   = "xfaas-modules"
)

// FunctionStore keeps functions in a JetStream key/value bucket and modules
// in a JetStream object store, with an in-memory copy of every function
// kept current by a watch, so the request path never does I/O for a
// function. See RATIONALE.md, "Control plane: what lives where".
type FunctionStore struct {
	kv  jetstream.KeyValue
	obj jetstream.ObjectStore
	log hclog.Logger

	mu      sync.RWMutex
	fns     map[string]*Function
	modules map[string][]byte // by digest, loaded on first use
	deleted []func(name string)
	updated []func(*Function)

	// modMu serializes Deploy and Delete, so that a delete never removes
	// the module of a function being deployed with the same digest.
	modMu sync.Mutex

	watcher jetstream.KeyWatcher
	done    chan struct{}
}

// OpenFunctionStore creates the buckets if needed and loads every function.
func OpenFunctionStore(ctx context.Context, nc *nats.Conn, log hclog.Logger) (*FunctionStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: functionsBucket, History: 1})
	if err != nil {
		return nil, fmt.Errorf("functions bucket: %w", err)
	}
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: modulesBucket})
	if err != nil {
		return nil, fmt.Errorf("modules bucket: %w", err)
	}
	s := &FunctionStore{kv: kv, obj: obj, log: log, fns: map[string]*Function{}, modules: map[string][]byte{}, done: make(chan struct{})}
	if s.watcher, err = kv.WatchAll(context.Background()); err != nil {
		return nil, err
	}
	// The watch delivers every current record, then a nil entry.
	for e := range s.watcher.Updates() {
		if e == nil {
			break
		}
		s.apply(e)
	}
	go s.follow()
	return s, nil
}

// follow applies changes made by other control-plane replicas.
func (s *FunctionStore) follow() {
	defer close(s.done)
	for e := range s.watcher.Updates() {
		if e != nil {
			s.apply(e)
		}
	}
}

func (s *FunctionStore) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		s.mu.Lock()
		delete(s.fns, e.Key())
		hooks := s.deleted
		s.mu.Unlock()
		for _, fn := range hooks {
			fn(e.Key())
		}
		return
	}
	f := &Function{}
	if err := json.Unmarshal(e.Value(), f); err != nil {
		s.log.Error("undecodable function record", "function", e.Key(), "error", err)
		return
	}
	if err := f.parseKeys(); err != nil {
		s.log.Error("function record with bad keys", "function", e.Key(), "error", err)
		return
	}
	f.Version = e.Revision()
	s.install(f)
}

// install makes f the cached version of its function if it is newer than
// the cached one, and then runs the OnUpdate hooks. Both a local deploy
// and the watch call it, whichever comes first: the hooks run once per
// version.
func (s *FunctionStore) install(f *Function) {
	s.mu.Lock()
	old := s.fns[f.Name]
	newer := old == nil || old.Version < f.Version
	if newer {
		s.fns[f.Name] = f
	}
	hooks := s.updated
	s.mu.Unlock()
	if newer && old != nil {
		for _, fn := range hooks {
			fn(f)
		}
	}
}

// OnUpdate registers fn to run when a deployed function gets a new
// version, here or by another replica. fn must not block.
func (s *FunctionStore) OnUpdate(fn func(*Function)) {
	s.mu.Lock()
	s.updated = append(s.updated, fn)
	s.mu.Unlock()
}

// OnDelete registers fn to run when a function is deleted, here or by
// another replica.
func (s *FunctionStore) OnDelete(fn func(name string)) {
	s.mu.Lock()
	s.deleted = append(s.deleted, fn)
	s.mu.Unlock()
}

// Lookup returns the current version of a function without I/O.
func (s *FunctionStore) Lookup(name string) (*Function, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f, ok := s.fns[name]
	return f, ok
}

// List returns every function, sorted by name.
func (s *FunctionStore) List() []*Function {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Function, 0, len(s.fns))
	for _, f := range s.fns {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *Function) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Deploy stores the module (content-addressed, once per digest) and
// creates or updates the function record. verifyKey replaces the hint
// verification key when not empty; a hook function gets a keyset of its own
// on first deploy. Concurrent deploys of one function are serialized by the
// bucket's revisions.
func (s *FunctionStore) Deploy(ctx context.Context, name string, module []byte, digest string, cfg fnconfig.Config, verifyKey string) (*Function, error) {
	s.modMu.Lock()
	defer s.modMu.Unlock()
	if err := s.putModule(ctx, digest, module); err != nil {
		return nil, err
	}
	for range 8 {
		f, rev, err := s.next(ctx, name, len(module), digest, cfg, verifyKey)
		if err != nil {
			return nil, err
		}
		data, err := json.Marshal(f)
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			rev, err = s.kv.Create(ctx, name, data)
		} else {
			rev, err = s.kv.Update(ctx, name, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another deploy won; build on its record
		}
		if err != nil {
			return nil, fmt.Errorf("store function: %w", err)
		}
		f.Version = rev
		s.install(f)
		return f, nil
	}
	return nil, apierror.New(apierror.Conflict, "function %s is being deployed concurrently; try again", name)
}

// next builds the record that follows the stored one (rev 0: none).
func (s *FunctionStore) next(ctx context.Context, name string, size int, digest string, cfg fnconfig.Config, verifyKey string) (*Function, uint64, error) {
	now := time.Now().UTC()
	f := &Function{Name: name, Digest: digest, Size: size, Config: cfg, VerifyKey: verifyKey, Created: now, Updated: now}
	var rev uint64
	e, err := s.kv.Get(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, 0, err
	default:
		var old Function
		if err := json.Unmarshal(e.Value(), &old); err != nil {
			return nil, 0, err
		}
		rev, f.Created, f.Incarnation = e.Revision(), old.Created, old.Incarnation
		if f.VerifyKey == "" {
			f.VerifyKey = old.VerifyKey // keep the keyset: sessions keep their ids
		}
		f.HookKeyset = old.HookKeyset
	}
	if rev == 0 {
		f.Incarnation = newIncarnation()
	}
	if cfg.Hook != "" && f.HookKeyset == "" {
		text, err := hint.Generate().MarshalText()
		if err != nil {
			return nil, 0, err
		}
		f.HookKeyset = string(text)
	}
	return f, rev, f.parseKeys()
}

// newIncarnation returns 128 random bits in hex.
func newIncarnation() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func objectName(digest string) string { return strings.Replace(digest, ":", "-", 1) }

// putModule stores module unless the object store has it. The memory copy
// does not stand for the stored one: another replica may have deleted it
// with the last function that used it.
func (s *FunctionStore) putModule(ctx context.Context, digest string, module []byte) error {
	if _, err := s.obj.GetInfo(ctx, objectName(digest)); err != nil {
		if _, err := s.obj.PutBytes(ctx, objectName(digest), module); err != nil {
			return fmt.Errorf("store module: %w", err)
		}
	}
	s.mu.Lock()
	s.modules[digest] = module
	s.mu.Unlock()
	return nil
}

// Module returns a module by digest, from memory or the object store.
func (s *FunctionStore) Module(ctx context.Context, digest string) ([]byte, error) {
	s.mu.RLock()
	m, ok := s.modules[digest]
	s.mu.RUnlock()
	if ok {
		return m, nil
	}
	m, err := s.obj.GetBytes(ctx, objectName(digest))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", digest, err)
	}
	s.mu.Lock()
	s.modules[digest] = m
	s.mu.Unlock()
	return m, nil
}

// Delete removes a function, and its module when no other function uses it.
func (s *FunctionStore) Delete(ctx context.Context, name string) error {
	s.modMu.Lock()
	defer s.modMu.Unlock()
	f, ok := s.Lookup(name)
	if !ok {
		return apierror.New(apierror.NotFound, "no function %q", name)
	}
	if err := s.kv.Delete(ctx, name); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.fns, name)
	used := false
	for _, g := range s.fns {
		used = used || g.Digest == f.Digest
	}
	if !used {
		delete(s.modules, f.Digest)
	}
	s.mu.Unlock()
	if !used {
		if err := s.obj.Delete(ctx, objectName(f.Digest)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			s.log.Warn("failed to delete a module", "digest", f.Digest, "error", err)
		}
	}
	return nil
}

// Close stops following the bucket.
func (s *FunctionStore) Close() {
	_ = s.watcher.Stop()
	<-s.done
}
