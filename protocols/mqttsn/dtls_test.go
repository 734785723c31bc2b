package mqttsn_test

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
)

const dtlsSection = `
[gateway.mqttsn.listeners.dtls.default]
bind = "127.0.0.1:0"
psk = [{ identity = "dev1", key = "secret-of-dev1" }]
`

func dtlsOptions(cid bool) []dtls.ClientOption {
	o := []dtls.ClientOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return []byte("secret-of-dev1"), nil }),
		dtls.WithPSKIdentityHint([]byte("dev1")),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8),
	}
	if cid {
		o = append(o, dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()))
	}
	return o
}

func handshake(t *testing.T, c *dtls.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("dtls handshake: %v", err)
	}
	t.Cleanup(func() { c.Close() })
}

func dialDTLS(t *testing.T, addr string) *sn.Device {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dtls.DialWithOptions("udp", ua, dtlsOptions(false)...)
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, c)
	return sn.NewDevice(t, c)
}

func TestDTLS(t *testing.T) {
	e := newEnv(t, section()+dtlsSection)
	addr := e.addr("mqttsn:dtls:default")
	up := e.cloud("up/#")
	down := e.cloud()
	d := dialDTLS(t, addr)
	d.Connect("secure", false, 60)
	tid := d.Register(1, "up/secure")
	d.Send(sn.PublishMsg(sn.QoS1, tid, 2, []byte("encrypted")))
	d.Expect(sn.PUBACK)
	up.Expect("up/secure", "encrypted")
	sa := d.Subscribe(sn.QoS1, 3, "down/secure")

	// A new DTLS session (a rebooted device, a new port): CONNECT moves
	// the MQTT-SN session onto it.
	d2 := dialDTLS(t, addr)
	d2.Connect("secure", false, 60)
	down.Publish("down/secure", "hello", 1, false)
	p := d2.Expect(sn.PUBLISH)
	if p.TopicID() != sa.TopicID() || string(p.Payload()) != "hello" {
		t.Fatalf("PUBLISH %s", p)
	}
	d2.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
}

// With a DTLS Connection ID the session follows the device to a new
// source port without a handshake or a CONNECT.
func TestDTLSConnectionIDPortChange(t *testing.T) {
	e := newEnv(t, section()+dtlsSection)
	ua, _ := net.ResolveUDPAddr("udp", e.addr("mqttsn:dtls:default"))
	sw := newSwitchConn(t)
	c, err := dtls.ClientWithOptions(sw, ua, dtlsOptions(true)...)
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, c)
	d := sn.NewDevice(t, c)
	d.Connect("roamer", true, 60)
	d.Subscribe(sn.QoS0, 1, "r/#")
	sw.move() // the NAT mapping changed
	d.Send(sn.PingreqMsg(""))
	d.Expect(sn.PINGRESP)
	e.cloud().Publish("r/x", "followed", 0, false)
	reg := d.Expect(sn.REGISTER)
	d.Send(sn.RegackMsg(reg.TopicID(), reg.MsgID(), 0))
	if p := d.Expect(sn.PUBLISH); string(p.Payload()) != "followed" || sw.lastFrom.Load() != 1 {
		t.Fatalf("PUBLISH %s on socket %d", p, sw.lastFrom.Load())
	}
}

// switchConn is a client PacketConn on two local sockets: it reads from
// both and writes from the active one, so move() is a NAT rebinding.
type switchConn struct {
	socks    [2]*net.UDPConn
	active   atomic.Int32
	lastFrom atomic.Int32
	in       chan dgram
	done     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	deadline time.Time
}

type dgram struct {
	b    []byte
	from net.Addr
	sock int32
}

func newSwitchConn(t *testing.T) *switchConn {
	s := &switchConn{in: make(chan dgram, 64), done: make(chan struct{})}
	for i := range s.socks {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		s.socks[i] = c
		go func(i int32) {
			for {
				buf := make([]byte, 9000)
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				select {
				case s.in <- dgram{buf[:n], from, i}:
				case <-s.done:
					return
				}
			}
		}(int32(i))
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (s *switchConn) move() { s.active.Store(1) }

func (s *switchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	s.mu.Lock()
	dl := s.deadline
	s.mu.Unlock()
	var timeout <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case d := <-s.in:
		s.lastFrom.Store(d.sock)
		return copy(p, d.b), d.from, nil
	case <-timeout:
		return 0, nil, os.ErrDeadlineExceeded
	case <-s.done:
		return 0, nil, net.ErrClosed
	}
}

func (s *switchConn) WriteTo(p []byte, a net.Addr) (int, error) {
	return s.socks[s.active.Load()].WriteTo(p, a)
}

func (s *switchConn) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.socks[0].Close()
		s.socks[1].Close()
	})
	return nil
}

func (s *switchConn) LocalAddr() net.Addr { return s.socks[s.active.Load()].LocalAddr() }

func (s *switchConn) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

func (s *switchConn) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}

func (s *switchConn) SetWriteDeadline(time.Time) error { return nil }
