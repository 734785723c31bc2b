// Command edgeway-bench loads an MQTT-SN, STOMP, CoAP, LwM2M, JT/T 808 or
// GB/T 32960 gateway with virtual
// devices and measures, on the cloud broker, what arrives: throughput,
// loss, latency, and the agent's RSS and CPU. See bench/README.md.
//
//	edgeway-bench [flags] steady|idle|outage|backlog|ceiling|all
//	edgeway-bench report DIR      # re-render charts and summary from DIR/results.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgeway/edgeway/bench/benchkit"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "edgeway-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var o benchkit.Options
	var protos, broker, out, bin string
	gws := map[string]*string{}
	var pid int
	var qos uint
	fs := flag.NewFlagSet("edgeway-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: edgeway-bench [flags] steady|idle|outage|backlog|ceiling|all\n       edgeway-bench report DIR\nprotocols: %v\n\n", benchkit.Protocols())
		fs.PrintDefaults()
	}
	fs.StringVar(&protos, "protocols", "mqttsn,stomp", "comma-separated generators (outage, backlog and ceiling use the first)")
	fs.IntVar(&o.Clients, "clients", 10, "virtual devices per protocol")
	fs.Float64Var(&o.Rate, "rate", 10, "messages/s per client; 0 = open throttle (as fast as acks return)")
	fs.UintVar(&qos, "qos", 1, "0 or 1")
	fs.IntVar(&o.Payload, "payload", 64, "payload bytes (at least 22: the timestamp and sequence header)")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "measured time per phase")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "time before measuring")
	fs.DurationVar(&o.Settle, "settle", 15*time.Second, "max wait for in-flight messages after a phase")
	fs.DurationVar(&o.Outage, "outage", 5*time.Second, "outage: how long the broker is down")
	fs.IntVar(&o.Backlog, "backlog", 10000, "backlog: messages queued while the broker is down")
	fs.IntVar(&o.IdleClients, "idle-clients", 100, "idle: connected clients per protocol")
	fs.DurationVar(&o.Step, "step", 5*time.Second, "ceiling: time per rate step")
	fs.Float64Var(&o.Factor, "factor", 2, "ceiling: rate multiplier per step")
	fs.IntVar(&o.MaxSteps, "max-steps", 8, "ceiling: steps at most")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Second, "acknowledgement timeout")
	fs.StringVar(&broker, "broker", "", "cloud broker host:port (default: start mosquitto)")
	for _, g := range []struct{ name, what string }{{"mqttsn", "MQTT-SN"}, {"stomp", "STOMP"}, {"coap", "CoAP"},
		{"lwm2m", "LwM2M (udp)"}, {"jt808", "JT/T 808 (tcp)"}, {"gbt32960", "GB/T 32960 (tcp)"}} {
		gws[g.name] = fs.String(g.name, "", g.what+" gateway host:port to load (default: start edgeway)")
	}
	fs.IntVar(&pid, "pid", 0, "with -mqttsn/-stomp/-coap/-lwm2m/-jt808/-gbt32960: the gateway's pid, to sample its RSS and CPU")
	fs.StringVar(&bin, "agent", "", "edgeway binary to start (default: go build ./cmd/edgeway)")
	fs.StringVar(&out, "out", "", "results directory (default bench/results/<scenario>-<time>)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 2 && fs.Arg(0) == "report" {
		r, err := benchkit.ReadResult(filepath.Join(fs.Arg(1), "results.json"))
		if err != nil {
			return err
		}
		return benchkit.RenderReport(r, fs.Arg(1))
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("one scenario expected")
	}
	if qos > 1 {
		return fmt.Errorf("-qos %d: 0 or 1", qos)
	}
	o.QoS = byte(qos)
	o.Protocols = strings.Split(protos, ",")
	scenarios := []string{fs.Arg(0)}
	if fs.Arg(0) == "all" {
		scenarios = []string{"steady", "idle", "outage", "backlog", "ceiling"}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "edgeway-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+f+"\n", a...) }

	e := &benchkit.Env{Broker: broker, PID: pid, Logf: logf, Addrs: map[string]string{}}
	external := false
	for name, addr := range gws {
		e.Addrs[name] = *addr
		external = external || *addr != ""
	}
	e.Addrs["coap-conn"] = e.Addrs["coap"] // the same gateway, in connection mode
	target := "edgeway (started by the tool)"
	if broker == "" {
		m, err := benchkit.NewMosquitto(filepath.Join(tmp, "mosquitto"))
		if err != nil {
			return err
		}
		if err := m.Start(); err != nil {
			return err
		}
		defer m.Stop()
		e.Mosq, e.Broker = m, m.Addr
	}
	if !external {
		if bin == "" {
			logf("building ./cmd/edgeway")
			if bin, err = benchkit.BuildAgent(tmp); err != nil {
				return err
			}
		}
		a, err := benchkit.NewAgent(bin, filepath.Join(tmp, "agent"), benchkit.AgentConfig{Broker: e.Broker,
			MQTTSN: "auto", STOMP: "auto", CoAP: "auto", LwM2M: "auto", JT808: "auto", GBT32960: "auto"})
		if err != nil {
			return err
		}
		if err := a.Start(); err != nil {
			return err
		}
		defer a.Stop()
		e.Agent = a
		e.Addrs = a.Conf.Addrs()
	} else {
		target = fmt.Sprintf("gateways at %v", e.Addrs)
	}
	sub, err := benchkit.Subscribe(e.Broker, fmt.Sprintf("edgeway-bench-%d", os.Getpid()), "bench/#")
	if err != nil {
		return err
	}
	defer sub.Close()
	e.Sub = sub

	stamp := time.Now().UTC().Format("20060102-150405")
	for _, sc := range scenarios {
		r, err := benchkit.Run(ctx, sc, e, o)
		if r != nil && len(r.Phases) > 0 {
			r.Target = target
			dir := out
			if dir == "" {
				dir = filepath.Join("bench", "results", sc+"-"+stamp)
			} else if len(scenarios) > 1 {
				dir = filepath.Join(out, sc)
			}
			if werr := benchkit.WriteReport(r, dir); werr != nil {
				return werr
			}
			fmt.Print(benchkit.Markdown(r))
			logf("wrote %s", dir)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sc, err)
		}
		if e.Agent != nil && e.Agent.Exited() {
			return fmt.Errorf("%s: the agent exited:\n%s", sc, e.Agent.Logs())
		}
	}
	return nil
}
