package transports

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

func udpConfig(t testing.TB) *config.Listener {
	t.Helper()
	cfg := listenerConfig(t, "udp")
	cfg.Spec.(*UDPSpec).UDPOptions.Recbuf = 4 << 20
	return cfg
}

// udpPeer is a device: its own socket on a loopback address.
type udpPeer struct {
	t  testing.TB
	pc *net.UDPConn
	to netip.AddrPort
}

func newPeer(t testing.TB, l Listener, ip string) *udpPeer {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &udpPeer{t: t, pc: pc, to: addrPort(l.Addr())}
}

func (p *udpPeer) addr() netip.AddrPort { return p.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *udpPeer) send(s string) {
	p.t.Helper()
	if _, err := p.pc.WriteToUDPAddrPort([]byte(s), p.to); err != nil {
		p.t.Fatal(err)
	}
}

// recv reads one datagram, failing after 5 s.
func (p *udpPeer) recv() string {
	p.t.Helper()
	_ = p.pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2048)
	n, err := p.pc.Read(b)
	if err != nil {
		p.t.Fatalf("peer %s: %v", p.addr(), err)
	}
	return string(b[:n])
}

// readString reads one datagram from a Conn, failing after 5 s.
func readString(t testing.TB, c Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("read from %s: %v", c.Info().Peer, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return string(b[:n])
}

// readEnd waits for a Read to end with an error and returns it.
func readEnd(t testing.TB, c Conn) error {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 64))
	if err == nil {
		t.Fatalf("read %d bytes, want the conn ended", n)
	}
	if isTimeout(err) {
		t.Fatal("read timed out, want the conn ended")
	}
	return err
}

// Each of 200 peers, its own socket, talks to the listener at once: every
// datagram reaches the Conn of its sender and every reply its peer.
func TestUDPManyPeers(t *testing.T) {
	const peers, rounds = 200, 3
	l, m := openListener(t, udpConfig(t))

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1) // the accept loop, so that its wg.Go never races Wait
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				want := c.Info().Peer.String()
				b := make([]byte, 256)
				for {
					n, err := c.Read(b)
					if err != nil {
						return
					}
					from, _, _ := strings.Cut(string(b[:n]), " ")
					if from != want {
						t.Errorf("conn of %s got %q", want, b[:n])
					}
					if _, err := c.Write(append([]byte("re "), b[:n]...)); err != nil {
						t.Errorf("write to %s: %v", want, err)
					}
				}
			})
		}
	}()

	ps := make([]*udpPeer, peers)
	for i := range ps {
		ps[i] = newPeer(t, l, "127.0.0.1")
	}
	var pw sync.WaitGroup
	for _, p := range ps {
		pw.Go(func() {
			b := make([]byte, 256)
			for r := range rounds {
				msg := fmt.Sprintf("%s %d", p.addr(), r)
				// Resend like a device would if a datagram is lost.
				for try := 0; ; try++ {
					if try == 20 {
						t.Errorf("peer %s: no reply to %q", p.addr(), msg)
						return
					}
					p.pc.WriteToUDPAddrPort([]byte(msg), p.to)
					_ = p.pc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
					n, err := p.pc.Read(b)
					if isTimeout(err) {
						continue
					}
					if err != nil {
						t.Errorf("peer %s: %v", p.addr(), err)
						return
					}
					if got := string(b[:n]); got != "re "+msg {
						if strings.HasPrefix(got, "re "+p.addr().String()+" ") {
							continue // a late reply to a resend
						}
						t.Errorf("peer %s got %q, want %q", p.addr(), got, "re "+msg)
						return
					}
					break
				}
			}
		})
	}
	pw.Wait()
	if g := m.Gauge(metrics.ConnectionsCount).Load(); g != peers {
		t.Errorf("connections.count = %d, want %d", g, peers)
	}
	if in, out := count(m, metrics.BytesReceived), count(m, metrics.BytesSent); in == 0 || out <= in {
		t.Errorf("bytes received %d, sent %d: every reply is 3 bytes longer", in, out)
	}
	l.Close() // ends every conn: the handlers return
}

func TestUDPEchoAndCounters(t *testing.T) {
	l, m := openListener(t, udpConfig(t))
	p := newPeer(t, l, "127.0.0.1")
	p.send("hello")
	c := acceptOne(t, l)
	if _, ok := c.(Datagram); !ok {
		t.Error("udp conn is not a Datagram")
	}
	if _, ok := c.(Rebinder); !ok {
		t.Error("udp conn is not a Rebinder")
	}
	info := c.Info()
	if info.Peer != p.addr() || info.Transport != "udp" || info.ListenerID != "transportstest:udp:t" {
		t.Errorf("info = %s %s %s", info.Peer, info.Transport, info.ListenerID)
	}
	if c.RemoteAddr().String() != p.addr().String() || c.LocalAddr().String() != l.Addr().String() {
		t.Errorf("addrs = %s → %s", c.RemoteAddr(), c.LocalAddr())
	}
	if got := readString(t, c); got != "hello" {
		t.Fatalf("read %q", got)
	}
	if _, err := c.Write([]byte("welcome!")); err != nil {
		t.Fatal(err)
	}
	if got := p.recv(); got != "welcome!" {
		t.Fatalf("peer got %q", got)
	}
	// A short buffer truncates the datagram; the rest is gone.
	p.send("0123456789")
	p.send("next")
	b := make([]byte, 4)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "0123" {
		t.Fatalf("short read = %q, %v", b[:n], err)
	}
	if got := readString(t, c); got != "next" {
		t.Fatalf("after a truncated read: %q", got)
	}
	if info.BytesIn.Load() != 13 || info.BytesOut.Load() != 8 || count(m, metrics.BytesReceived) != 13 || count(m, metrics.BytesSent) != 8 {
		t.Errorf("bytes in %d/%d out %d/%d, want 13 and 8", info.BytesIn.Load(), count(m, metrics.BytesReceived), info.BytesOut.Load(), count(m, metrics.BytesSent))
	}

	c.Close()
	if err := readEnd(t, c); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close = %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close = %v, want net.ErrClosed", err)
	}
	if g := m.Gauge(metrics.ConnectionsCount).Load(); g != 0 {
		t.Errorf("connections.count = %d after close", g)
	}
	// The same address again is a new conn.
	p.send("again")
	c2 := acceptOne(t, l)
	if c2 == c || readString(t, c2) != "again" {
		t.Error("a datagram after close did not start a new conn")
	}
}

func TestUDPHealthCheck(t *testing.T) {
	cfg := udpConfig(t)
	cfg.Spec.(*UDPSpec).HealthCheck = HealthCheck{Request: "ping", Reply: "pong"}
	l, m := openListener(t, cfg)
	p := newPeer(t, l, "127.0.0.1")
	for range 3 {
		p.send("ping")
		if got := p.recv(); got != "pong" {
			t.Fatalf("health check reply %q", got)
		}
	}
	if n := count(m, mHealthCheck); n != 3 {
		t.Errorf("health_check.answered = %d, want 3", n)
	}
	if a := guardOf(t, l).Active(); a != 0 {
		t.Errorf("%d conns after health checks, want none", a)
	}
	// Anything else is a client.
	p.send("ping!")
	c := acceptOne(t, l)
	if got := readString(t, c); got != "ping!" {
		t.Errorf("read %q", got)
	}
	if n := len(l.(*udpListener).backlog); n != 0 {
		t.Errorf("%d conns waiting for Accept, want 0", n)
	}
}

func TestUDPOversizedDatagram(t *testing.T) {
	cfg := udpConfig(t)
	cfg.Spec.(*UDPSpec).MaxDatagramSize = 100
	l, m := openListener(t, cfg)
	p := newPeer(t, l, "127.0.0.1")
	p.send(strings.Repeat("x", 101))
	p.send(strings.Repeat("y", 100))
	c := acceptOne(t, l)
	if got := readString(t, c); got != strings.Repeat("y", 100) {
		t.Fatalf("read %d bytes %.3q…, want the 100-byte datagram", len(got), got)
	}
	// One read loop, in order: the big one was handled first.
	if n := count(m, mTooLarge); n != 1 {
		t.Errorf("datagrams.dropped.too_large = %d, want 1", n)
	}
}

func TestUDPQueueFullDropsNewest(t *testing.T) {
	cfg := udpConfig(t)
	cfg.Spec.(*UDPSpec).RecvQueue = 4
	l, m := openListener(t, cfg)
	p := newPeer(t, l, "127.0.0.1")
	for i := range 10 {
		p.send(fmt.Sprint("d", i))
	}
	c := acceptOne(t, l)
	eventually(t, "drops counted", func() bool { return count(m, mDatagramsDropped) == 6 })
	for i := range 4 {
		if got := readString(t, c); got != fmt.Sprint("d", i) {
			t.Fatalf("read %q, want d%d (the oldest are kept)", got, i)
		}
	}
	p.send("fresh")
	if got := readString(t, c); got != "fresh" {
		t.Fatalf("read %q after draining", got)
	}
}

// A device whose NAT mapping changed: the protocol recognises it on the
// new Conn and moves its session's Conn over.
func TestUDPTakeOver(t *testing.T) {
	l, m := openListener(t, udpConfig(t))
	oldPeer := newPeer(t, l, "127.0.0.1")
	oldPeer.send("CONNECT id=7")
	sess := acceptOne(t, l)
	if got := readString(t, sess); got != "CONNECT id=7" {
		t.Fatal(got)
	}

	newPort := newPeer(t, l, "127.0.0.1")
	newPort.send("PUBLISH id=7 a")
	newPort.send("PUBLISH id=7 b")
	fresh := acceptOne(t, l)
	got := readString(t, fresh)
	if !strings.Contains(got, "id=7") {
		t.Fatalf("read %q", got)
	}
	// "b" waits in fresh's queue; it must move with the address.
	fv, _ := asVConn(fresh)
	eventually(t, "second datagram queued", func() bool {
		fv.mu.Lock()
		defer fv.mu.Unlock()
		return len(fv.q)-fv.head == 1
	})

	if err := sess.(Rebinder).TakeOver(fresh); err != nil {
		t.Fatal(err)
	}
	if err := readEnd(t, fresh); err != io.EOF {
		t.Errorf("read of the taken-over conn = %v, want io.EOF", err)
	}
	if sess.Info().Peer != newPort.addr() || sess.RemoteAddr().String() != newPort.addr().String() {
		t.Errorf("session peer %s / %s, want %s", sess.Info().Peer, sess.RemoteAddr(), newPort.addr())
	}
	if got := readString(t, sess); got != "PUBLISH id=7 b" {
		t.Errorf("queued datagram: %q", got)
	}
	newPort.send("PUBLISH id=7 c")
	if got := readString(t, sess); got != "PUBLISH id=7 c" {
		t.Errorf("after take over: %q", got)
	}
	if _, err := sess.Write([]byte("PUBACK")); err != nil {
		t.Fatal(err)
	}
	if got := newPort.recv(); got != "PUBACK" {
		t.Errorf("new port got %q", got)
	}
	if g := m.Gauge(metrics.ConnectionsCount).Load(); g != 1 {
		t.Errorf("connections.count = %d, want 1 (the taken-over slot is released)", g)
	}

	// A stranger now using the old address does not get the session.
	oldPeer.send("CONNECT id=99")
	stranger := acceptOne(t, l)
	if stranger == sess || stranger.Info().Peer != oldPeer.addr() {
		t.Fatalf("stranger got %p (%s), session is %p", stranger, stranger.Info().Peer, sess)
	}
	if got := readString(t, stranger); got != "CONNECT id=99" {
		t.Errorf("stranger read %q", got)
	}
	// …and nothing reached the old peer: its next reply is the stranger's.
	if _, err := stranger.Write([]byte("CONNACK 99")); err != nil {
		t.Fatal(err)
	}
	if got := oldPeer.recv(); got != "CONNACK 99" {
		t.Errorf("old address got %q", got)
	}
	ul := l.(*udpListener)
	ul.mu.RLock()
	if len(ul.peers) != 2 || ul.peers[newPort.addr()] != sess.(*vconn) {
		t.Errorf("demux has %d entries, session at new address: %v", len(ul.peers), ul.peers[newPort.addr()] == sess.(*vconn))
	}
	ul.mu.RUnlock()

	// Closing the session frees its new address too.
	sess.Close()
	newPort.send("hello again")
	again := acceptOne(t, l)
	if again == sess || readString(t, again) != "hello again" {
		t.Error("after close, the address did not start a new conn")
	}
}

func TestUDPTakeOverErrors(t *testing.T) {
	l1, _ := openListener(t, udpConfig(t))
	l2, _ := openListener(t, udpConfig(t))
	newPeer(t, l1, "127.0.0.1").send("a")
	newPeer(t, l2, "127.0.0.1").send("b")
	p3 := newPeer(t, l1, "127.0.0.1")
	p3.send("c")
	a, b, c := acceptOne(t, l1), acceptOne(t, l2), acceptOne(t, l1)
	if err := a.(Rebinder).TakeOver(b); err == nil {
		t.Error("take over across listeners succeeded")
	}
	tcp := &counted{info: &ConnInfo{}}
	if err := a.(Rebinder).TakeOver(tcp); err == nil {
		t.Error("take over of a non-udp conn succeeded")
	}
	c.Close()
	if err := a.(Rebinder).TakeOver(c); !errors.Is(err, net.ErrClosed) {
		t.Errorf("take over of a closed conn = %v, want net.ErrClosed", err)
	}
	// Through a wrapper that exposes NetConn, as counted does.
	p3.send("d")
	d := acceptOne(t, l1)
	if err := a.(Rebinder).TakeOver(&counted{Conn: d, info: d.Info()}); err != nil {
		t.Errorf("take over through a wrapper: %v", err)
	}
}

func TestUDPIdleExpiry(t *testing.T) {
	cfg := udpConfig(t)
	cfg.Spec.(*UDPSpec).IdleTimeout = config.Duration(100 * time.Millisecond)
	l, m := openListener(t, cfg)
	p := newPeer(t, l, "127.0.0.1")
	p.send("once")
	c := acceptOne(t, l)
	if got := readString(t, c); got != "once" {
		t.Fatal(got)
	}
	start := time.Now()
	if err := readEnd(t, c); err != io.EOF {
		t.Errorf("read of an expired conn = %v, want io.EOF", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("expired after %s, before idle_timeout", d)
	}
	if n := count(m, mExpired); n != 1 {
		t.Errorf("connections.expired = %d, want 1", n)
	}
	if g := m.Gauge(metrics.ConnectionsCount).Load(); g != 0 {
		t.Errorf("connections.count = %d, want 0", g)
	}
	p.send("back")
	c2 := acceptOne(t, l)
	if c2 == c || readString(t, c2) != "back" {
		t.Error("a peer coming back after expiry did not get a new conn")
	}
}

func TestUDPAccessRules(t *testing.T) {
	cfg := udpConfig(t)
	for _, s := range []string{"deny 127.0.0.2", "allow all"} {
		r, err := config.ParseAccessRule(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.AccessRules = append(cfg.AccessRules, r)
	}
	cfg.Spec.(*UDPSpec).HealthCheck = HealthCheck{Request: "ping", Reply: "pong"}
	l, m := openListener(t, cfg)
	denied := newPeer(t, l, "127.0.0.2")
	denied.send("let me in")
	denied.send("ping")
	denied.send("please")
	allowed := newPeer(t, l, "127.0.0.1")
	allowed.send("hi")
	c := acceptOne(t, l)
	if c.Info().Peer != allowed.addr() {
		t.Fatalf("accepted %s, want %s", c.Info().Peer, allowed.addr())
	}
	if n := count(m, "connections.refused.access_rules"); n != 2 {
		t.Errorf("refused.access_rules = %d, want 2 (one per datagram)", n)
	}
	if n := count(m, mHealthCheck); n != 0 {
		t.Errorf("a denied address got %d health check replies", n)
	}
}

func TestUDPMaxConnections(t *testing.T) {
	cfg := udpConfig(t)
	cfg.MaxConnections = 2
	l, m := openListener(t, cfg)
	p1, p2, p3 := newPeer(t, l, "127.0.0.1"), newPeer(t, l, "127.0.0.1"), newPeer(t, l, "127.0.0.1")
	p1.send("1")
	p2.send("2")
	p3.send("3")
	p1.send("1 again")
	c1, c2 := acceptOne(t, l), acceptOne(t, l)
	if c1.Info().Peer != p1.addr() || c2.Info().Peer != p2.addr() {
		t.Fatalf("accepted %s and %s", c1.Info().Peer, c2.Info().Peer)
	}
	readString(t, c1)
	if got := readString(t, c1); got != "1 again" {
		t.Fatal(got)
	}
	if n := count(m, "connections.refused.max_connections"); n != 1 {
		t.Errorf("refused.max_connections = %d, want 1", n)
	}
	c2.Close()
	p3.send("3 again")
	c3 := acceptOne(t, l)
	if c3.Info().Peer != p3.addr() || readString(t, c3) != "3 again" {
		t.Errorf("after a slot freed: %s", c3.Info().Peer)
	}
}

func TestUDPMaxConnRate(t *testing.T) {
	cfg := udpConfig(t)
	cfg.MaxConnRate = 2
	l, m := openListener(t, cfg)
	freezeClock(guardOf(t, l))
	p1, p2, p3 := newPeer(t, l, "127.0.0.1"), newPeer(t, l, "127.0.0.1"), newPeer(t, l, "127.0.0.1")
	p1.send("1")
	p2.send("2")
	p3.send("3")
	p1.send("marker")
	c1, _ := acceptOne(t, l), acceptOne(t, l)
	readString(t, c1)
	readString(t, c1)
	if n := count(m, "connections.refused.max_conn_rate"); n != 1 {
		t.Errorf("refused.max_conn_rate = %d, want 1", n)
	}
}

func TestUDPReadDeadline(t *testing.T) {
	l, _ := openListener(t, udpConfig(t))
	p := newPeer(t, l, "127.0.0.1")
	p.send("first")
	c := acceptOne(t, l)
	readString(t, c)

	_ = c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
		t.Fatalf("read past deadline = %v, want a timeout", err)
	}
	// A deadline set while a Read waits applies to that Read.
	_ = c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	_ = c.SetReadDeadline(time.Now().Add(-time.Second))
	if err := <-done; !isTimeout(err) {
		t.Fatalf("read after the deadline moved to the past = %v", err)
	}
	// Cleared, a Read waits for data again.
	_ = c.SetReadDeadline(time.Time{})
	go func() {
		b := make([]byte, 10)
		n, err := c.Read(b)
		if err == nil && string(b[:n]) != "late" {
			err = fmt.Errorf("read %q", b[:n])
		}
		done <- err
	}()
	p.send("late")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("x")); !isTimeout(err) {
		t.Errorf("write past deadline = %v", err)
	}
}

func TestUDPListenerClose(t *testing.T) {
	l, m := openListener(t, udpConfig(t))
	p := newPeer(t, l, "127.0.0.1")
	p.send("a")
	c := acceptOne(t, l)
	readString(t, c)
	newPeer(t, l, "127.0.0.1").send("waiting") // never accepted
	eventually(t, "second peer queued", func() bool { return guardOf(t, l).Active() == 2 })

	blocked := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		blocked <- err
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != io.EOF {
		t.Errorf("read after listener close = %v, want io.EOF", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after close = %v, want net.ErrClosed", err)
	}
	if g := m.Gauge(metrics.ConnectionsCount).Load(); g != 0 {
		t.Errorf("connections.count = %d after close", g)
	}
	if err := c.Close(); err != nil {
		t.Errorf("close after listener close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestUDPUpdate(t *testing.T) {
	cfg := udpConfig(t)
	l, _ := openListener(t, cfg)
	p := newPeer(t, l, "127.0.0.1")
	p.send("a")
	c := acceptOne(t, l)
	readString(t, c)

	next := *cfg
	next.MaxConnections = 1
	if err := l.Update(&next); err != nil {
		t.Fatalf("update of limits: %v", err)
	}
	p.send("still here")
	if got := readString(t, c); got != "still here" {
		t.Fatal(got)
	}
	spec := *cfg.Spec.(*UDPSpec)
	spec.IdleTimeout = config.Duration(time.Hour)
	sock := next
	sock.Spec = &spec
	if err := l.Update(&sock); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("update of idle_timeout = %v, want ErrRestartRequired", err)
	}
}

func TestUDPConfig(t *testing.T) {
	head := "[gateway." + testKind + ".listeners.udp.a]\nbind = \"127.0.0.1:0\"\n"
	pfx := "gateway." + testKind + ".listeners.udp.a."
	cases := []struct {
		name, toml string
		want       []string
	}{
		{"ok", head + "max_datagram_size = \"1KB\"\nidle_timeout = \"2m\"\n" +
			"[gateway." + testKind + ".listeners.udp.a.udp_options]\nrecbuf = \"1MB\"\nactive_n = 10\nreuseaddr = true\n" +
			"[gateway." + testKind + ".listeners.udp.a.health_check]\nrequest = \"ping\"\nreply = \"pong\"\n", nil},
		{"too big", head + "max_datagram_size = \"64KB\"\nrecv_queue = 0\n", []string{
			pfx + "max_datagram_size: must be 1B..65535B, got 64KB", pfx + "recv_queue: must be 1..65536, got 0"}},
		{"health check half", head + "health_check = { request = \"ping\" }\n", []string{pfx + "health_check: request and reply go together"}},
		{"unknown udp option", head + "udp_options = { nodelay = true }\n", []string{pfx + "udp_options.nodelay: unknown key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.toml)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				spec := c.Gateways[testKind].Listeners[0].Spec.(*UDPSpec)
				if spec.MaxDatagramSize != 1024 || spec.HealthCheck.Reply != "pong" || spec.RecvQueue != DefaultRecvQueue {
					t.Errorf("spec = %+v", spec)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nwant a line ending in\n%s", err, w)
				}
			}
		})
	}
}

// The pooled buffers never leak one peer's bytes into another's datagram.
func TestUDPBufferReuse(t *testing.T) {
	l, _ := openListener(t, udpConfig(t))
	a, b := newPeer(t, l, "127.0.0.1"), newPeer(t, l, "127.0.0.1")
	a.send(strings.Repeat("A", 1500))
	ca := acceptOne(t, l)
	readString(t, ca)
	b.send("bb")
	cb := acceptOne(t, l)
	if got := readString(t, cb); !bytes.Equal([]byte(got), []byte("bb")) {
		t.Errorf("read %q", got)
	}
	a.send(strings.Repeat("a", 300))
	if got := readString(t, ca); got != strings.Repeat("a", 300) {
		t.Errorf("read %d bytes", len(got))
	}
}

// bind = "1884" listens dual-stack: IPv4 peers arrive as ::ffff:a.b.c.d.
func TestUDPDualStack(t *testing.T) {
	cfg := udpConfig(t)
	cfg.Bind = "[::]:0"
	r, _ := config.ParseAccessRule("deny 127.0.0.2")
	cfg.AccessRules = []config.AccessRule{r}
	m := metrics.NewSet(nil)
	l, err := Open(t.Context(), cfg, Env{Metrics: m})
	if err != nil {
		t.Skipf("no IPv6 wildcard socket here: %v", err)
	}
	defer l.Close()
	port := addrPort(l.Addr()).Port()
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	denied := newPeer(t, l, "127.0.0.2")
	denied.to = to
	denied.send("no")
	p := newPeer(t, l, "127.0.0.1")
	p.to = to
	p.send("v4 over a v6 socket")
	c := acceptOne(t, l)
	if c.Info().Peer != p.addr() {
		t.Errorf("peer = %s, want the plain IPv4 %s", c.Info().Peer, p.addr())
	}
	if got := readString(t, c); got != "v4 over a v6 socket" {
		t.Fatal(got)
	}
	if _, err := c.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if got := p.recv(); got != "reply" {
		t.Errorf("peer got %q", got)
	}
	if n := count(m, "connections.refused.access_rules"); n != 1 {
		t.Errorf("refused.access_rules = %d: rules must match mapped addresses", n)
	}
}

// The kernel's own receive-queue drops are read back exactly: a socket
// nobody reads, with the smallest buffer, keeps some datagrams and counts
// every other one as dropped.
func TestSocketDropsCountsKernelOverflow(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := rx.SetReadBuffer(1); err != nil { // the kernel rounds up to its minimum
		t.Fatal(err)
	}
	n0, ok := socketDrops(rx)
	if !ok {
		t.Fatal("SO_MEMINFO not answered on linux")
	}
	if n0 != 0 {
		t.Fatalf("a fresh socket reports %d drops", n0)
	}
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const sent = 300
	for range sent {
		if _, err := tx.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	drops, _ := socketDrops(rx)
	kept := 0
	b := make([]byte, 2048)
	for {
		_ = rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := rx.Read(b); err != nil {
			break
		}
		kept++
	}
	if drops == 0 || kept+int(drops) != sent {
		t.Fatalf("kept %d + dropped %d, want some dropped and %d in all", kept, drops, sent)
	}
}

// A listener accounts for every datagram of a burst: read by the
// protocol, dropped from a full peer queue, or dropped by the kernel.
func TestUDPBurstAccounted(t *testing.T) {
	cfg := udpConfig(t)
	cfg.Spec.(*UDPSpec).UDPOptions.Recbuf = 1
	cfg.Spec.(*UDPSpec).RecvQueue = 16
	l, m := openListener(t, cfg)
	p := newPeer(t, l, "127.0.0.1")
	p.send("first")
	c := acceptOne(t, l)
	if got := readString(t, c); got != "first" {
		t.Fatalf("read %q", got)
	}
	const sent = 5000
	for range sent {
		p.send(strings.Repeat("x", 500))
	}
	read := 0
	b := make([]byte, 1024)
	for {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(b); err != nil {
			break
		}
		read++
	}
	eventually(t, "every datagram accounted for", func() bool {
		return uint64(read)+count(m, mDatagramsDropped)+count(m, mKernelDropped) == sent
	})
	t.Logf("read %d, queue full %d, kernel %d", read, count(m, mDatagramsDropped), count(m, mKernelDropped))
}

// pushed collects what ServePackets hands out and how the conn ended.
type pushed struct {
	mu    sync.Mutex
	got   []string
	ends  int
	err   error
	inFn  atomic.Int32
	worst atomic.Int32 // most fn calls at once for this conn
}

func (p *pushed) fn(b []byte) {
	if n := p.inFn.Add(1); n > p.worst.Load() {
		p.worst.Store(n)
	}
	p.mu.Lock()
	p.got = append(p.got, string(b))
	p.mu.Unlock()
	p.inFn.Add(-1)
}

func (p *pushed) end(err error) {
	p.mu.Lock()
	p.ends++
	p.err = err
	p.mu.Unlock()
}

func (p *pushed) state() (string, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.got, ","), p.ends, p.err
}

// ServePackets: datagrams queued before and after it arrive in order, one
// fn at a time; no goroutine is left while the peer is silent; end comes
// once, after the last datagram, when the conn is closed.
func TestUDPServePackets(t *testing.T) {
	l, m := openListener(t, udpConfig(t))
	p := newPeer(t, l, "127.0.0.1")
	p.send("a")
	c := acceptOne(t, l)
	ps, ok := c.(PacketServer)
	if !ok {
		t.Fatal("udp conn is not a PacketServer")
	}
	var got pushed
	ps.ServePackets(got.fn, got.end)
	for i := range 50 {
		p.send(fmt.Sprint(i))
	}
	want := "a"
	for i := range 50 {
		want += fmt.Sprint(",", i)
	}
	eventually(t, "all 51 datagrams pushed", func() bool { s, _, _ := got.state(); return s == want })
	if got.worst.Load() != 1 {
		t.Fatalf("%d fn calls at once", got.worst.Load())
	}
	// The worker is gone once the queue is empty.
	c.(*vconn).mu.Lock()
	running := c.(*vconn).running
	c.(*vconn).mu.Unlock()
	if running {
		eventually(t, "worker gone", func() bool {
			v := c.(*vconn)
			v.mu.Lock()
			defer v.mu.Unlock()
			return !v.running
		})
	}
	if count(m, metrics.BytesReceived) != uint64(len(strings.ReplaceAll(want, ",", ""))) {
		t.Fatalf("bytes in %d", count(m, metrics.BytesReceived))
	}
	c.Close()
	eventually(t, "end", func() bool { _, n, _ := got.state(); return n == 1 })
	if _, _, err := got.state(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("end(%v), want net.ErrClosed", err)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	if _, n, _ := got.state(); n != 1 {
		t.Fatalf("end called %d times", n)
	}
}

// A conn that ended before ServePackets still gets its end; a conn taken
// over gets end(io.EOF) and its queued datagrams go to the taker, pushed
// there; closing the listener ends the rest.
func TestUDPServePacketsEnds(t *testing.T) {
	l, _ := openListener(t, udpConfig(t))
	dead := newPeer(t, l, "127.0.0.1")
	dead.send("x")
	dc := acceptOne(t, l)
	dc.Close()
	var d pushed
	dc.(PacketServer).ServePackets(d.fn, d.end)
	eventually(t, "end of a dead conn", func() bool { _, n, _ := d.state(); return n == 1 })

	oldP := newPeer(t, l, "127.0.0.2")
	oldP.send("old")
	oc := acceptOne(t, l)
	var o pushed
	oc.(PacketServer).ServePackets(o.fn, o.end)
	newP := newPeer(t, l, "127.0.0.3")
	newP.send("new")
	nc := acceptOne(t, l)
	newP.send("queued")
	// nc is not served yet: its datagrams wait in its queue.
	eventually(t, "queued on the new conn", func() bool {
		v := nc.(*vconn)
		v.mu.Lock()
		defer v.mu.Unlock()
		return len(v.q)-v.head == 2
	})
	var n pushed
	nc.(PacketServer).ServePackets(func(b []byte) {}, n.end) // never runs: taken over below
	if err := oc.(Rebinder).TakeOver(nc); err != nil {
		// ServePackets may already have started nc's worker; then its
		// datagrams were consumed and there is nothing to move.
		t.Fatal(err)
	}
	eventually(t, "end of the taken-over conn", func() bool { _, k, _ := n.state(); return k == 1 })
	if _, _, err := n.state(); err != io.EOF {
		t.Fatalf("taken over: end(%v), want io.EOF", err)
	}
	newP.send("after")
	eventually(t, "the taker gets the new address's datagrams", func() bool {
		s, _, _ := o.state()
		return strings.HasSuffix(s, "after")
	})
	l.Close()
	eventually(t, "end at listener close", func() bool { _, k, _ := o.state(); return k == 1 })
}
