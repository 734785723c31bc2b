package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// API latency with many clients connected. The clients are real TCP
// connections of the test kind, held by a child process (this test binary
// running TestBenchClientsHelper) so that neither process needs more than
// one file descriptor per client. N defaults to 10 000
// (EDGEWAY_BENCH_CLIENTS overrides it).
//
//	go test -run '^$' -bench API10k -benchtime 200x ./agent/api/
func BenchmarkAPI10kClients(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("EDGEWAY_BENCH_CLIENTS")); err == nil && v > 0 {
		n = v
	}
	src := strings.Replace(baseConfig, "[gateway.apitest.listeners.tcp.a]\nbind = \"127.0.0.1:0\"\n",
		"[gateway.apitest.listeners.tcp.a]\nbind = \"127.0.0.1:0\"\nmax_connections = \"infinity\"\nmax_conn_rate = \"infinity\"\n", 1)
	e := startEnv(b, src, Options{})
	g, _ := e.a.Gateways().Get("apitest")
	addr := e.listenerAddr(b, "apitest", "apitest:tcp:a")

	start := time.Now()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchClientsHelper$")
	cmd.Env = append(os.Environ(), "EDGEWAY_BENCH_ADDR="+addr, "EDGEWAY_BENCH_N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the helper exits, closing its connections
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "ready ") {
			ready = true
			break
		}
	}
	if !ready || g.ClientCount() != n {
		b.Fatalf("helper: ready=%v, %d clients connected, want %d", ready, g.ClientCount(), n)
	}
	b.Logf("%d clients connected over TCP in %v", n, time.Since(start).Round(time.Millisecond))

	for _, p := range []string{
		"/gateways/apitest/clients?limit=100",
		"/gateways/apitest/clients?limit=100&page=50",
		"/gateways/apitest/clients?like_clientid=dev-0999",
		"/gateways",
		"/gateways/apitest",
		"/status",
		"/metrics",
	} {
		b.Run("GET "+p, func(b *testing.B) {
			var size int
			for b.Loop() {
				code, body, _ := e.do(b, "GET", p, nil)
				if code != http.StatusOK {
					b.Fatalf("%d %s", code, body)
				}
				size = len(body)
			}
			b.ReportMetric(float64(size), "bytes/resp")
		})
	}
}

// TestBenchClientsHelper is the benchmark's client side; it does nothing
// unless the benchmark started it.
func TestBenchClientsHelper(t *testing.T) {
	addr := os.Getenv("EDGEWAY_BENCH_ADDR")
	if addr == "" {
		t.Skip("helper process of BenchmarkAPI10kClients")
	}
	n, _ := strconv.Atoi(os.Getenv("EDGEWAY_BENCH_N"))
	conns := make([]net.Conn, n)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := net.Dial("tcp", addr)
				if err == nil {
					_, err = fmt.Fprintf(c, "CONNECT dev-%05d user%d x\n", i, i%10)
				}
				if err == nil {
					var l string
					l, err = bufio.NewReader(c).ReadString('\n')
					if err == nil && !strings.HasPrefix(l, "CONNACK ok") {
						err = fmt.Errorf("client %d: %q", i, l)
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	fmt.Printf("ready %d\n", n)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}
