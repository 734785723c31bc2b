package coap_test

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeway/edgeway/protocols/coap"
)

// BenchmarkE2EMosquitto measures whole-agent throughput: CoAP publishes
// into a running edgeway whose uplink goes to mosquitto, counted at a
// subscriber on mosquitto, against a plain MQTT client publishing the
// same straight to mosquitto. It runs only when told where they are:
//
//	mosquitto -p 18830 &
//	edgeway run -c ew.toml &   # coap udp on 127.0.0.1:15683, uplink mqtt://127.0.0.1:18830
//	EDGEWAY_COAP=127.0.0.1:15683 EDGEWAY_MQTT=127.0.0.1:18830 \
//	  go test -run '^$' -bench E2EMosquitto -benchtime 3s ./protocols/coap/
func BenchmarkE2EMosquitto(b *testing.B) {
	coapAddr, mqttAddr := os.Getenv("EDGEWAY_COAP"), os.Getenv("EDGEWAY_MQTT")
	if coapAddr == "" || mqttAddr == "" {
		b.Skip("set EDGEWAY_COAP and EDGEWAY_MQTT")
	}
	var got atomic.Int64
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("e2e-sub").
		SetDefaultPublishHandler(func(paho.Client, paho.Message) { got.Add(1) }))
	if t := sub.Connect(); t.Wait() && t.Error() != nil {
		b.Fatal(t.Error())
	}
	defer sub.Disconnect(100)
	if t := sub.Subscribe("e2e/#", 1, nil); t.Wait() && t.Error() != nil {
		b.Fatal(t.Error())
	}
	drain := func(want int64) {
		deadline := time.Now().Add(30 * time.Second)
		for got.Load() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got.Load() < want {
			b.Fatalf("%d of %d arrived at mosquitto", got.Load(), want)
		}
	}
	payload := []byte(`{"temp":21.5}`)
	for _, typ := range []struct {
		name string
		t    uint8
		conn bool
	}{{"coap-NON", coap.NON, false}, {"coap-CON", coap.CON, false}, {"coap-NON-connection", coap.NON, true}, {"coap-CON-connection", coap.CON, true}} {
		b.Run(typ.name, func(b *testing.B) {
			ua, _ := net.ResolveUDPAddr("udp", coapAddr)
			c, err := net.DialUDP("udp", nil, ua)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := &raw{t: b, c: c}
			q := []string{"c=e2e-" + typ.name}
			if typ.conn {
				resp := r.roundTrip(r.req(coap.CON, 2, "cx", "/mqtt/connection", q[0]))
				q = append(q, "t="+string(resp.Payload))
			}
			m := r.req(typ.t, 2, "e2", "/ps/e2e/"+typ.name, q...)
			m.Payload = payload
			buf := coap.Append(nil, m)
			got.Store(0)
			start := time.Now()
			n := 0
			for i := 0; b.Loop(); i++ {
				mid := i + 0x1000 // clear of the MIDs r.req used
				buf[2], buf[3] = byte(mid>>8), byte(mid)
				r.sendBytes(buf)
				r.recv()
				n++
			}
			drain(int64(n))
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "arrived/s")
		})
	}
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("mqtt-direct-qos%d", qos), func(b *testing.B) {
			pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("e2e-pub"))
			if t := pub.Connect(); t.Wait() && t.Error() != nil {
				b.Fatal(t.Error())
			}
			defer pub.Disconnect(100)
			got.Store(0)
			start := time.Now()
			n := 0
			for b.Loop() {
				t := pub.Publish("e2e/direct", qos, false, payload)
				t.Wait()
				n++
			}
			drain(int64(n))
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "arrived/s")
		})
	}
}
