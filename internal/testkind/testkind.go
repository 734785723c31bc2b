// Package testkind is a gateway kind for tests only: a line protocol over
// TCP that exercises the framework (connect, publish, subscribe, ack,
// takeover, kick) without any real protocol's codec. The binary includes it
// only when built with the "testkind" tag.
package testkind

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/transports"
)

// The protocol is over TCP: one text command per line.
//
//	CONNECT <clientid> <username> <password> [persist]  → CONNACK ok | CONNACK err <why>
//	PUB <qos> <topic> <payload>                          → PUBACK ok | PUBACK err <why>
//	SUB <qos> <filter>                                   → SUBACK ok | SUBACK err <why>
//	UNSUB <filter>                                       → UNSUBACK ok | UNSUBACK err <why>
//	ACK <id>
//	WHOAMI                                               → ME <clientid> <mountpoint>
//
// Deliveries arrive as "MSG <id> <qos> <topic> <payload>"; a kick as
// "KICK <reason>" followed by a close.
// Spec is the kind's own settings.
type Spec struct {
	Greeting string `toml:"greeting"`
	Restart  bool   `toml:"restart"` // a change of this needs a restart
}

// Proto is one gateway instance of the kind.
type Proto struct {
	gw      *gateway.Gateway
	Updates atomic.Int32 // live updates applied
	spec    atomic.Pointer[Spec]
}

var instances sync.Map // kind name → *Proto (latest)

// Instance returns the latest instance built for a kind name.
func Instance(name string) *Proto {
	p, _ := instances.Load(name)
	pp, _ := p.(*Proto)
	return pp
}

// Register registers the kind under name (several names give several
// independent kinds, for isolation tests).
func Register(name string) {
	gateway.Register(gateway.Kind{
		Name:       name,
		Transports: []string{"tcp"},
		NewConfig:  func() any { return &Spec{Greeting: "hello"} },
		New: func(gw *gateway.Gateway) (gateway.Protocol, error) {
			p := &Proto{gw: gw}
			p.spec.Store(gw.Spec().(*Spec))
			instances.Store(name, p)
			return p, nil
		},
	})
}

// Update implements gateway.Protocol.
func (p *Proto) Update(spec any) error {
	s := spec.(*Spec)
	if s.Restart != p.spec.Load().Restart {
		return gateway.ErrRestartRequired
	}
	p.spec.Store(s)
	p.Updates.Add(1)
	return nil
}

// Serve implements gateway.Protocol.
func (p *Proto) Serve(ctx context.Context, l *gateway.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.handle(ctx, l, c)
		}()
	}
}

type lineChan struct {
	mu sync.Mutex
	c  transports.Conn
}

func (ch *lineChan) send(format string, args ...any) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	fmt.Fprintf(ch.c, format+"\n", args...)
}

func (ch *lineChan) Deliver(d gateway.Delivery) {
	ch.send("MSG %d %d %s %s", d.ID, d.QoS, d.Topic, d.Payload)
}

func (ch *lineChan) Kick(reason string) {
	ch.send("KICK %s", reason)
	ch.c.Close()
}

func (p *Proto) handle(ctx context.Context, l *gateway.Listener, c transports.Conn) {
	defer c.Close()
	idle := l.Gateway().WatchIdle(c)
	defer idle.Stop()
	ch := &lineChan{c: c}
	var cl *gateway.Client
	defer func() {
		if cl != nil {
			cl.Close("closed")
		}
	}()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "CONNECT":
			if len(f) < 4 {
				ch.send("CONNACK err usage")
				continue
			}
			ci := l.NewClientInfo(c)
			ci.ClientID, ci.Username, ci.Password = f[1], f[2], []byte(f[3])
			if ci.Username == "-" {
				ci.Username = ""
			}
			if err := l.Authenticate(ctx, ci); err != nil {
				ch.send("CONNACK err %v", err)
				return
			}
			opts := gateway.ConnectOptions{CleanStart: true, Held: true}
			if len(f) > 4 && f[4] == "persist" {
				opts = gateway.ConnectOptions{Expiry: -1, Held: true}
			}
			var present bool
			var err error
			cl, present, err = l.Connect(ci, ch, opts)
			if err != nil {
				ch.send("CONNACK err %v", err)
				return
			}
			idle.Stop()
			ch.send("CONNACK ok %v %s", present, p.spec.Load().Greeting)
			cl.Resume()
		case "PUB":
			if cl == nil || len(f) < 4 {
				ch.send("PUBACK err not connected")
				continue
			}
			q, _ := strconv.Atoi(f[1])
			reply(ch, "PUBACK", cl.Publish(f[2], []byte(f[3]), byte(q), false, nil))
		case "SUB":
			if cl == nil || len(f) < 3 {
				ch.send("SUBACK err not connected")
				continue
			}
			q, _ := strconv.Atoi(f[1])
			cl.Hold()
			reply(ch, "SUBACK", cl.Subscribe(f[2], byte(q)))
			cl.Resume()
		case "UNSUB":
			if cl == nil || len(f) < 2 {
				ch.send("UNSUBACK err not connected")
				continue
			}
			reply(ch, "UNSUBACK", cl.Unsubscribe(f[1]))
		case "ACK":
			id, _ := strconv.ParseUint(f[1], 10, 64)
			if cl != nil {
				cl.Ack(id)
			}
		case "WHOAMI":
			if cl != nil {
				ch.send("ME %s %s", cl.ClientID(), cl.Info().Mountpoint)
			}
		}
	}
}

func reply(ch *lineChan, what string, err error) {
	switch {
	case err == nil:
		ch.send("%s ok", what)
	case errors.Is(err, gateway.ErrDenied):
		ch.send("%s err denied", what)
	default:
		ch.send("%s err %v", what, err)
	}
}
