package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/internal/cloudtest"
)

// missing lists the acknowledged numbers the cloud never received on
// data/<n>, and counts duplicates.
// recorder is a cloud broker that keeps what it received.
type recorder interface {
	Each(fn func(topic string, payload []byte))
}

func missing(cl recorder, acked []int) (miss []int, dups int) {
	seen := map[int]int{}
	cl.Each(func(topic string, payload []byte) {
		if n, err := strconv.Atoi(string(payload)); err == nil && strings.HasPrefix(topic, "data/") {
			seen[n]++
		}
	})
	for _, n := range acked {
		if seen[n] == 0 {
			miss = append(miss, n)
		}
	}
	for _, k := range seen {
		if k > 1 {
			dups += k - 1
		}
	}
	return miss, dups
}

// TestKillNineLosesNothingAcknowledged: a device publishes QoS 1 through
// the agent (a subprocess) into a real MQTT broker; the agent is killed with
// SIGKILL mid-stream and restarted on the same data directory. Every
// publish the device saw acknowledged must reach the broker (duplicates
// are allowed and reported).
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	t.Run("mochi", func(t *testing.T) {
		killNine(t, func(t *testing.T, addr string) recorder {
			c := cloudtest.Start(t, addr)
			c.Record(t, "data/#")
			return c
		})
	})
	t.Run("mosquitto", func(t *testing.T) {
		killNine(t, func(t *testing.T, addr string) recorder {
			m := cloudtest.StartMosquitto(t, addr)
			m.Record(t, "data/#")
			return m
		})
	})
}

func killNine(t *testing.T, startCloud func(t *testing.T, addr string) recorder) {
	cloudAddr := freePort(t) // nothing listens there yet: the cloud is down
	dir := t.TempDir()
	gw := freePort(t)
	cfgPath := filepath.Join(dir, "edgeway.toml")
	cfg := fmt.Sprintf(`
[agent]
id = "killtest"
data_dir = %q
security_profile = "legacy"
[api]
listen = "127.0.0.1:0"
[uplink]
server = "mqtt://%s"
keepalive = "5s"
backoff = { initial = "100ms", max = "500ms" }
[uplink.store]
sync = "batch"
[gateway.linetest.listeners.tcp.one]
bind = %q
`, filepath.Join(dir, "data"), cloudAddr, gw)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*exec.Cmd, *syncBuf) {
		var logs syncBuf
		cmd := exec.Command(binary, "run", "-c", cfgPath)
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitFor(t, "gateway listener", func() bool { return accepts(gw) })
		return cmd, &logs
	}
	// publish sends QoS 1 publishes from n = from on until the connection
	// breaks or count were sent, returning the numbers acknowledged. kill,
	// if set, runs in its own goroutine once killAfter were acknowledged, so
	// the agent dies in the middle of the stream.
	publish := func(from, count, killAfter int, kill func()) []int {
		conn, err := net.Dial("tcp", gw)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		fmt.Fprintf(conn, "CONNECT dev1 u p\n")
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "CONNACK ok") {
			t.Fatalf("connect: %q", l)
		}
		var acked []int
		for n := from; n < from+count; n++ {
			if kill != nil && len(acked) == killAfter {
				go kill()
			}
			if _, err := fmt.Fprintf(conn, "PUB 1 data/%d %d\n", n, n); err != nil {
				break
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			l, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if strings.HasPrefix(l, "PUBACK ok") {
				acked = append(acked, n)
			}
		}
		return acked
	}

	// 1: cloud down, messages pile up in the store; SIGKILL mid-stream.
	cmd, _ := start()
	acked := publish(0, 5000, 300, func() { _ = cmd.Process.Kill() })
	_ = cmd.Wait()
	if len(acked) < 300 || len(acked) == 5000 {
		t.Fatalf("%d publishes acknowledged: the kill did not land mid-stream", len(acked))
	}
	t.Logf("phase 1 (cloud down): %d acknowledged before SIGKILL", len(acked))

	// 2: cloud up, agent restarted, backlog draining and live traffic;
	// SIGKILL again mid-stream.
	cl := startCloud(t, cloudAddr)
	cmd, _ = start()
	more := publish(100000, 5000, 300, func() { _ = cmd.Process.Kill() })
	_ = cmd.Wait()
	t.Logf("phase 2 (cloud up): %d acknowledged before SIGKILL", len(more))
	acked = append(acked, more...)

	// 3: restart; everything acknowledged must arrive.
	_, logs := start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing, dups := missing(cl, acked)
		if len(missing) == 0 {
			t.Logf("all %d acknowledged messages reached the broker; %d duplicates", len(acked), dups)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never reached the broker, e.g. %v\nagent log:\n%s",
				len(missing), len(acked), missing[:min(10, len(missing))], logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
