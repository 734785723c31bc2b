package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"github.com/edgeway/edgeway/internal/gwtest"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/internal/cloudtest"
	"github.com/edgeway/edgeway/protocols/stomp/stomptest"
)

// The JT/T 808 end-to-end test sends frames published by third parties
// (see protocols/jt808/published_test.go for each one's values):
//
//	[smallchi] github.com/SmallChi/JT808, src/JT808.Protocol.Test/MessageBody/
//	[xtream]   github.com/makeclan/xtream-codec,
//	           debug/jt/jt-808-server-spring-boot-starter-debug-ui/src/utils/codec-utils.ts
//
// Frames whose content depends on what the gateway answered (the auth
// code) are built by jtFrame below, the standard's framing written out
// independently of protocols/jt808.
var (
	// [smallchi] JT808_0x0100Test.cs Test1_1: register, phone 000123456789, sn 10, plate 粤A12345 in GBK.
	pubRegister2013 = jtHex("7E 01 00 00 2D 00 01 23 45 67 89 00 0A 00 28 00 32 31 32 33 34 30 73 6D 61 6C 6C 63 68 69 31 32 33 30 30 30 30 30 30 30 30 30 43 48 49 31 32 33 30 01 D4 C1 41 31 32 33 34 35 BA 7E")
	// [smallchi] JT808_0x0100Test.cs Test2019_2: the 2019 register (its body is reused under another phone).
	pubRegister2019 = jtHex("7E010040540100000000000123456789000A00280032303030303030303132333430303030303030303030303030303030303030736D616C6C63686931323330303030303030303030303030303030303030303030303043484931323301D4C1413132333435B27E")
	// [smallchi] JT808_0x0200Test.cs Demo2: location, phone 123456789012, sn 126 (escaped), oil 125 (escaped).
	pubLocation2013 = jtHex("7E 02 00 00 26 12 34 56 78 90 12 00 7D 02 00 00 00 01 00 00 00 02 00 BA 7F 0E 07 E4 F1 1C 00 28 00 3C 00 00 18 10 15 10 10 10 01 04 00 00 00 64 02 02 00 7D 01 13 7E")
	// [xtream] BuiltinMessage0200, 0704, 0002: 2019, phone 13912344329, sn 0.
	pubLocation2019 = jtHex("7e02004026010000000001391234432900000000006f0000001601dc9a0707456246007b004200032501292233440202006401040000000c417e")
	pubBulk2019     = jtHex("7e0704403f01000000000139123443290000000200001c000000010000000101d907f2073d336c029a00210059241029213903001c000000010000000101d907f3073d336d03090043005a241029213903f87e")
	pubHeartbeat19  = jtHex("7e0002400001000000000139123443290000377e")
	// [smallchi] JT808_0x8103Test.cs Test1_1: set parameter 0x0001 = 10, phone 000123456789, sn 10.
	pubSetParams = jtHex("7E 81 03 00 0A 00 01 23 45 67 89 00 0A 01 00 00 00 01 04 00 00 00 0A 05 7E")
	// [xtream] BuiltinMessage8201: 2019 location query, phone 13912344329, sn 0.
	pubQueryLocation19 = jtHex("7e8201400001000000000139123443290000b67e")
)

const (
	jtPhone1 = "000123456789"         // [smallchi] register and set-params frames
	jtPhone2 = "123456789012"         // [smallchi] location Demo2
	jtPhone3 = "00000000013912344329" // [xtream] 2019 frames
)

const e2eJT808Config = `
[agent]
id = "e2e"
data_dir = "DATA"
security_profile = "legacy"
[api]
listen = ""
[uplink]
server = "mqtt://CLOUD"
topic_prefix = "site/${agent.id}/"
[gateway.jt808]
frame.string_encoding = "gbk"
[gateway.jt808.proto.auth]
allow_anonymous = true
registrations_file = "DATA/jt808/registrations.json"
[gateway.jt808.listeners.tcp.default]
bind = "127.0.0.1:0"
`

// startJT808Agent is startE2E with a JT/T 808 gateway whose registrations
// live under the agent's data_dir in dir; the agent can be stopped and
// started again on the same dir.
func startJT808Agent(t *testing.T, cloud, dir string) (*Agent, func()) {
	t.Helper()
	return runE2EAgent(t, e2eJT808Config, cloud, dir)
}

// TestE2EJT808: terminals of both editions on one listener send published
// frames through the agent to mosquitto; the cloud application sees the
// exact JSON (golden files), the terminals the exact answers; downlinks
// from the cloud reach the terminals byte for byte and their answers come
// back. Then the agent restarts and the auth codes still work, for their
// own phones only.
func TestE2EJT808(t *testing.T) {
	cloud := cloudtest.StartMosquitto(t, "127.0.0.1:0")
	app := newPahoPeer(t, cloud.Addr)
	upCh, err := app.Subscribe("site/e2e/jt808/#")
	if err != nil {
		t.Fatal(err)
	}
	inbox := &cloudInbox{t: t, ch: upCh, got: map[string][][]byte{}}
	dir := t.TempDir()
	a, stop := startJT808Agent(t, cloud.Addr, dir)
	addr := listenerAddr(t, a, "jt808")

	// Terminal 1, 2013: the published registration as it is.
	t1 := dialJT(t, addr)
	t1.write(pubRegister2013)
	code1 := t1.expectRegisterAck(false, jtPhone1, 0, 10)
	t1.write(jtFrame(0x0102, false, jtPhone1, 11, []byte(code1)))
	t1.expect(jtAck(false, jtPhone1, 1, 11, 0x0102, 0))

	// Terminal 2, 2013: registers with the published body, then sends the
	// published location whose msg_sn (0x007e) and oil (0x007d) are escaped.
	t2 := dialJT(t, addr)
	t2.write(jtFrame(0x0100, false, jtPhone2, 1, pubRegister2013[13:len(pubRegister2013)-2]))
	code2 := t2.expectRegisterAck(false, jtPhone2, 0, 1)
	t2.write(jtFrame(0x0102, false, jtPhone2, 2, []byte(code2)))
	t2.expect(jtAck(false, jtPhone2, 1, 2, 0x0102, 0))
	t2.write(pubLocation2013)
	t2.expect(jtAck(false, jtPhone2, 2, 126, 0x0200, 0))

	// Terminal 3, 2019, on the same listener.
	t3 := dialJT(t, addr)
	t3.write(jtFrame(0x0100, true, jtPhone3, 1, pubRegister2019[18:len(pubRegister2019)-2]))
	code3 := t3.expectRegisterAck(true, jtPhone3, 0, 1)
	auth3 := append([]byte{byte(len(code3))}, code3...)
	auth3 = append(auth3, "867530040000001"...)
	auth3 = append(auth3, append([]byte("v1.0"), make([]byte, 16)...)...)
	t3.write(jtFrame(0x0102, true, jtPhone3, 2, auth3))
	t3.expect(jtAck(true, jtPhone3, 1, 2, 0x0102, 0))
	t3.write(pubLocation2019)
	t3.expect(jtAck(true, jtPhone3, 2, 0, 0x0200, 0))
	t3.write(pubBulk2019)
	t3.expect(jtAck(true, jtPhone3, 3, 0, 0x0704, 0))
	t3.write(pubHeartbeat19)
	t3.expect(jtAck(true, jtPhone3, 4, 0, 0x0002, 0))

	up := func(phone string) string { return "site/e2e/jt808/" + phone + "/" + phone + "/up" }
	inbox.expectGolden(up(jtPhone2), "location_2013_smallchi.json")
	inbox.expectGolden(up(jtPhone3), "location_2019_xtream.json")
	inbox.expectGolden(up(jtPhone3), "bulk_location_2019_xtream.json")
	inbox.expectGolden(up(jtPhone3), "heartbeat_2019_xtream.json")

	// Downlinks: the cloud application publishes EMQX's JSON on dn_topic.
	gwtest.Eventually(t, "the three dn_topic subscriptions mirrored upstream", func() bool {
		return a.Uplink().Status().Subscriptions == 3
	})
	dn := func(phone string) string { return "site/e2e/jt808/" + phone + "/" + phone + "/dn" }
	if err := app.Publish(dn(jtPhone1), []byte(`{"header":{"msg_id":33027,"msg_sn":10},"body":{"params":[{"id":1,"value":10}]}}`)); err != nil {
		t.Fatal(err)
	}
	t1.expect(pubSetParams)
	t1.write(jtFrame(0x0001, false, jtPhone1, 12, jtHex("000a 8103 00")))
	inbox.expectGolden(up(jtPhone1), "set_params_ack.json")

	if err := app.Publish(dn(jtPhone3), []byte(`{"header":{"msg_id":33281,"msg_sn":0},"body":{}}`)); err != nil {
		t.Fatal(err)
	}
	t3.expect(pubQueryLocation19)
	t3.write(jtFrame(0x0201, true, jtPhone3, 1, append(jtHex("0000"), pubLocation2019[18:len(pubLocation2019)-2]...)))
	inbox.expectGolden(up(jtPhone3), "query_location_ack_2019.json")

	// Restart: registrations are in the data dir, not in memory.
	t1.c.Close()
	t2.c.Close()
	t3.c.Close()
	stop()
	a, _ = startJT808Agent(t, cloud.Addr, dir)
	addr = listenerAddr(t, a, "jt808")

	t2 = dialJT(t, addr)
	t2.write(jtFrame(0x0102, false, jtPhone2, 3, []byte(code1)))
	t2.expect(jtAck(false, jtPhone2, 0, 3, 0x0102, 1)) // terminal 1's code, terminal 2's phone
	t1 = dialJT(t, addr)
	t1.write(jtFrame(0x0102, false, jtPhone1, 13, []byte(code1)))
	t1.expect(jtAck(false, jtPhone1, 0, 13, 0x0102, 0))
	t3 = dialJT(t, addr)
	t3.write(jtFrame(0x0102, true, jtPhone3, 3, auth3))
	t3.expect(jtAck(true, jtPhone3, 0, 3, 0x0102, 0))
	// And terminal 3 is a client again: its location reaches the cloud.
	t3.write(pubLocation2019)
	t3.expect(jtAck(true, jtPhone3, 1, 0, 0x0200, 0))
	inbox.expectGolden(up(jtPhone3), "location_2019_xtream.json")
}

// ---- the terminal side: raw TCP and the standard's framing ----

func jtHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// jtFrame builds a frame as JT/T 808 section 4 describes it: header
// (2019: version byte 1 and a BCD[10] phone), body, XOR checksum, 0x7e
// and 0x7d escaped, 0x7e delimiters.
func jtFrame(id uint16, v19 bool, phone string, sn uint16, body []byte) []byte {
	props := uint16(len(body))
	if v19 {
		props |= 1 << 14
	}
	raw := binary.BigEndian.AppendUint16(nil, id)
	raw = binary.BigEndian.AppendUint16(raw, props)
	if v19 {
		raw = append(raw, 1)
	}
	raw = append(raw, jtHex(phone)...) // decimal digits read as hex are BCD
	raw = binary.BigEndian.AppendUint16(raw, sn)
	raw = append(raw, body...)
	var x byte
	for _, c := range raw {
		x ^= c
	}
	raw = append(raw, x)
	out := []byte{0x7e}
	for _, c := range raw {
		switch c {
		case 0x7e:
			out = append(out, 0x7d, 0x02)
		case 0x7d:
			out = append(out, 0x7d, 0x01)
		default:
			out = append(out, c)
		}
	}
	return append(out, 0x7e)
}

// jtAck is the platform's 0x8001 answering (seq, id) with result.
func jtAck(v19 bool, phone string, sn, seq, id uint16, result byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, seq)
	b = binary.BigEndian.AppendUint16(b, id)
	return jtFrame(0x8001, v19, phone, sn, append(b, result))
}

type jtTerm struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialJT(t *testing.T, addr string) *jtTerm {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &jtTerm{t: t, c: c, r: bufio.NewReader(c)}
}

func (tm *jtTerm) write(b []byte) {
	tm.t.Helper()
	if _, err := tm.c.Write(b); err != nil {
		tm.t.Fatal(err)
	}
}

// next returns the next frame on the wire as it came, delimiters included.
func (tm *jtTerm) next() []byte {
	tm.t.Helper()
	tm.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		c, err := tm.r.ReadByte()
		if err != nil {
			tm.t.Fatalf("reading a frame: %v", err)
		}
		if c == 0x7e {
			break
		}
	}
	rest, err := tm.r.ReadBytes(0x7e)
	if err != nil {
		tm.t.Fatalf("reading a frame: %v", err)
	}
	return append([]byte{0x7e}, rest...)
}

func (tm *jtTerm) expect(want []byte) {
	tm.t.Helper()
	if got := tm.next(); !bytes.Equal(got, want) {
		tm.t.Fatalf("terminal received\n% x\nwant\n% x", got, want)
	}
}

// expectRegisterAck reads the 0x8100 answering seq, checks every byte of
// it, and returns the auth code it carries.
func (tm *jtTerm) expectRegisterAck(v19 bool, phone string, sn, seq uint16) string {
	tm.t.Helper()
	got := tm.next()
	raw := strings.NewReplacer(string([]byte{0x7d, 0x02}), "\x7e", string([]byte{0x7d, 0x01}), "\x7d").Replace(string(got[1 : len(got)-1]))
	hdr := 12
	if v19 {
		hdr = 17
	}
	if len(raw) < hdr+3+1 {
		tm.t.Fatalf("0x8100 too short: % x", got)
	}
	code := raw[hdr+3 : len(raw)-1]
	if code == "" {
		tm.t.Fatalf("0x8100 without an auth code: % x", got)
	}
	want := jtFrame(0x8100, v19, phone, sn, append(binary.BigEndian.AppendUint16(nil, seq), append([]byte{0}, code...)...))
	if !bytes.Equal(got, want) {
		tm.t.Fatalf("0x8100\n% x\nwant\n% x", got, want)
	}
	return code
}

// ---- the cloud side ----

// cloudInbox sorts what the cloud application receives by topic, so that
// terminals interleaving their messages do not matter; per topic the
// order is kept.
type cloudInbox struct {
	t   *testing.T
	ch  <-chan stomptest.Message
	got map[string][][]byte
}

func (in *cloudInbox) next(topic string) []byte {
	in.t.Helper()
	timeout := time.After(10 * time.Second)
	for len(in.got[topic]) == 0 {
		select {
		case m := <-in.ch:
			in.got[m.Topic] = append(in.got[m.Topic], m.Payload)
		case <-timeout:
			in.t.Fatalf("nothing on %s; other topics: %q", topic, in.got)
		}
	}
	p := in.got[topic][0]
	in.got[topic] = in.got[topic][1:]
	return p
}

// expectGolden checks the next payload on topic byte for byte against a
// golden file of protocols/jt808/testdata/e2e (compacted).
func (in *cloudInbox) expectGolden(topic, name string) {
	in.t.Helper()
	got := in.next(topic)
	g, err := os.ReadFile(filepath.Join("..", "protocols", "jt808", "testdata", "e2e", name))
	if err != nil {
		in.t.Fatal(err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, g); err != nil {
		in.t.Fatalf("%s: %v", name, err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		in.t.Fatalf("%s on %s\n got %s\nwant %s", name, topic, got, want.Bytes())
	}
}
