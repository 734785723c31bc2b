package fault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/bench/benchkit"
)

// corpus is the seeds plus the fuzz corpora of protocols/<pkg>'s targets
// that are checked in (testdata/fuzz/<target>; `make fuzz-corpus`).
func corpus(t *testing.T, seeds [][]byte, pkg string, targets ...string) [][]byte {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := append([][]byte(nil), seeds...)
	for _, tg := range targets {
		extra := benchkit.ReadFuzzCorpus(filepath.Join(root, "protocols", pkg, "testdata", "fuzz", tg))
		t.Logf("%s %s: %d corpus entries", pkg, tg, len(extra))
		out = append(out, extra...)
	}
	return out
}

// floodCounters are, per gateway, the metrics that count bad input
// (protocols/<p>/README.md, Metrics), as substrings of their names.
var floodCounters = map[string][]string{
	"mqttsn":   {"malformed"},
	"coap":     {"malformed", "bad_option"},
	"lwm2m":    {"malformed"},
	"stomp":    {"malformed", "unknown_command", "too_many_headers", "header_too_long", "body_too_long", "not_connected", "unsupported_version", "missing_header", "bad_header", "bad_destination"},
	"jt808":    {"bad_checksum", "frames_malformed", "too_long", "invalid_body", "phone_mismatch", "unauthenticated", "unsupported"},
	"gbt32960": {"check_error", "frame_malformed", "too_large", "before_login", "vin_mismatch", "bad_vin", "unexpected_response"},
}

// badCount is counter part of gateway gw: its gateway-wide series, or
// the sum over its listeners' where it has no gateway-wide one (gateways
// that count on both would otherwise be counted twice).
func badCount(m map[string]float64, part, gw string) float64 {
	var all, gwOnly float64
	for k, v := range m {
		name, _, _ := strings.Cut(k, "{")
		if !strings.Contains(name, part) || !strings.Contains(k, `gateway="`+gw+`"`) {
			continue
		}
		all += v
		if !strings.Contains(k, "listener=") {
			gwOnly += v
		}
	}
	if gwOnly > 0 {
		return gwOnly
	}
	return all
}

// TestMalformedFlood: good clients of every protocol run at a fixed
// rate; their acknowledged throughput is measured alone, then again while
// mutated codec-test frames and checked-in fuzz corpora flood every
// gateway. The good clients must keep ≥ 95% of it, the agent must not
// crash, each gateway must have counted bad input, and everything
// acknowledged must arrive.
func TestMalformedFlood(t *testing.T) {
	// 2 MB receive buffers (the kernel caps them at net.core.rmem_max), as
	// a deployment expecting floods sets them: with the default 208 KB a
	// stall of the agent of a few tens of ms on a busy box overflows the
	// MQTT-SN socket at this rate, and each good publish lost in the
	// kernel costs its client a 1 s timeout and a redial.
	r := newRig(t, func(c *benchkit.AgentConfig) {
		for _, g := range []string{"mqttsn", "coap", "lwm2m"} {
			c.Extra += "[gateway." + g + ".listeners.udp.default.udp_options]\nrecbuf = \"2MB\"\n"
		}
	}, nil)
	ctx := context.Background()
	protos := []string{"mqttsn", "stomp", "coap", "lwm2m", "jt808", "gbt32960"}
	clients := map[string]int{"mqttsn": n(200, 40), "stomp": n(50, 10)}
	for _, p := range protos[2:] {
		clients[p] = n(20, 5)
	}
	loads := map[string]*benchkit.Load{}
	for _, p := range protos {
		loads[p] = r.load(ctx, p, clients[p], 5)
	}
	for _, p := range protos {
		if !loads[p].WaitConnected(clients[p], 30*time.Second) {
			t.Fatalf("%s: only %d of %d good clients connected", p, loads[p].Connected(), clients[p])
		}
	}
	window := n(10*time.Second, 4*time.Second)
	measure := func() (total float64, per map[string]float64) {
		a := map[string]int64{}
		for _, p := range protos {
			a[p] = loads[p].Acked.Load()
		}
		time.Sleep(window)
		per = map[string]float64{}
		for _, p := range protos {
			per[p] = float64(loads[p].Acked.Load()-a[p]) / window.Seconds()
			total += per[p]
		}
		return total, per
	}
	time.Sleep(time.Second)
	base, basePer := measure()

	// Frames (datagrams, TCP frames, LwM2M Sends) per second, ≈ 8× the
	// good traffic in all (1 650/s; -short 350/s, ≈ 14×). MQTT-SN, with
	// the most good clients, gets the biggest share.
	rate := map[string]int{"mqttsn": n(6000, 2000), "coap": n(2000, 800), "lwm2m": n(2000, 800),
		"stomp": n(1000, 400), "jt808": n(1000, 400), "gbt32960": n(1000, 400)}
	lwm2mContent := corpus(t, benchkit.LwM2MContentSeeds, "lwm2m", "FuzzSenMLCBOR", "FuzzContent", "FuzzTLV")
	targets := []benchkit.FloodTarget{
		{Proto: "mqttsn", Frames: corpus(t, benchkit.MQTTSNSeeds, "mqttsn", "FuzzDecode", "FuzzSerialFramer")},
		{Proto: "coap", Frames: corpus(t, benchkit.CoAPSeeds, "coap", "FuzzDecode")},
		{Proto: "lwm2m", Frames: corpus(t, benchkit.LwM2MSeeds, "coap", "FuzzDecode"), Content: lwm2mContent},
		{Proto: "stomp", Frames: corpus(t, benchkit.STOMPSeeds, "stomp", "FuzzParseFrame")},
		{Proto: "jt808", Frames: corpus(t, benchkit.JT808Seeds, "jt808", "FuzzFrame")},
		{Proto: "gbt32960", Frames: corpus(t, benchkit.GBT32960Seeds, "gbt32960", "FuzzFrame")},
	}
	for i := range targets {
		targets[i].Addr, targets[i].Rate = r.env.Addrs[targets[i].Proto], rate[targets[i].Proto]
	}
	failed, dials := map[string]int64{}, map[string]int64{}
	for _, p := range protos {
		failed[p], dials[p] = loads[p].Failed.Load(), loads[p].Dials.Load()
	}
	rcvbuf := udpRcvbufErrors()
	fctx, stop := context.WithCancel(ctx)
	stats, wait := benchkit.Flood(fctx, targets)
	time.Sleep(500 * time.Millisecond)
	flooded, floodedPer := measure()
	stop()
	wait()
	for _, p := range protos {
		s := stats[p]
		t.Logf("%-8s good %3d clients: %6.1f/s alone, %6.1f/s under flood (%5.1f%%; %d publishes failed, %d redials); flood: %7d frames, %5d connections/sessions",
			p, clients[p], basePer[p], floodedPer[p], 100*floodedPer[p]/basePer[p],
			loads[p].Failed.Load()-failed[p], loads[p].Dials.Load()-dials[p], s.Frames.Load(), s.Conns.Load())
	}
	t.Logf("udp datagrams the kernel dropped for full receive buffers during the flood (whole host): %d", udpRcvbufErrors()-rcvbuf)
	t.Logf("lwm2m Sends of mutated content: %d answered 4.xx, %d 2.04", stats["lwm2m"].Refused.Load(), stats["lwm2m"].Changed.Load())
	t.Logf("good clients in all: %.0f/s alone, %.0f/s under flood (%.1f%%)", base, flooded, 100*flooded/base)
	if flooded < 0.95*base {
		t.Errorf("good clients fell to %.1f%% of their throughput under the flood (want ≥ 95%%)", 100*flooded/base)
	}
	for _, p := range protos {
		if floodedPer[p] < 0.9*basePer[p] {
			t.Errorf("%s: good clients fell to %.1f%% of their throughput under the flood", p, 100*floodedPer[p]/basePer[p])
		}
	}
	if r.agent.Exited() {
		t.Fatal("the agent crashed under the flood")
	}
	m := r.metrics()
	for _, p := range protos {
		var total float64
		var parts []string
		for _, c := range floodCounters[p] {
			v := badCount(m, c, p)
			total += v
			if v > 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f", c, v))
			}
		}
		t.Logf("%-8s counted: %s", p, strings.Join(parts, ", "))
		if total == 0 {
			t.Errorf("%s: no bad frame was counted", p)
		}
	}
	for _, p := range protos {
		loads[p].Stop()
	}
	for _, p := range protos {
		r.expectAllArrived(loads[p], 30*time.Second)
	}
}

// udpRcvbufErrors is the host's count of UDP datagrams dropped because a
// socket's receive buffer was full (/proc/net/snmp), or -1.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return -1
}
