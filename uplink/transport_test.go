package uplink

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/edgeway/edgeway/agent/config"
)

// mTLS to mosquitto with a client certificate; a wrong CA or a missing
// client certificate gives a clear error, retries, and no crash.
func TestMutualTLSMosquitto(t *testing.T) {
	pk := newPKI(t)
	tlsPort := freePort(t)
	m := startMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		tlsPort, pk.ca, pk.serverCert, pk.serverKey))
	server := "mqtts://127.0.0.1:" + strconv.Itoa(tlsPort)

	t.Run("client certificate", func(t *testing.T) {
		cfg := testConfig(server)
		cfg.TLS = config.UplinkTLS{CAFile: pk.ca, CertFile: pk.clientCert, KeyFile: pk.clientKey}
		sub := subscribe(t, m.Addr(), "site/gw1/#")
		r := newRig(t, cfg, newMemQueue())
		for i := 0; i < 100; i++ {
			r.publish("dev/1/data", strconv.Itoa(i), 1)
		}
		checkSequence(t, sub.waitFor(t, 10*time.Second, "100 messages over mTLS", complete(100)), 100)
	})

	for _, tc := range []struct {
		name string
		tls  config.UplinkTLS
		want []string
	}{
		{"wrong CA", config.UplinkTLS{CAFile: pk.otherCA, CertFile: pk.clientCert, KeyFile: pk.clientKey},
			[]string{server, "tls: failed to verify certificate", "certificate signed by unknown authority"}},
		{"no client certificate", config.UplinkTLS{CAFile: pk.ca},
			[]string{server, "remote error: tls: certificate required"}},
		{"unreadable CA file", config.UplinkTLS{CAFile: pk.dir + "/missing.pem"},
			[]string{server, "tls.cacertfile", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(server)
			cfg.TLS = tc.tls
			r := newRig(t, cfg, newMemQueue())
			eventually(t, 10*time.Second, "three attempts", func() bool { return r.u.Status().ConnectAttempts >= 3 })
			st := r.u.Status()
			if st.State == StateConnected || st.Connects != 0 {
				t.Fatalf("connected: %+v", st)
			}
			for _, w := range tc.want {
				if !strings.Contains(st.LastError, w) {
					t.Errorf("last error %q does not say %q", st.LastError, w)
				}
			}
			t.Logf("last error: %s", st.LastError)
		})
	}
}

// MQTT over websockets, to mochi's and mosquitto's websocket listeners.
func TestWebsocket(t *testing.T) {
	t.Run("mochi", func(t *testing.T) {
		port := freePort(t)
		c := startMochi(t, func(s *mochi.Server) {
			if err := s.AddListener(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: "127.0.0.1:" + strconv.Itoa(port)})); err != nil {
				t.Fatal(err)
			}
		})
		testWebsocket(t, c, "ws://127.0.0.1:"+strconv.Itoa(port)+"/mqtt")
	})
	t.Run("mosquitto", func(t *testing.T) {
		port := freePort(t)
		c := startMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\nprotocol websockets\n", port))
		testWebsocket(t, c, "ws://127.0.0.1:"+strconv.Itoa(port)+"/mqtt")
	})
}

func testWebsocket(t *testing.T, c cloud, server string) {
	sub := subscribe(t, c.Addr(), "site/gw1/#")
	r := newRig(t, testConfig(server), newMemQueue())
	dev := newLocalClient(t, r.b, "mqttsn/ws")
	dev.subscribe(t, r.u, "cmd/#")
	for i := 0; i < 1000; i++ {
		r.publish("dev/1/data", strconv.Itoa(i), 1)
	}
	checkSequence(t, sub.waitFor(t, 10*time.Second, "1000 messages over a websocket", complete(1000)), 1000)
	eventually(t, 10*time.Second, "the upstream subscription", func() bool { return r.u.Status().Subscriptions == 1 })
	publisher(t, c.Addr()).Publish("site/gw1/cmd/x", 1, false, "down").Wait()
	dev.waitFor(t, "cmd/x", "down")
}
