package bus

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure an in-process NATS server.
type EmbeddedOptions struct {
	// Dir holds the JetStream store; it is required with JetStream. A server
	// started again on the same Dir finds its streams, key/value buckets and
	// object stores.
	Dir string
	// Host is the address clients connect to. The default is 127.0.0.1.
	Host string
	// Port is the client port: -1 picks a free one, 0 means NATS's default
	// (4222).
	Port int
	// JetStream enables JetStream, stored under Dir.
	JetStream bool
	// Name is the server's name. The default is "xfaas".
	Name string
	// Logger, when set, receives the server's log lines; debug and trace
	// lines only when it is at that level. The default is no log.
	Logger hclog.Logger
}

// MaxPayload is the largest message the embedded server accepts: a logged
// write of durability "log" carries its value, up to 4 MiB, and its key.
// An external server needs max_payload at least this large for such
// values.
const MaxPayload = 8 << 20

// Embedded is a NATS server running in this process, as `xfaas dev` runs it.
type Embedded struct {
	s        *server.Server
	shutdown sync.Once
}

// StartEmbedded starts a server and returns once it accepts clients.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.JetStream && o.Dir == "" {
		return nil, errors.New("embedded nats: JetStream needs a Dir")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Name == "" {
		o.Name = "xfaas"
	}
	s, err := server.NewServer(&server.Options{
		ServerName: o.Name, Host: o.Host, Port: o.Port,
		JetStream: o.JetStream, StoreDir: o.Dir,
		// Session logs carry whole values (up to 4 MiB each).
		MaxPayload: MaxPayload,
		NoSigs:     true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(natsLogger{o.Logger}, o.Logger.IsDebug(), o.Logger.IsTrace(), false)
	}
	e := &Embedded{s: s}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		e.Shutdown()
		return nil, fmt.Errorf("embedded nats did not accept clients on %s within 10s", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
	}
	return e, nil
}

// ClientURL is the URL clients connect to: nats://host:port.
func (e *Embedded) ClientURL() string { return e.s.ClientURL() }

// Shutdown stops the server and waits until it has stopped, JetStream
// stores flushed and closed. It is idempotent.
func (e *Embedded) Shutdown() {
	e.shutdown.Do(func() {
		e.s.Shutdown()
		e.s.WaitForShutdown()
	})
}

// natsLogger writes the server's log lines to an hclog.Logger.
type natsLogger struct{ l hclog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Info(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  { n.l.Trace(fmt.Sprintf(format, v...)) }
