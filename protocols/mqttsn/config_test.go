package mqttsn_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/protocols/mqttsn"
	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
)

func TestConfigDefaults(t *testing.T) {
	c, err := config.Parse([]byte("[gateway.mqttsn]\n[gateway.mqttsn.listeners.serial.bus]\ndevice = \"/dev/null\"\n"), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	got := c.Gateways["mqttsn"].Spec.(*mqttsn.Config)
	if !reflect.DeepEqual(got, mqttsn.NewConfig()) {
		t.Errorf("defaults %+v", got)
	}
	want := &mqttsn.Config{
		GatewayID: 1, BroadcastAddress: "255.255.255.255:1884", AdvertiseInterval: config.Duration(15 * time.Minute),
		EnableQoS3: true, SessionExpiry: config.Duration(2 * time.Hour), MaxInflight: 32, MqueueLen: 1000,
		RetryInterval: config.Duration(10 * time.Second), MaxRetry: 3, MaxAwaitingRel: 100,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults changed: %+v", got)
	}
	so := c.Gateways["mqttsn"].Listeners[0].KindSpec.(*mqttsn.SerialOptions)
	if so.Framing != "slip" || so.HalfDuplex || so.Turnaround.D() != 100*time.Millisecond || len(so.Nodes) != 0 {
		t.Errorf("serial defaults %+v", so)
	}
}

// Each snippet is a [gateway.mqttsn] body; the error must name the key.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		toml string
		want string
	}{
		{`gateway_id = 256`, "test.toml:2: gateway.mqttsn.gateway_id: must be 0..255, got 256"},
		{`broadcast_address = "1884"`, `gateway.mqttsn.broadcast_address: want host:port, got "1884"`},
		{`broadcast_address = "10.0.0.255:0"`, `gateway.mqttsn.broadcast_address: bad port in "10.0.0.255:0"`},
		{`advertise_interval = "500ms"`, "gateway.mqttsn.advertise_interval: must be 1s..65535s (ADVERTISE carries seconds in 16 bits), got 500ms"},
		{`advertise_interval = "19h"`, "gateway.mqttsn.advertise_interval: must be 1s..65535s"},
		{`predefined = [{ id = 0, topic = "a" }]`, "gateway.mqttsn.predefined[0].id: must be 1..65535, got 0"},
		{`predefined = [{ id = 65536, topic = "a" }]`, "gateway.mqttsn.predefined[0].id: must be 1..65535, got 65536"},
		{`predefined = [{ id = 1, topic = "a" }, { id = 1, topic = "b" }]`, "gateway.mqttsn.predefined[1].id: id 1 already used by predefined[0]"},
		{`predefined = [{ id = 1, topic = "a" }, { id = 2, topic = "a" }]`, `gateway.mqttsn.predefined[1].topic: topic "a" already has id 1 (predefined[0])`},
		{`predefined = [{ id = 1, topic = "a/#" }]`, `gateway.mqttsn.predefined[0].topic: "a/#": broker: invalid topic name: contains a wildcard`},
		{`predefined = [{ id = 1, name = "a" }]`, "gateway.mqttsn.predefined[0].name: unknown key"},
		{`max_inflight = 0`, "gateway.mqttsn.max_inflight: must be 1..65000, got 0"},
		{`mqueue_len = 0`, "gateway.mqttsn.mqueue_len: must be at least 1, got 0"},
		{`retry_interval = "1ms"`, "gateway.mqttsn.retry_interval: must be at least 10ms, got 1ms"},
		{`max_retry = -1`, "gateway.mqttsn.max_retry: must be 0..100, got -1"},
		{`max_awaiting_rel = 0`, "gateway.mqttsn.max_awaiting_rel: must be 1..65535, got 0"},
		{`session_expiry = 7200`, "gateway.mqttsn.session_expiry: expected a duration string"},
		{`enable_qos = true`, "gateway.mqttsn.enable_qos: unknown key"},
		{"[gateway.mqttsn.listeners.serial.bus]\ndevice = \"/dev/ttyS0\"\nframing = \"cobs\"", `gateway.mqttsn.listeners.serial.bus.framing: must be "slip" or "length", got "cobs"`},
		{"[gateway.mqttsn.listeners.serial.bus]\ndevice = \"/dev/ttyS0\"\nnodes = [1, 255]", "gateway.mqttsn.listeners.serial.bus.nodes[1]: node address must be 1..254, got 255"},
		{"[gateway.mqttsn.listeners.serial.bus]\ndevice = \"/dev/ttyS0\"\nnodes = [7, 7]", "gateway.mqttsn.listeners.serial.bus.nodes[1]: node address 7 listed twice"},
		{"[gateway.mqttsn.listeners.serial.bus]\ndevice = \"/dev/ttyS0\"\nturnaround = \"0s\"", "gateway.mqttsn.listeners.serial.bus.turnaround: must be 1ms..10s, got 0s"},
		{"[gateway.mqttsn.listeners.serial.bus]\ndevice = \"/dev/ttyS0\"\nframing = \"length\"\nnodes = [1]", "gateway.mqttsn.listeners.serial.bus.nodes: length framing has no node addresses"},
		{"[gateway.mqttsn.listeners.udp.default]\nbind = \"1884\"\nframing = \"slip\"", "gateway.mqttsn.listeners.udp.default.framing: unknown key"},
		{"[gateway.mqttsn.listeners.tcp.default]\nbind = \"1884\"", `listener type "tcp" is not available for gateway mqttsn (allowed: udp, dtls, serial)`},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			_, err := config.Parse([]byte("[gateway.mqttsn]\n"+c.toml+"\n"), "test.toml")
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, c.want)
			}
		})
	}
}

// Settings change live: connected clients stay.
func TestUpdateLive(t *testing.T) {
	base := "[gateway.mqttsn]\n%s\n[gateway.mqttsn.listeners.udp.default]\nbind = \"127.0.0.1:0\"\n[[gateway.mqttsn.authentication]]\ntype = \"anonymous\"\n"
	e := newEnv(t, strings.Replace(base, "%s", `predefined = [{ id = 1, topic = "old" }]`, 1))
	cloud := e.cloud("#")
	d := e.device()
	d.Connect("stay", true, 60)
	addr := e.addr("mqttsn:udp:default")
	c, err := config.Parse([]byte(strings.Replace(base, "%s", `predefined = [{ id = 1, topic = "new" }]`+"\nenable_qos3 = false", 1)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	// Keep the bound port: the listener itself is unchanged.
	c.Gateways["mqttsn"].Listeners[0].Bind = e.gateway().Config().Listeners[0].Bind
	if err := e.m.Apply(context.Background(), c.Gateways); err != nil {
		t.Fatal(err)
	}
	if got := e.addr("mqttsn:udp:default"); got != addr {
		t.Fatalf("listener moved from %s to %s", addr, got)
	}
	d.Send(sn.PublishMsg(sn.QoS0|sn.Predefined, 1, 0, []byte("v")))
	cloud.Expect("new", "v")
	q := e.device()
	q.Send(sn.PublishMsg(sn.QoSMinus1|sn.Predefined, 1, 0, []byte("x")))
	if p := q.Expect(sn.PUBACK); p.RC() != 0x03 {
		t.Fatalf("qos -1 after disabling: %s", p)
	}
}
