package benchkit

import (
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStampRoundTrip(t *testing.T) {
	p := NewPayload(64)
	now := time.Unix(0, 1234567890123)
	Stamp(p, 7, 1<<40, now)
	dev, seq, at, ok := Unstamp(p)
	if !ok || dev != 7 || seq != 1<<40 || !at.Equal(now) || len(p) != 64 {
		t.Fatalf("got %d %d %v %v len %d", dev, seq, at, ok, len(p))
	}
	if _, _, _, ok := Unstamp([]byte("probe")); ok {
		t.Fatal("foreign payload accepted")
	}
	if len(NewPayload(3)) != HeaderLen {
		t.Fatal("payload shorter than its header")
	}
}

func TestLedger(t *testing.T) {
	var acked, seen Ledger
	for s := uint64(0); s < 200; s++ {
		acked.Add(Key{1, s})
		if s%50 != 0 {
			seen.Add(Key{1, s})
		}
	}
	if seen.Add(Key{1, 1}) {
		t.Fatal("duplicate reported as new")
	}
	n, some := acked.Missing(&seen, 2)
	if n != 4 || len(some) != 2 || some[0].Seq%50 != 0 {
		t.Fatalf("missing %d %v", n, some)
	}
	c := acked.Clone()
	acked.Add(Key{2, 0})
	if c.Len() != 200 || acked.Len() != 201 {
		t.Fatalf("clone %d, ledger %d", c.Len(), acked.Len())
	}
}

func TestParseProm(t *testing.T) {
	m, err := ParseProm(strings.NewReader(`# HELP x y
edgeway_packets_malformed_total{gateway="mqttsn"} 12
edgeway_messages_dropped_total{gateway="mqttsn"} 1
edgeway_messages_dropped_total{component="uplink"} 2
edgeway_uplink_queue_messages 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if Sum(m, "edgeway_messages_dropped_total") != 3 || Sum(m, "edgeway_messages_dropped_total", `component="uplink"`) != 2 ||
		Sum(m, "edgeway_uplink_queue_messages") != 5 || Sum(m, "edgeway_packets_malformed") != 0 {
		t.Fatalf("%v", m)
	}
}

func TestReadFuzzCorpus(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("go test fuzz v1\n[]byte(\"\\x02\\x16\")\nbyte('\\x01')\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), []byte("go test fuzz v1\nstring(\"SEND\\n\\n\\x00\")\n"), 0o644)
	got := ReadFuzzCorpus(dir)
	if len(got) != 2 {
		t.Fatalf("%q", got)
	}
	if ReadFuzzCorpus(filepath.Join(dir, "none")) != nil {
		t.Fatal("missing dir gave entries")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		for _, s := range append(MQTTSNSeeds, STOMPSeeds...) {
			if len(Mutate(r, s)) == 0 {
				t.Fatal("empty mutation")
			}
		}
	}
}

func TestProxyBlackhole(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }() // echo
		}
	}()
	p, err := NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4)
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through the proxy: %q %v", buf, err)
	}
	p.Blackhole(true)
	c.Write([]byte("lost"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(buf); n != 0 || err == nil {
		t.Fatalf("read %q through a black hole", buf[:n])
	}
	p.Blackhole(false) // closes the swallowed connection
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("connection survived the end of the black hole")
	}
}
