package agent

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeway/edgeway/internal/cloudtest"
	"github.com/edgeway/edgeway/protocols/stomp/stomptest"
)

// Frames from beidouchangxi/rtm_con tests/rtm_con/message_and_data_samples.py
// (commit f1363de), a GB/T 32960.3 parser's samples; data_2016/data_2025
// were recorded from a vehicle. The same frames, with the values the source
// states, are checked in protocols/gbt32960/published_test.go, whose golden
// files are the JSON expected here.
const (
	e2eVIN          = "HAUV4BGN6S5002219"
	e2eLogin2016    = "232301fe484155563442474e365335303032323139010066190a1b140202000c3839383630393234373930303233313636363036031830524a50454130304841553041414631333130303139353530524a50454130304841553041414631333130303139353630524a504541303048415530414146313331303031393537dc"
	e2eAck2016      = "23230101484155563442474e365335303032323139010006190a1b14020236" // rtm_con "ack2016"
	e2eLogout2016   = "232304fe484155563442474e365335303032323139010008190a1b1402020802c8"
	e2eLogin2025    = "242401fe484155563442474e365335303032323139010067190a1b140202000c383938363039323437393030323331363636303602010230524a50454130304841553041414631333130303139353530524a50454130304841553041414631333130303139353630524a504541303048415530414146313331303031393537c7"
	e2eAck2025      = "24240101484155563442474e365335303032323139010006190a1b14020236" // rtm_con "ack2025"
	e2eLogout2025   = "242404fe484155563442474e365335303032323139010008190a1b1402020802c8"
	e2eEngine2016   = "232302fe484155563442474e36533530303232313901000c190a1b14020204ffffffffff3b"
	e2eLocation2016 = "232302fe484155563442474e365335303032323139010010190a1b1402020507ffffffffffffffffde"
)

const e2eGBTConfig = `
[agent]
id = "e2e"
data_dir = "DATA"
security_profile = "legacy"
[api]
listen = ""
[uplink]
server = "mqtt://CLOUD"
topic_prefix = "site/${agent.id}/"
[gateway.gbt32960]
retry_interval = "30s"
[gateway.gbt32960.listeners.tcp.default]
bind = "127.0.0.1:0"
`

// startGBT32960E2E builds the agent as startE2E does, with a GB/T 32960
// gateway instead of the MQTT-SN, STOMP and LwM2M ones.
func startGBT32960E2E(t *testing.T) (*Agent, *cloudtest.Cloud) {
	t.Helper()
	cl := cloudtest.Start(t, "127.0.0.1:0")
	a, _ := runE2EAgent(t, e2eGBTConfig, cl.Addr, t.TempDir())
	return a, cl
}

// gbtTerminal is the vehicle: a plain TCP client writing frames as bytes.
type gbtTerminal struct {
	t *testing.T
	c net.Conn
}

func dialGBT(t *testing.T, addr string) *gbtTerminal {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &gbtTerminal{t: t, c: c}
}

func (g *gbtTerminal) send(hexFrame string) {
	g.t.Helper()
	b, err := hex.DecodeString(hexFrame)
	if err != nil {
		g.t.Fatal(err)
	}
	if _, err := g.c.Write(b); err != nil {
		g.t.Fatal(err)
	}
}

// read returns the next whole frame the gateway sent.
func (g *gbtTerminal) read() []byte {
	g.t.Helper()
	_ = g.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	h := make([]byte, 24)
	if _, err := io.ReadFull(g.c, h); err != nil {
		g.t.Fatalf("terminal read: %v", err)
	}
	rest := make([]byte, int(h[22])<<8|int(h[23])+1)
	if _, err := io.ReadFull(g.c, rest); err != nil {
		g.t.Fatalf("terminal read: %v", err)
	}
	return append(h, rest...)
}

func (g *gbtTerminal) expect(wantHex, what string) {
	g.t.Helper()
	if got := hex.EncodeToString(g.read()); got != wantHex {
		g.t.Fatalf("%s: gateway answered\n %s\nwant %s", what, got, wantHex)
	}
}

// gbtFrame builds a frame from its fields (GB/T 32960.3 §6.2).
func gbtFrame(start string, cmd, ack byte, vin string, data []byte) []byte {
	b := []byte{cmd, ack}
	b = append(b, vin...)
	b = append(b, 1, byte(len(data)>>8), byte(len(data)))
	b = append(b, data...)
	var x byte
	for _, c := range b {
		x ^= c
	}
	return append(append([]byte(start), b...), x)
}

// nextGBT returns the next message on topic, skipping others.
func nextGBT(t *testing.T, ch <-chan stomptest.Message, topic string) []byte {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if m.Topic == topic {
				return m.Payload
			}
		case <-deadline:
			t.Fatalf("nothing on %s at the cloud broker", topic)
		}
	}
}

// goldenGBT compares a payload with the codec's golden file (indented
// there), byte for byte after compacting.
func goldenGBT(t *testing.T, name string, payload []byte) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("..", "protocols", "gbt32960", "testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(payload, c.Bytes()) {
		t.Fatalf("cloud got\n %s\nwant (%s)\n %s", payload, name, c.Bytes())
	}
}

// TestE2EGBT32960: a terminal on a real TCP socket sends published GB/T
// 32960 frames of both editions; the cloud application on a real broker
// gets EMQX's JSON on gbt32960/<VIN>/upstream/..., the terminal gets the
// standard's answers; a parameter query published by the cloud reaches the
// terminal as a 0x80 frame and its reply comes back as JSON.
func TestE2EGBT32960(t *testing.T) {
	a, cl := startGBT32960E2E(t)
	app := newPahoPeer(t, cl.Addr)
	prefix := "site/e2e/gbt32960/" + e2eVIN + "/"
	up, err := app.Subscribe(prefix + "upstream/#")
	if err != nil {
		t.Fatal(err)
	}
	addr := listenerAddr(t, a, "gbt32960")

	// 2016: login, real-time, reissue, heartbeat, a downlink, logout.
	term := dialGBT(t, addr)
	term.send(e2eLogin2016)
	term.expect(e2eAck2016, "login 2016")
	goldenGBT(t, "published/rtm_login2016", nextGBT(t, up, prefix+"upstream/vlogin"))

	term.send(e2eEngine2016)
	goldenGBT(t, "published/rtm_info2016_engine", nextGBT(t, up, prefix+"upstream/info"))
	// The same unit reissued (command 0x03; the source has no reissue frame).
	loc, _ := hex.DecodeString(e2eLocation2016)
	reissue := gbtFrame("##", 0x03, 0xFE, e2eVIN, loc[24:len(loc)-1])
	term.send(hex.EncodeToString(reissue))
	payload := nextGBT(t, up, prefix+"upstream/reinfo")
	if want := `{"Cmd":3,"Data":{"Infos":[{"Latitude":4294967295,"Longitude":4294967295,"Status":7,"Type":"Location"}],` +
		`"Time":{"Day":27,"Hour":20,"Minute":2,"Month":10,"Second":2,"Year":25}},"Encrypt":1,"Vin":"` + e2eVIN + `"}`; string(payload) != want {
		t.Fatalf("reinfo\n %s\nwant %s", payload, want)
	}

	term.send(hex.EncodeToString(gbtFrame("##", 0x07, 0xFE, e2eVIN, nil)))
	term.expect(hex.EncodeToString(gbtFrame("##", 0x07, 0x01, e2eVIN, nil)), "heartbeat")

	// Downlink: EMQX's query JSON on the vehicle's dnstream topic.
	deadline := time.Now().Add(10 * time.Second)
	for !cl.HasSubscriber(prefix + "dnstream") {
		if time.Now().After(deadline) {
			t.Fatal("dnstream not mirrored to the cloud broker")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := app.Publish(prefix+"dnstream", []byte(`{"Action":"Query","Total":2,"Ids":["0x01","0x02"]}`)); err != nil {
		t.Fatal(err)
	}
	q := term.read()
	// The gateway stamps the query with its local time; everything else is
	// fixed: "##", 0x80, command flag, VIN, clear, 9 bytes, time, 2 ids.
	stamp := q[24:30]
	want := gbtFrame("##", 0x80, 0xFE, e2eVIN, append(append([]byte{}, stamp...), 2, 0x01, 0x02))
	if !bytes.Equal(q, want) {
		t.Fatalf("query frame\n %x\nwant %x", q, want)
	}
	if now := time.Now(); int(stamp[0]) != now.Year()%100 || int(stamp[1]) != int(now.Month()) {
		t.Fatalf("query time %v, now %v", stamp, now)
	}
	// The terminal answers with its values (6000 and 10 for ids 1 and 2).
	reply := gbtFrame("##", 0x80, 0x01, e2eVIN, []byte{25, 10, 27, 20, 3, 0, 2, 0x01, 0x17, 0x70, 0x02, 0x00, 0x0A})
	term.send(hex.EncodeToString(reply))
	payload = nextGBT(t, up, prefix+"upstream/response")
	if want := `{"Ack":1,"Cmd":128,"Data":{"Params":[{"0x01":6000},{"0x02":10}],` +
		`"Time":{"Day":27,"Hour":20,"Minute":3,"Month":10,"Second":0,"Year":25},"Total":2},"Encrypt":1,"Vin":"` + e2eVIN + `"}`; string(payload) != want {
		t.Fatalf("response\n %s\nwant %s", payload, want)
	}

	term.send(e2eLogout2016)
	term.expect(hex.EncodeToString(gbtFrame("##", 0x04, 0x01, e2eVIN, []byte{25, 10, 27, 20, 2, 2})), "logout 2016")
	goldenGBT(t, "published/rtm_logout2016", nextGBT(t, up, prefix+"upstream/vlogout"))
	term.c.Close()

	// 2025: login, a signed real-time report with the 0x07 battery unit
	// voltages, logout.
	term = dialGBT(t, addr)
	term.send(e2eLogin2025)
	term.expect(e2eAck2025, "login 2025")
	goldenGBT(t, "published/rtm_login2025", nextGBT(t, up, prefix+"upstream/vlogin"))
	term.send(e2eCells2025)
	goldenGBT(t, "published/rtm_info2025_cells", nextGBT(t, up, prefix+"upstream/info"))
	term.send(e2eLogout2025)
	term.expect(hex.EncodeToString(gbtFrame("$$", 0x04, 0x01, e2eVIN, []byte{25, 10, 27, 20, 2, 2})), "logout 2025")
	goldenGBT(t, "published/rtm_logout2025", nextGBT(t, up, prefix+"upstream/vlogout"))
}

// rtm_con "data2025 with only cell volts data": type 0x07 and an RSA signature.
const e2eCells2025 = "242402fe484155563442474e36533530303232313901012a190a1b1402020702ffffffffff0004ffffffffffffffffffffffffff0003ffffffffffffff0201000f2ea480a605f882ee7c5ca6e7295ce400ef303d8a6d7dbb9d17129454defba3d877cfdf0200ee0740929c0a01d000a6c640e8502db5106f806b620d2046d518830dbfa2bb041f7387581b5da7b8595aa948f62392e75b235e12ee4580eab44063200cd59fb824f17b6034901696a2c708a7289fad32e8dc807d03238b17c2b1fdecb2b2719e6974390a8d2caaba7865d929c1712bfc9ba42d361545ce88753d1ca8caf32aacc4ed6365b330accfd1bbd1b05def98b2c5f7bd2d16fc12a31a731b269b6c1450829c2c67409e20e0099791928917ceda3b0d744f7d8b2af35abe6fe411afb373337b8c1ddd897ed31f36e2656ad9c59336c8896efbc9a204833900008a"
