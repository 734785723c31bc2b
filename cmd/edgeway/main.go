// Command edgeway is the edge gateway agent.
//
//	edgeway run -c /etc/edgeway/edgeway.toml
//	edgeway config check FILE
//	edgeway passwd [-iterations N]   (reads the password from stdin)
//	edgeway version
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/edgeway/edgeway/agent"
	"github.com/edgeway/edgeway/agent/api"
	"github.com/edgeway/edgeway/agent/auth"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/internal/memtrim"
	"github.com/edgeway/edgeway/internal/sdnotify"
)

// Stamped by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `edgeway — multi-protocol IoT edge gateway agent

usage:
  edgeway run [-c|--config FILE]     run the agent (default /etc/edgeway/edgeway.toml)
  edgeway config check FILE          check a config file; prints every problem, exit 1 if any
  edgeway ctl VERB …                 talk to a running agent's API (edgeway ctl help)
  edgeway gateway-registry           list the gateway kinds built into this binary
  edgeway passwd [-iterations N]     read a password on stdin, print its hash for built_in users
  edgeway version                    print version, commit, Go version and platform
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "config":
		if len(args) != 3 || args[1] != "check" {
			fmt.Fprint(stderr, "usage: edgeway config check FILE\n")
			return 2
		}
		return cmdCheck(args[2], stdout, stderr)
	case "ctl":
		return cmdCtl(args[1:], stdout, stderr)
	case "gateway-registry":
		for _, k := range gateway.Kinds() {
			fmt.Fprintf(stdout, "%-10s %-22s %s\n", k.Name, strings.Join(k.Transports, ","), k.Description)
		}
		return 0
	case "passwd":
		return cmdPasswd(args[1:], stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "edgeway %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "edgeway: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func cmdCheck(path string, stdout, stderr io.Writer) int {
	if _, err := config.Load(path); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

func cmdPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	iter := fs.Int("iterations", 10000, "PBKDF2 iterations")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fmt.Fprint(stderr, "password: ")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "edgeway passwd:", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "edgeway passwd: empty password")
		return 1
	}
	h, err := auth.HashPassword(pw, *iter)
	if err != nil {
		fmt.Fprintln(stderr, "edgeway passwd:", err)
		return 1
	}
	fmt.Fprintln(stderr)
	fmt.Fprintln(stdout, h)
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path string
	fs.StringVar(&path, "config", "/etc/edgeway/edgeway.toml", "config file")
	fs.StringVar(&path, "c", "/etc/edgeway/edgeway.toml", "config file (shorthand)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "edgeway: config not valid, not starting:\n%v\n", err)
		return 1
	}
	// A soft memory limit makes the GC return memory after a burst (a
	// drained backlog) instead of keeping RSS at its peak; GOMEMLIMIT in
	// the environment wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(64 << 20)
	}
	log, level := agent.NewLogger(stderr, cfg.Agent.Log)
	a, err := agent.New(cfg, agent.Options{Logger: log, Level: level, Version: version, ConfigPath: path,
		OnHealthy: func() { _ = sdnotify.Watchdog() }, HealthInterval: sdnotify.WatchdogInterval()})
	if err != nil {
		log.Error("cannot build agent", "error", err)
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if err := a.Start(context.Background()); err != nil {
		// Partial start: keep running what did start (logged by Start).
		log.Warn("running with errors", "error", err)
	}
	srv := api.New(a, api.Options{Logger: log, Version: version, ConfigPath: path,
		Uplink: api.UplinkFunc(func() any {
			if u := a.Uplink(); u != nil {
				return u.Status()
			}
			return nil
		})})
	if err := srv.Start(context.Background()); err != nil {
		// The agent relays without its API; the box must not go down for it.
		log.Error("api not started", "error", err)
	}
	_ = sdnotify.Ready()
	releaseStartupPages(log)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			_ = sdnotify.Reloading()
			reload(a, path)
			_ = sdnotify.Ready()
			continue
		}
		_ = sdnotify.Stopping()
		log.Info("stopping", "signal", sig.String())
		timeout := a.Config().Agent.ShutdownTimeout.D()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		done := make(chan error, 1)
		go func() {
			_ = srv.Stop(ctx)
			done <- a.Stop(ctx)
		}()
		select {
		case err := <-done:
			cancel()
			if err != nil {
				log.Warn("stop did not finish cleanly", "error", err)
				return 1
			}
			return 0
		case <-sigs:
			cancel()
			log.Warn("second signal: exiting now")
			return 1
		case <-time.After(timeout + time.Second):
			cancel()
			log.Error("stop timed out", "timeout", timeout)
			return 1
		}
	}
	return 0
}

// releaseStartupPages unmaps the pages of the binary that only start-up
// touched (internal/memtrim), so idle RSS is what the agent keeps using:
// ~13 MiB settled instead of ~18 with the example config.
// EDGEWAY_KEEP_STARTUP_PAGES=1 leaves them mapped, to compare.
func releaseStartupPages(log *slog.Logger) {
	if os.Getenv("EDGEWAY_KEEP_STARTUP_PAGES") != "" {
		return
	}
	debug.FreeOSMemory() // start-up's garbage; idle, the agent allocates ~7KB/s
	r, err := memtrim.ReleaseStartup()
	if err != nil {
		log.Info("start-up pages kept", "error", err)
		return
	}
	log.Info("released start-up pages", "bytes", r.Bytes, "mappings", r.Mappings, "skipped", r.Skipped)
}

// reload re-reads the file; a bad file is reported key by key and the
// running config stays in force.
func reload(a *agent.Agent, path string) {
	l := a.Logger()
	data, err := os.ReadFile(path)
	if err == nil {
		_, err = a.ApplyTOML(context.Background(), data, "file", false)
	}
	if err == nil {
		return
	}
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			l.Error("reload rejected, running config kept", "file", e.File, "line", e.Line, "key", e.Key, "error", e.Msg)
		}
		return
	}
	l.Error("reload failed", "error", err)
}
