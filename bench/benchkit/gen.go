package benchkit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// A Generator makes virtual devices of one protocol. Implementations
// register a constructor with Register from init; the bench, the
// scenarios and the fault suite only ever go through this interface, so a
// new protocol (CoAP, LwM2M, JT/T 808…) is one file.
type Generator interface {
	// Dial connects device number dev and makes it ready to publish: for
	// MQTT-SN CONNECT and REGISTER, for STOMP CONNECT. It must honour ctx.
	Dial(ctx context.Context, dev uint32) (Device, error)
	// Topic is the cloud-side MQTT topic dev's messages arrive on when the
	// agent forwards them unchanged (no mountpoint, no topic_prefix).
	Topic(dev uint32) string
}

// A Device is one connected virtual device. It is used from one goroutine.
type Device interface {
	// Publish sends one message. At QoS 1 it returns nil only once the
	// far end acknowledged it (PUBACK, RECEIPT): the message is then
	// promised to arrive. Any error means "not acknowledged"; the caller
	// closes the device and dials again.
	Publish(ctx context.Context, payload []byte) error
	// Close ends the session (best effort) and frees the socket.
	Close() error
}

// Target is what a generator is constructed for.
type Target struct {
	Addr string // host:port of the gateway under test (or the broker, for "direct")
	QoS  byte
	// Timeout bounds one acknowledgement or handshake (default 5s).
	Timeout time.Duration
	// KeepAlive announced by devices that have one (default 600s, so idle
	// devices stay connected through a run).
	KeepAlive time.Duration
	// Prefix names topics: Prefix + protocol + "/" + dev (default "bench/").
	Prefix string
}

func (t Target) withDefaults() Target {
	if t.Timeout == 0 {
		t.Timeout = 5 * time.Second
	}
	if t.KeepAlive == 0 {
		t.KeepAlive = 600 * time.Second
	}
	if t.Prefix == "" {
		t.Prefix = "bench/"
	}
	return t
}

// ErrNotAcked is a QoS 1 publish the far end refused or did not answer.
var ErrNotAcked = errors.New("benchkit: publish not acknowledged")

var registry = map[string]func(Target) (Generator, error){}

// Register makes a protocol's generator available by name. It panics on
// a duplicate name, as registering twice is a programming error.
func Register(name string, newGen func(Target) (Generator, error)) {
	if _, dup := registry[name]; dup {
		panic("benchkit: generator registered twice: " + name)
	}
	registry[name] = newGen
}

// NewGenerator returns the generator registered as name.
func NewGenerator(name string, t Target) (Generator, error) {
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("benchkit: unknown protocol %q (have %v)", name, Protocols())
	}
	return f(t.withDefaults())
}

// Protocols lists registered generator names.
func Protocols() []string {
	var n []string
	for k := range registry {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
