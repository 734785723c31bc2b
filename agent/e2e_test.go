package agent

import (
	"context"
	"fmt"
	"github.com/edgeway/edgeway/internal/gwtest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/internal/cloudtest"
	"github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
	"github.com/edgeway/edgeway/protocols/stomp/stomptest"
	"github.com/edgeway/edgeway/uplink"
)

// pahoPeer is the cloud application: a plain paho client on the cloud broker.
type pahoPeer struct{ c paho.Client }

func newPahoPeer(t *testing.T, addr string) *pahoPeer {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("cloud-app").SetCleanSession(true)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("cloud app connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &pahoPeer{c: c}
}

func (p *pahoPeer) Subscribe(filter string) (<-chan stomptest.Message, error) {
	ch := make(chan stomptest.Message, 4096)
	tok := p.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		ch <- stomptest.Message{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...)}
	})
	tok.Wait()
	return ch, tok.Error()
}

func (p *pahoPeer) Publish(topic string, payload []byte) error {
	tok := p.c.Publish(topic, 1, false, payload)
	tok.Wait()
	return tok.Error()
}

const e2eConfig = `
[agent]
id = "e2e"
data_dir = "DATA"
security_profile = "legacy"
[api]
listen = ""
[uplink]
server = "mqtt://CLOUD"
topic_prefix = "site/${agent.id}/"
[gateway.mqttsn]
mountpoint = "sn/"
[gateway.mqttsn.listeners.udp.default]
bind = "127.0.0.1:0"
[gateway.stomp.listeners.tcp.default]
bind = "127.0.0.1:0"
[gateway.lwm2m.listeners.udp.default]
bind = "127.0.0.1:0"
`

func startE2E(t *testing.T) (*Agent, *cloudtest.Cloud) {
	t.Helper()
	cl := cloudtest.Start(t, "127.0.0.1:0")
	a, _ := runE2EAgent(t, e2eConfig, cl.Addr, t.TempDir())
	return a, cl
}

// runE2EAgent writes template (DATA → dir/data, CLOUD → cloud) to
// dir/edgeway.toml, starts the agent on it and waits for its uplink to
// connect. stop ends it (also at cleanup); the agent can be started again
// on the same dir.
func runE2EAgent(t *testing.T, template, cloud, dir string) (a *Agent, stop func()) {
	t.Helper()
	a, stop = startE2EAgent(t, template, cloud, dir)
	gwtest.Eventually(t, "uplink connected", func() bool {
		u := a.Uplink()
		return u != nil && u.Status().State == uplink.StateConnected
	})
	return a, stop
}

// startE2EAgent is runE2EAgent without waiting for the uplink.
func startE2EAgent(t *testing.T, template, cloud, dir string) (a *Agent, stop func()) {
	t.Helper()
	src := strings.NewReplacer("DATA", filepath.Join(dir, "data"), "CLOUD", cloud).Replace(template)
	path := filepath.Join(dir, "edgeway.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err = New(cfg, Options{ConfigPath: path, BoardRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop = sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Stop(ctx)
	})
	t.Cleanup(stop)
	return a, stop
}

func listenerAddr(t testing.TB, a *Agent, gw string) string {
	t.Helper()
	g, ok := a.Gateways().Get(gw)
	if !ok || len(g.Listeners()) == 0 {
		t.Fatalf("gateway %s not running", gw)
	}
	return g.Listeners()[0].Addr()
}

// TestE2EMQTTSN: an MQTT-SN sensor publishes QoS 1 through the agent to a
// real cloud broker, and a cloud application's command comes back down to
// the sensor through the mirrored subscription.
func TestE2EMQTTSN(t *testing.T) {
	a, cl := startE2E(t)
	app := newPahoPeer(t, cl.Addr)
	up, err := app.Subscribe("site/e2e/sn/#")
	if err != nil {
		t.Fatal(err)
	}
	d := mqttsntest.DialUDP(t, listenerAddr(t, a, "mqttsn"))
	d.Connect("sensor1", true, 60)
	id := d.Register(1, "temp")
	for i := 0; i < 20; i++ {
		d.Send(mqttsntest.PublishMsg(mqttsntest.QoS1, id, uint16(10+i), []byte(fmt.Sprint(i))))
		if p := d.Expect(mqttsntest.PUBACK); p.RC() != 0 {
			t.Fatalf("PUBACK rc %d", p.RC())
		}
	}
	for i := 0; i < 20; i++ {
		select {
		case m := <-up:
			if m.Topic != "site/e2e/sn/temp" || string(m.Payload) != fmt.Sprint(i) {
				t.Fatalf("cloud got %s %q, want site/e2e/sn/temp %d", m.Topic, m.Payload, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("cloud received %d of 20", i)
		}
	}

	if p := d.Subscribe(mqttsntest.QoS1, 2, "cmd/#"); p.RC() != 0 {
		t.Fatalf("SUBACK rc %d", p.RC())
	}
	deadline := time.Now().Add(10 * time.Second)
	for !cl.HasSubscriber("site/e2e/sn/cmd/#") {
		if time.Now().After(deadline) {
			t.Fatal("uplink did not mirror the device's subscription upstream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := app.Publish("site/e2e/sn/cmd/reboot", []byte("now")); err != nil {
		t.Fatal(err)
	}
	reg := d.Expect(mqttsntest.REGISTER)
	if reg.TopicName() != "cmd/reboot" {
		t.Fatalf("gateway registered %q", reg.TopicName())
	}
	d.Send(mqttsntest.RegackMsg(reg.TopicID(), reg.MsgID(), 0))
	pub := d.Expect(mqttsntest.PUBLISH)
	if pub.TopicID() != reg.TopicID() || string(pub.Payload()) != "now" {
		t.Fatalf("downlink %s", pub)
	}
}

// TestE2ESTOMP: 1 000 messages each way between a STOMP client and a cloud
// application through the agent and a real broker.
func TestE2ESTOMP(t *testing.T) {
	a, cl := startE2E(t)
	app := newPahoPeer(t, cl.Addr)
	c, err := stomp.Dial("tcp", listenerAddr(t, a, "stomp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := stomptest.Exchange(ctx, c, app, stomptest.Options{
		N: 1000, QoS: 1,
		UpDest: "plant/line1", PeerUpFilter: "site/e2e/plant/line1",
		DownDest: "orders/line1", PeerDownTopic: "site/e2e/orders/line1",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1000 up in %s, 1000 down in %s", res.Up, res.Down)
}
