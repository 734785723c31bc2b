package benchkit

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestJSONGenerators runs the generators whose gateways translate into
// JSON (LwM2M, JT/T 808, GB/T 32960) against a real edgeway agent and a
// real mosquitto: every message must reach the cloud subscriber exactly
// once, its stamp recovered from the JSON by the protocol's decoder.
func TestJSONGenerators(t *testing.T) {
	if _, err := os.Stat(MosquittoPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mosquitto: %v", err)
		}
		t.Skipf("no mosquitto: %v", err)
	}
	if testing.Short() {
		t.Skip("builds and starts the agent")
	}
	dir := t.TempDir()
	bin, err := BuildAgent(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMosquitto(filepath.Join(dir, "mosquitto"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	a, err := NewAgent(bin, filepath.Join(dir, "agent"), AgentConfig{Broker: m.Addr, CoAP: "auto", LwM2M: "auto", JT808: "auto", GBT32960: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", a.Logs())
		}
	})
	sub, err := Subscribe(m.Addr, "kit-json", "bench/#")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)

	addrs := a.Conf.Addrs()
	const devs, msgs = 3, 5
	first := uint32(100)
	for _, tc := range []struct {
		proto string
		qos   byte
	}{{"lwm2m", 1}, {"jt808", 1}, {"jt808", 0}, {"gbt32960", 1}, {"gbt32960", 0}, {"coap-conn", 1}} {
		t.Run(tc.proto+"/qos"+string('0'+tc.qos), func(t *testing.T) {
			g, err := NewGenerator(tc.proto, Target{Addr: addrs[tc.proto], QoS: tc.qos})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var sent Ledger
			p := NewPayload(64)
			for dev := first; dev < first+devs; dev++ {
				d, err := g.Dial(ctx, dev)
				if err != nil {
					t.Fatalf("dial %d: %v", dev, err)
				}
				for seq := range uint64(msgs) {
					Stamp(p, dev, seq, time.Now())
					if err := d.Publish(ctx, p); err != nil {
						t.Fatalf("device %d message %d: %v", dev, seq, err)
					}
					sent.Add(Key{dev, seq})
				}
				if err := d.Close(); err != nil {
					t.Logf("close %d: %v", dev, err)
				}
			}
			if n := sub.WaitFor(&sent, 20*time.Second, 0); n != 0 {
				_, some := sent.Missing(&sub.Seen, 5)
				t.Fatalf("%d of %d messages never arrived, e.g. %v (foreign messages: %d)", n, sent.Len(), some, sub.Foreign())
			}
			got, dups := sub.Seen.CountRange(first, devs)
			if got != devs*msgs || dups != 0 {
				t.Fatalf("arrived %d distinct (want %d), %d duplicates", got, devs*msgs, dups)
			}
		})
		first += devs
	}
}

// TestDecoders reads the bench payload out of the JSON each gateway
// publishes (the shapes of protocols/*/testdata and README), and leaves
// everything else alone.
func TestDecoders(t *testing.T) {
	p := NewPayload(30)
	Stamp(p, 42, 7, time.Unix(0, 99))
	std := base64.StdEncoding.EncodeToString
	tlv := append([]byte{0x01, 4, 0, 0, 0x30, 0x39, jtBenchExtra, byte(len(p))}, p...)
	for _, tc := range []struct {
		name, topic, msg string
		ok               bool
	}{
		{"lwm2m send", "bench/lwm2m/ep/up/notify",
			`{"data":{"content":[{"path":"/19/0/0","value":"` + std(p) + `"}]},"msgType":"send"}`, true},
		{"lwm2m register", "bench/lwm2m/ep/up/resp",
			`{"msgType":"register","data":{"ep":"ep","lt":60,"lwm2m":"1.1","objectList":["/19/0"]}}`, false},
		{"jt808 location", "bench/jt808/000000000042",
			`{"header":{"msg_id":512,"encrypt":0,"len":58,"phone":"000000000042","msg_sn":3},"body":{"alarm":0,` +
				`"extra":{"custome":"` + std(tlv[6:]) + `"}}}`, true},
		{"jt808 after a known item kept raw", "bench/jt808/000000000042",
			`{"body":{"extra":{"custome":"` + std(tlv) + `"}}}`, true},
		{"jt808 heartbeat", "bench/jt808/000000000042", `{"header":{"msg_id":2},"body":{}}`, false},
		{"gbt32960 info", "bench/gbt32960/EB000000000000042/upstream/info",
			`{"Cmd":2,"Data":{"Infos":[{"Data":"` + std(append([]byte{gbtBenchInfo}, p...)) + `","Type":"CustomData"}],` +
				`"Time":{"Day":1}},"Encrypt":1,"Vin":"EB000000000000042"}`, true},
		{"gbt32960 login", "bench/gbt32960/EB000000000000042/upstream/vlogin",
			`{"Cmd":1,"Data":{"ICCID":"8986","Id":"","Seq":1},"Encrypt":1,"Vin":"EB000000000000042"}`, false},
		{"another topic layout", "cloud/x",
			`{"Cmd":2,"Data":{"Infos":[{"Data":"` + std(append([]byte{gbtBenchInfo}, p...)) + `","Type":"CustomData"}]}}`, true},
		{"raw stamp", "bench/mqttsn/1", string(p), true},
	} {
		got, ok := decodePayload(tc.topic, []byte(tc.msg))
		if ok != tc.ok || (ok && !bytes.Equal(got, p)) {
			t.Errorf("%s: got %x, %v", tc.name, got, ok)
		}
	}
}

// TestJT808Frame checks the terminal's own encoder byte by byte: escapes
// of 0x7e and 0x7d in the header, body and check code, and the round trip
// through the unescaper and header parser.
func TestJT808Frame(t *testing.T) {
	phone := [6]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0x7e}
	got := jtAppendFrame(nil, 0x0200, phone, 0x7d02, []byte{0x7e, 0x01})
	// header 02 00 00 02 01 23 45 67 89 7e 7d 02, body 7e 01; check code:
	// XOR of all = 0x02^0x02^0x01^0x23^0x45^0x67^0x89^0x7e^0x7d^0x02^0x7e^0x01
	want := []byte{0x7e, 0x02, 0x00, 0x00, 0x02, 0x01, 0x23, 0x45, 0x67, 0x89, 0x7d, 0x02, 0x7d, 0x01, 0x02,
		0x7d, 0x02, 0x01, 0xf7, 0x7e}
	if !bytes.Equal(got, want) {
		t.Fatalf("frame\n got % x\nwant % x", got, want)
	}
	f, ok := jtUnescape(nil, got[1:len(got)-1])
	if !ok {
		t.Fatal("check code refused")
	}
	id, body, err := jtParse(f)
	if err != nil || id != 0x0200 || !bytes.Equal(body, []byte{0x7e, 0x01}) {
		t.Fatalf("parsed %04x % x %v", id, body, err)
	}
	if _, ok := jtUnescape(nil, append(got[1:len(got)-2:len(got)-2], 0x00)); ok {
		t.Fatal("bad check code accepted")
	}
}
