//go:build linux

package mqttsn_test

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edgeway/edgeway/internal/pty"
	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
)

// bus plays the devices on the master side of a pty whose slave the
// gateway's serial listener has open.
type bus struct {
	t      *testing.T
	master *os.File
	slip   bool
	dec    sn.SLIPDecoder
	raw    []byte
	queue  []busFrame
}

type busFrame struct {
	node byte
	p    sn.Packet
}

func newSerialEnv(t *testing.T, framing string, extra ...string) (*env, *bus) {
	t.Helper()
	master, path, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	keys := fmt.Sprintf("device = %q\nbaud = 115200\nframing = %q\n", path, framing)
	for _, k := range extra {
		keys += k + "\n"
	}
	e := newEnv(t, section()+"\n[gateway.mqttsn.listeners.serial.bus]\n"+keys)
	l, ok := e.gateway().Listener("mqttsn:serial:bus")
	if !ok {
		t.Fatal("serial listener not running")
	}
	// Bytes written before the port is configured would be lost.
	e.waitFor("port open", func() bool { return l.Metrics().Snapshot()["serial.connected"] == 1 })
	return e, &bus{t: t, master: master, slip: framing == "slip"}
}

func (b *bus) write(p []byte) {
	b.t.Helper()
	if _, err := b.master.Write(p); err != nil {
		b.t.Fatal(err)
	}
}

// send frames msg for node (and wireless node wnid, if any).
func (b *bus) send(node byte, wnid []byte, msg []byte) {
	b.t.Helper()
	if wnid != nil {
		msg = sn.Encapsulate(wnid, msg)
	}
	if b.slip {
		b.write(sn.SLIPFrame(node, msg))
	} else {
		b.write(msg)
	}
}

// recv returns the next message the gateway sent, with its node.
func (b *bus) recv() busFrame {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 4096)
	for len(b.queue) == 0 {
		_ = b.master.SetReadDeadline(deadline)
		n, err := b.master.Read(buf)
		if err != nil {
			b.t.Fatalf("bus read: %v", err)
		}
		if b.slip {
			nodes, msgs, err := b.dec.Feed(buf[:n])
			if err != nil {
				b.t.Fatalf("gateway sent a bad frame: %v", err)
			}
			for i := range msgs {
				p, err := sn.Parse(msgs[i])
				if err != nil {
					b.t.Fatal(err)
				}
				b.queue = append(b.queue, busFrame{nodes[i], p})
			}
			continue
		}
		b.raw = append(b.raw, buf[:n]...)
		for len(b.raw) >= 2 {
			n := int(b.raw[0])
			if b.raw[1] == 0xFE { // encapsulated: header, then the message
				if len(b.raw) < n+1 {
					break
				}
				n += int(b.raw[n])
			}
			if len(b.raw) < n {
				break
			}
			p, err := sn.Parse(b.raw[:n])
			if err != nil {
				b.t.Fatal(err)
			}
			b.queue = append(b.queue, busFrame{0, p})
			b.raw = b.raw[n:]
		}
	}
	f := b.queue[0]
	b.queue = b.queue[1:]
	return f
}

func (b *bus) expect(node byte, wnid []byte, typ byte) sn.Packet {
	b.t.Helper()
	f := b.recv()
	if f.node != node || !bytes.Equal(f.p.Node, wnid) || f.p.Type != typ {
		b.t.Fatalf("got node %d wnid %x %s, want node %d wnid %x type 0x%02x", f.node, f.p.Node, f.p, node, wnid, typ)
	}
	return f.p
}

// Two wireless nodes behind one forwarder on an RS-485 line, a plain node
// beside them, and line noise between frames.
func TestSerialForwarderTwoNodesWithNoise(t *testing.T) {
	e, b := newSerialEnv(t, "slip")
	cloud := e.cloud("up/#")
	down := e.cloud()
	n1, n2 := []byte{0x01}, []byte{0x02}
	const fwd, plain = 9, 3

	b.write([]byte("\x00\x13\x37 line noise \xff"))
	b.send(fwd, n1, sn.ConnectMsg("sensor-1", sn.Clean, 60))
	b.write([]byte{0xC0, 0x55, 0xAA, 0x42, 0x99, 0x01, 0xC0}) // a frame with a bad CRC
	b.send(fwd, n2, sn.ConnectMsg("sensor-2", sn.Clean, 60))
	b.write([]byte{0xDB, 0x07}) // a stray escape
	b.send(plain, nil, sn.ConnectMsg("plain-3", sn.Clean, 60))
	got := map[string]bool{}
	for range 3 {
		f := b.recv()
		if f.p.Type != sn.CONNACK || f.p.RC() != 0 {
			t.Fatalf("node %d: %s", f.node, f.p)
		}
		got[fmt.Sprintf("%d/%x", f.node, f.p.Node)] = true
	}
	if !got["9/01"] || !got["9/02"] || !got["3/"] {
		t.Fatalf("CONNACKs went to %v", got)
	}

	for i, w := range [][]byte{n1, n2} {
		b.send(fwd, w, sn.RegisterMsg(1, fmt.Sprintf("up/s%d", i+1)))
		reg := b.expect(fwd, w, sn.REGACK)
		b.write([]byte("zz")) // noise between frames
		b.send(fwd, w, sn.PublishMsg(sn.QoS1, reg.TopicID(), 2, []byte(fmt.Sprintf("v%d", i+1))))
		if p := b.expect(fwd, w, sn.PUBACK); p.RC() != 0 {
			t.Fatalf("PUBACK %s", p)
		}
		m := cloud.Expect(fmt.Sprintf("up/s%d", i+1), fmt.Sprintf("v%d", i+1))
		if m.ClientID != fmt.Sprintf("sensor-%d", i+1) {
			t.Fatalf("published as %q", m.ClientID)
		}
		b.send(fwd, w, sn.SubscribeMsg(sn.QoS0, 3, fmt.Sprintf("down/s%d", i+1)))
		b.expect(fwd, w, sn.SUBACK)
	}
	// Downlink reaches each node through the forwarder, wrapped for it.
	down.Publish("down/s2", "to-2", 0, false)
	if p := b.expect(fwd, n2, sn.PUBLISH); string(p.Payload()) != "to-2" {
		t.Fatalf("PUBLISH %s", p)
	}
	down.Publish("down/s1", "to-1", 0, false)
	if p := b.expect(fwd, n1, sn.PUBLISH); string(p.Payload()) != "to-1" {
		t.Fatalf("PUBLISH %s", p)
	}
	b.send(plain, nil, sn.PingreqMsg(""))
	b.expect(plain, nil, sn.PINGRESP)

	lm := e.gateway().Metrics().Snapshot()
	l, _ := e.gateway().Listener("mqttsn:serial:bus")
	ls := l.Metrics().Snapshot()
	if ls["frames.bad_crc"] < 1 || ls["frames.noise_octets"] < 1 {
		t.Fatalf("listener counters %v", ls)
	}
	if lm["packets.malformed"] != 0 {
		t.Fatalf("malformed %v", lm["packets.malformed"])
	}
}

// Length framing (as common serial bridges write it), a forwarder with
// two nodes behind it, point to point.
func TestSerialLengthFramingForwarder(t *testing.T) {
	e, b := newSerialEnv(t, "length")
	cloud := e.cloud("#")
	a, c := []byte("node-a"), []byte("node-c")
	b.send(0, a, sn.ConnectMsg("len-a", sn.Clean, 60))
	b.expect(0, a, sn.CONNACK)
	b.send(0, c, sn.ConnectMsg("len-c", sn.Clean, 60))
	b.expect(0, c, sn.CONNACK)
	b.send(0, a, sn.PublishMsg(sn.QoS1|sn.ShortTopic, sn.Short("la"), 1, []byte("from-a")))
	b.expect(0, a, sn.PUBACK)
	b.send(0, c, sn.PublishMsg(sn.QoS0|sn.ShortTopic, sn.Short("lc"), 0, []byte("from-c")))
	if m := cloud.Expect("la", "from-a"); m.ClientID != "len-a" {
		t.Fatalf("clientid %q", m.ClientID)
	}
	if m := cloud.Expect("lc", "from-c"); m.ClientID != "len-c" {
		t.Fatalf("clientid %q", m.ClientID)
	}
}

// Half duplex: the gateway speaks to a node only right after hearing
// from it, so a delivery waits for the node's next poll.
func TestSerialHalfDuplex(t *testing.T) {
	e, b := newSerialEnv(t, "slip", "half_duplex = true", `turnaround = "1s"`)
	down := e.cloud()
	b.send(5, nil, sn.ConnectMsg("hd", sn.Clean, 60))
	b.expect(5, nil, sn.CONNACK) // an answer goes out within the window
	b.send(5, nil, sn.SubscribeMsg(sn.QoS0, 1, "hd/cmd"))
	b.expect(5, nil, sn.SUBACK)
	time.Sleep(1200 * time.Millisecond) // the window closes
	down.Publish("hd/cmd", "queued", 0, false)
	l, _ := e.gateway().Listener("mqttsn:serial:bus")
	e.waitFor("held", func() bool { return l.Metrics().Snapshot()["frames.held"] >= 1 })
	b.send(5, nil, sn.PingreqMsg(""))
	if p := b.expect(5, nil, sn.PUBLISH); string(p.Payload()) != "queued" {
		t.Fatalf("PUBLISH %s", p)
	}
	b.expect(5, nil, sn.PINGRESP)
}
