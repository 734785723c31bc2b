// Command smoke starts an edgeway binary the way systemd would and checks
// it end to end: `edgeway version`, then `edgeway run` on a copy of the
// example config with its data in a temporary directory and a real
// $NOTIFY_SOCKET, until the "agent started" log line (and READY=1, if the
// binary sends it); then it measures idle RSS, sends SIGTERM and expects
// exit status 0 and "agent stopped". It also times start-up, so the same
// run gives the footprint numbers.
//
//	go run ./packaging/smoke -bin dist/edgeway-linux-arm64 -wrap qemu-aarch64-static
//
// Under -wrap (qemu-user), RSS and times are the emulator's, printed but
// not meaningful; measure those natively.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Result is what one run measured; -json prints it.
type Result struct {
	Binary       string  `json:"binary"`
	Version      string  `json:"version"`
	Emulated     bool    `json:"emulated"`
	StartedMs    float64 `json:"started_ms"`         // exec → "agent started" line
	ReadyMs      float64 `json:"ready_ms,omitempty"` // exec → READY=1, if sent
	ReadySent    bool    `json:"ready_sent"`         // READY=1 arrived
	StoppingSent bool    `json:"stopping_sent"`      // STOPPING=1 arrived
	RSSKiB       int     `json:"idle_rss_kib"`       // VmRSS after -idle
	AnonKiB      int     `json:"idle_rss_anon_kib"`  // of which RssAnon: heap, stacks, runtime
	FileKiB      int     `json:"idle_rss_file_kib"`  // and RssFile: the binary's mapped pages
	HWMKiB       int     `json:"peak_rss_kib"`       // VmHWM at the same time
	ReleasedKiB  int     `json:"released_kib"`       // start-up pages the agent unmapped after READY (its log)
	StopMs       float64 `json:"stop_ms"`            // SIGTERM → exit
	ExitCode     int     `json:"exit_code"`
	Log          string  `json:"log,omitempty"` // the agent's stderr, on failure
}

func main() {
	bin := flag.String("bin", "bin/edgeway", "edgeway binary to run")
	wrap := flag.String("wrap", "", "run the binary through this program (qemu-aarch64-static)")
	cfgPath := flag.String("config", "configs/edgeway.toml", "config to copy; data_dir and api.listen are redirected")
	idle := flag.Duration("idle", 2*time.Second, "how long the agent idles before RSS is read")
	limit := flag.Duration("timeout", 60*time.Second, "bound on the whole run")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	keepPaths := flag.Bool("keep-paths", false, "run the config as it is (an installed package's), without redirecting data_dir and api.listen")
	needReady := flag.Bool("ready", false, "fail unless READY=1 and STOPPING=1 arrive on $NOTIFY_SOCKET")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	r, err := run(ctx, *bin, *wrap, *cfgPath, *idle, *keepPaths)
	if err == nil && *needReady && (!r.ReadySent || !r.StoppingSent) {
		err = fmt.Errorf("sd_notify: READY=1 sent: %v, STOPPING=1 sent: %v", r.ReadySent, r.StoppingSent)
	}
	if *asJSON {
		if err == nil {
			r.Log = ""
		}
		json.NewEncoder(os.Stdout).Encode(r)
	} else {
		fmt.Printf("smoke %s: version %q, started in %.1fms, READY=1 %s, idle RSS %d KiB (anon %d, file %d; peak %d KiB; %d KiB of start-up pages released), stopped in %.1fms, exit %d%s\n",
			r.Binary, r.Version, r.StartedMs, readyText(r), r.RSSKiB, r.AnonKiB, r.FileKiB, r.HWMKiB, r.ReleasedKiB, r.StopMs, r.ExitCode, emulatedText(r))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "smoke %s: FAIL: %v\n", *bin, err)
		if r.Log != "" {
			fmt.Fprintf(os.Stderr, "--- agent log ---\n%s", r.Log)
		}
		os.Exit(1)
	}
}

func readyText(r Result) string {
	if !r.ReadySent {
		return "not sent"
	}
	return fmt.Sprintf("after %.1fms", r.ReadyMs)
}

func emulatedText(r Result) string {
	if r.Emulated {
		return " (under emulation: times and RSS are the emulator's)"
	}
	return ""
}

func command(ctx context.Context, wrap, bin string, args ...string) *exec.Cmd {
	if wrap != "" {
		return exec.CommandContext(ctx, wrap, append([]string{bin}, args...)...)
	}
	return exec.CommandContext(ctx, bin, args...)
}

var (
	reDataDir = regexp.MustCompile(`(?m)^data_dir\s*=.*$`)
	reListen  = regexp.MustCompile(`(?m)^listen\s*=.*$`)
)

func run(ctx context.Context, bin, wrap, cfgPath string, idle time.Duration, keepPaths bool) (Result, error) {
	r := Result{Binary: bin, Emulated: wrap != ""}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return r, err
	}
	out, err := command(ctx, wrap, bin, "version").Output()
	if err != nil {
		return r, fmt.Errorf("edgeway version: %w", err)
	}
	r.Version = strings.TrimSpace(string(out))
	if !strings.HasPrefix(r.Version, "edgeway ") {
		return r, fmt.Errorf("edgeway version printed %q", r.Version)
	}

	dir, err := os.MkdirTemp("", "edgeway-smoke-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	conf, err := filepath.Abs(cfgPath)
	if err != nil {
		return r, err
	}
	if !keepPaths {
		src, err := os.ReadFile(cfgPath)
		if err != nil {
			return r, err
		}
		cfg := reDataDir.ReplaceAll(src, []byte(`data_dir = "`+filepath.Join(dir, "data")+`"`))
		cfg = reListen.ReplaceAll(cfg, []byte(`listen = "127.0.0.1:0"`))
		conf = filepath.Join(dir, "edgeway.toml")
		if err := os.WriteFile(conf, cfg, 0o600); err != nil {
			return r, err
		}
	}

	// systemd's side of sd_notify.
	sockPath := filepath.Join(dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		return r, err
	}
	defer sock.Close()
	notes := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(buf[:n])
		}
	}()

	cmd := command(ctx, wrap, bin, "run", "-c", conf)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return r, err
	}
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	lines := make(chan string, 64)
	// The stderr reader owns Wait: it may only run once stderr is at EOF.
	exited := make(chan error, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logBuf.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	finish := func() {
		logMu.Lock()
		r.Log = logBuf.String()
		logMu.Unlock()
	}
	fail := func(err error) (Result, error) {
		cmd.Process.Kill()
		for range lines {
		}
		<-exited
		finish()
		return r, err
	}
	var readyAt time.Time

	note := func(s string) {
		for _, kv := range strings.Split(s, "\n") {
			switch kv {
			case "READY=1":
				if readyAt.IsZero() {
					readyAt = time.Now()
				}
			case "STOPPING=1":
				r.StoppingSent = true
			}
		}
	}

	// Until "agent started".
	for started := false; !started; {
		select {
		case l, ok := <-lines:
			if !ok {
				return fail(errors.New("agent exited before \"agent started\""))
			}
			if strings.Contains(l, "agent started") {
				started = true
				r.StartedMs = ms(time.Since(start))
			}
		case s := <-notes:
			note(s)
		case <-ctx.Done():
			return fail(fmt.Errorf("no \"agent started\" line: %w", ctx.Err()))
		}
	}

	// Idle: READY=1 may follow the log line; logs keep being collected.
	idleEnd := time.After(idle)
	for idling := true; idling; {
		select {
		case l, ok := <-lines:
			if !ok {
				return fail(errors.New("agent exited while idle"))
			}
			if m := releasedRE.FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[1])
				r.ReleasedKiB = n >> 10
			}
		case s := <-notes:
			note(s)
		case <-idleEnd:
			idling = false
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	if !readyAt.IsZero() {
		r.ReadySent, r.ReadyMs = true, ms(readyAt.Sub(start))
	}
	r.RSSKiB, r.AnonKiB, r.FileKiB, r.HWMKiB = memory(cmd.Process.Pid)

	stopAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fail(err)
	}
	var stopped bool
	for lines != nil {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				break
			}
			if strings.Contains(l, "agent stopped") {
				stopped = true
			}
		case s := <-notes:
			note(s)
		case <-ctx.Done():
			return fail(fmt.Errorf("no exit after SIGTERM: %w", ctx.Err()))
		}
	}
	werr := <-exited
	r.StopMs = ms(time.Since(stopAt))
	// Datagrams sent just before exit are already queued on the socket.
	for drained := false; !drained; {
		select {
		case s, ok := <-notes:
			if !ok {
				drained = true
				break
			}
			note(s)
		case <-time.After(50 * time.Millisecond):
			drained = true
		}
	}
	finish()
	r.ExitCode = cmd.ProcessState.ExitCode()
	switch {
	case werr != nil:
		return r, fmt.Errorf("after SIGTERM: %w", werr)
	case !stopped:
		return r, errors.New("exit 0 but no \"agent stopped\" line")
	}
	return r, nil
}

// releasedRE matches cmd/edgeway's releaseStartupPages log line.
var releasedRE = regexp.MustCompile(`released start-up pages.* bytes=(\d+)`)

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// memory reads VmRSS, RssAnon, RssFile and VmHWM (KiB) from
// /proc/<pid>/status. RssFile is the binary's pages mapped in: shared,
// clean page cache, but VmRSS counts it.
func memory(pid int) (rss, anon, file, hwm int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		switch k {
		case "VmRSS":
			rss = n
		case "RssAnon":
			anon = n
		case "RssFile":
			file = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, anon, file, hwm
}
