package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/internal/cloudtest"
	"github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
	"github.com/edgeway/edgeway/uplink"
)

// startBenchAgent runs an agent whose uplink goes to Debian's mosquitto,
// and a counting subscriber on mosquitto.
func startBenchAgent(b *testing.B) (*Agent, *cloudtest.Mosquitto, *atomic.Int64) {
	b.Helper()
	mq := cloudtest.StartMosquitto(b, "127.0.0.1:0")
	dir := b.TempDir()
	src := strings.NewReplacer("DATA", filepath.Join(dir, "data"), "CLOUD", mq.Addr).Replace(e2eConfig)
	path := filepath.Join(dir, "edgeway.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(cfg, Options{ConfigPath: path, BoardRoot: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Stop(ctx)
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if u := a.Uplink(); u != nil && u.Status().State == uplink.StateConnected {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("uplink did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got atomic.Int64
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mq.Addr).SetClientID("bench-sub"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	b.Cleanup(func() { sub.Disconnect(100) })
	if tok := sub.Subscribe("#", 1, func(paho.Client, paho.Message) { got.Add(1) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	return a, mq, &got
}

func waitCount(b *testing.B, got *atomic.Int64, want int64) {
	b.Helper()
	for deadline := time.Now().Add(120 * time.Second); got.Load() < want; {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d arrived", got.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkE2EMosquitto compares, in one run, messages/s arriving at a
// mosquitto subscriber when published by devices through the agent
// (in process, uplink to mosquitto) and by a plain paho client straight
// to mosquitto. One device of each kind, publishing as fast as its
// protocol allows (QoS 0: without waiting; QoS 1: waiting for each ack).
//
//	go test -run '^$' -bench E2EMosquitto -benchtime 20000x ./agent/
func BenchmarkE2EMosquitto(b *testing.B) {
	a, mq, got := startBenchAgent(b)
	payload := []byte(strings.Repeat("x", 64))
	run := func(name string, send func(n int)) {
		b.Run(name, func(b *testing.B) {
			got.Store(0)
			b.ResetTimer()
			start := time.Now()
			send(b.N)
			if strings.HasSuffix(name, "qos0") {
				// QoS 0 may lose messages (UDP queues, counted): report
				// what arrived once nothing more comes.
				last, lastAt := got.Load(), time.Now()
				for got.Load() < int64(b.N) && time.Since(lastAt) < time.Second {
					time.Sleep(5 * time.Millisecond)
					if n := got.Load(); n != last {
						last, lastAt = n, time.Now()
					}
				}
				n := got.Load()
				b.ReportMetric(float64(n)/lastAt.Sub(start).Seconds(), "arrived/s")
				b.ReportMetric(100*float64(int64(b.N)-n)/float64(b.N), "loss%")
				return
			}
			waitCount(b, got, int64(b.N))
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "arrived/s")
		})
	}
	// MQTT-SN over UDP.
	d := mqttsntest.DialUDP(b, listenerAddr(b, a, "mqttsn"))
	d.Connect("benchsn", true, 600)
	id := d.Register(1, "sn/t")
	run("mqttsn-qos0", func(n int) {
		for i := 0; i < n; i++ {
			d.Send(mqttsntest.PublishMsg(mqttsntest.QoS0, id, 0, payload))
			if i%64 == 63 { // a UDP sender without flow control would only measure drops
				time.Sleep(time.Millisecond)
			}
		}
	})
	run("mqttsn-qos1", func(n int) {
		for i := 0; i < n; i++ {
			d.Send(mqttsntest.PublishMsg(mqttsntest.QoS1, id, uint16(i%65535+1), payload))
			d.Expect(mqttsntest.PUBACK)
		}
	})
	// STOMP over TCP.
	sc, err := stomp.Dial("tcp", listenerAddr(b, a, "stomp"))
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Disconnect()
	run("stomp-qos0", func(n int) {
		for i := 0; i < n; i++ {
			if err := sc.Send("st/t", "text/plain", payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	run("stomp-qos1-receipt", func(n int) {
		for i := 0; i < n; i++ {
			if err := sc.Send("st/t", "text/plain", payload, stomp.SendOpt.Header("qos", "1"), stomp.SendOpt.Receipt); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The baseline: a plain MQTT client straight to mosquitto.
	pc := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mq.Addr).SetClientID("bench-pub").SetMaxResumePubInFlight(64))
	if tok := pc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer pc.Disconnect(100)
	run("direct-qos0", func(n int) {
		for i := 0; i < n; i++ {
			pc.Publish("direct/t", 0, false, payload)
		}
	})
	run("direct-qos1", func(n int) {
		for i := 0; i < n; i++ {
			if tok := pc.Publish("direct/t", 1, false, payload); !tok.WaitTimeout(5 * time.Second) {
				b.Fatal(fmt.Errorf("puback timeout"))
			}
		}
	})
}
