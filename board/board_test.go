//go:build linux

package board

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeway/edgeway/transports"
)

// fakePi is a Raspberry Pi 4's sysfs, procfs and devfs as far as board
// reads them; the watchdog is a plain file, which records every byte
// written and refuses ioctls as a driver without WDIOC_SETTIMEOUT would.
func fakePi(t *testing.T) (root, led, wd string) {
	t.Helper()
	root = t.TempDir()
	write(t, root, "proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
	led = fakeLED(t, root, "ACT", "1")
	write(t, root, "dev/watchdog", "")
	write(t, root, "sys/class/watchdog/watchdog0/nowayout", "0\n")
	return root, led, filepath.Join(root, "dev/watchdog")
}

func TestNewResolvesProfileAndPorts(t *testing.T) {
	root, _, _ := fakePi(t)
	cfg := DefaultConfig()
	cfg.Ports = map[string]Port{
		"rs485-0": {Termination: true},
		"meter":   {Device: "/dev/serial/by-id/usb-FTDI-if00"},
		"usb0":    {Device: "/dev/ttyACM0"},
	}
	b, err := New(&cfg, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if b.Profile().Name != "rpi4" {
		t.Errorf("profile %s", b.Profile().Name)
	}
	for name, want := range map[string]string{
		"rs485-0":      "/dev/ttyAMA0",
		"meter":        "/dev/serial/by-id/usb-FTDI-if00",
		"usb0":         "/dev/ttyACM0",
		"serial0":      "/dev/serial0",
		"/dev/ttyUSB3": "/dev/ttyUSB3",
		"nonesuch":     "nonesuch",
	} {
		if got := b.ResolveDevice(name); got != want {
			t.Errorf("ResolveDevice(%q) = %q, want %q", name, got, want)
		}
	}
	if p := b.Ports()["rs485-0"]; !p.Termination || p.Device != "/dev/ttyAMA0" {
		t.Errorf("rs485-0 = %+v: override lost the profile's device or its own settings", p)
	}
	if b.statusLED != "ACT" || b.watchdog != "/dev/watchdog" {
		t.Errorf("led %q watchdog %q", b.statusLED, b.watchdog)
	}

	cfg.Ports = map[string]Port{"rs485-9": {Termination: true}}
	if _, err := New(&cfg, Options{Root: root}); err == nil || !strings.Contains(err.Error(), `ports.rs485-9.device: must be set: profile "rpi4" has no port "rs485-9"`) {
		t.Errorf("port unknown to the detected profile: err = %v", err)
	}
	bad := DefaultConfig()
	bad.Profile = "pi"
	if _, err := New(&bad, Options{Root: root}); err == nil || !strings.HasPrefix(err.Error(), "board: profile: unknown profile") {
		t.Errorf("bad profile: err = %v", err)
	}
}

func TestWatchdogChoice(t *testing.T) {
	cases := []struct {
		name     string
		setup    func(t *testing.T, root string)
		watchdog string
		want     string
	}{
		{"auto on a pi", nil, Auto, "/dev/watchdog"},
		{"none", nil, none, ""},
		{"explicit", nil, "/dev/watchdog1", "/dev/watchdog1"},
		{"auto refuses nowayout", func(t *testing.T, root string) {
			write(t, root, "sys/class/watchdog/watchdog0/nowayout", "1\n")
		}, Auto, ""},
		{"explicit accepts nowayout", func(t *testing.T, root string) {
			write(t, root, "sys/class/watchdog/watchdog0/nowayout", "1\n")
		}, "/dev/watchdog", "/dev/watchdog"},
		{"auto without device", func(t *testing.T, root string) {
			os.Remove(filepath.Join(root, "dev/watchdog"))
		}, Auto, ""},
		{"auto on a pc", func(t *testing.T, root string) {
			os.Remove(filepath.Join(root, "proc/device-tree/model"))
			write(t, root, "sys/class/dmi/id/product_name", "PC\n")
		}, Auto, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root, _, _ := fakePi(t)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			cfg := DefaultConfig()
			cfg.Watchdog = tc.watchdog
			b, err := New(&cfg, Options{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			if b.watchdog != tc.want {
				t.Errorf("watchdog %q, want %q", b.watchdog, tc.want)
			}
		})
	}
}

func TestOpenWatchdogTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	write(t, filepath.Dir(path), "watchdog", "")
	rec := &recorder{}
	// The Pi's driver caps the timeout at 15s and says so.
	rec.reply = func(req uint, arg []byte) error {
		if req == unix.WDIOC_SETTIMEOUT {
			copy(arg, le32(15))
		}
		return nil
	}
	w, err := openWatchdog(path, 30*time.Second, rec.ioctl)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sets := rec.find(unix.WDIOC_SETTIMEOUT)
	if len(sets) != 1 || string(sets[0].arg) != string(le32(30)) {
		t.Errorf("WDIOC_SETTIMEOUT args %+v, want 30 as an int", sets)
	}
	if w.Timeout() != 15*time.Second {
		t.Errorf("Timeout = %s, want the granted 15s", w.Timeout())
	}

	// A driver without SETTIMEOUT: its own timeout is read back.
	rec = &recorder{reply: func(req uint, arg []byte) error {
		if req == unix.WDIOC_SETTIMEOUT {
			return unix.ENOTTY
		}
		copy(arg, le32(60))
		return nil
	}}
	w2, err := openWatchdog(path, 30*time.Second, rec.ioctl)
	if err != nil {
		t.Fatal(err)
	}
	if w2.Timeout() != time.Minute {
		t.Errorf("Timeout = %s, want the driver's 60s", w2.Timeout())
	}
	w2.Close()
	if _, err := openWatchdog(filepath.Join(t.TempDir(), "none"), time.Minute, rec.ioctl); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing device: %v", err)
	}
}

// The health loop feeds the hardware watchdog and systemd only after a
// healthy check; a failing or hanging check stops both; a clean stop
// ends with the magic 'V' and the LED off.
func TestHealthLoopFeedsOnlyWhenHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		root, led, wdPath := fakePi(t)
		var healthy atomic.Bool
		var hang atomic.Bool
		healthy.Store(true)
		var pings atomic.Int32
		lb := &logBuf{}
		b, err := New(nil, Options{
			Root:   root,
			Logger: slog.New(slog.NewTextHandler(lb, nil)),
			Health: func(ctx context.Context) error {
				if hang.Load() {
					<-ctx.Done()
					return ctx.Err()
				}
				if !healthy.Load() {
					return errors.New("broker does not answer")
				}
				return nil
			},
			OnHealthy:      func() { pings.Add(1) },
			HealthInterval: 15 * time.Second, // systemd's WatchdogSec=30s, halved
		})
		if err != nil {
			t.Fatal(err)
		}
		feeds := func() string {
			synctest.Wait()
			b, err := os.ReadFile(wdPath)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		if err := b.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Opening arms and feeds; the first check feeds again. The fake
		// driver refuses WDIOC_SETTIMEOUT, so the asked-for 15s stands
		// and the loop runs every 5s, inside systemd's 15s.
		if got := feeds(); got != "\x00\x00" || pings.Load() != 1 {
			t.Fatalf("after start: watchdog %q, %d pings", got, pings.Load())
		}
		if got := b.interval(); got != 5*time.Second {
			t.Errorf("interval %s, want 5s", got)
		}
		if got := readAttr(t, led, "brightness"); got != "1" {
			t.Errorf("LED %q after start, want the starting blink's first on", got)
		}
		time.Sleep(5 * time.Second)
		if got := feeds(); got != "\x00\x00\x00" || pings.Load() != 2 {
			t.Fatalf("after 5s: watchdog %q, %d pings", got, pings.Load())
		}

		healthy.Store(false)
		time.Sleep(15 * time.Second)
		if got := feeds(); got != "\x00\x00\x00" || pings.Load() != 2 {
			t.Fatalf("unhealthy for 15s: watchdog %q, %d pings: must not be fed", got, pings.Load())
		}
		if n := strings.Count(lb.String(), "health check failed"); n != 1 {
			t.Errorf("%d failure logs, want 1 per outage", n)
		}

		healthy.Store(true)
		hang.Store(true)
		time.Sleep(20 * time.Second)
		if got := feeds(); got != "\x00\x00\x00" {
			t.Fatalf("hanging check fed the watchdog: %q", got)
		}

		hang.Store(false)
		time.Sleep(5 * time.Second)
		if got := feeds(); got != "\x00\x00\x00\x00" || pings.Load() != 3 {
			t.Fatalf("healthy again: watchdog %q, %d pings", got, pings.Load())
		}

		b.SetStatus(StatusConnected)
		synctest.Wait()
		if got := readAttr(t, led, "brightness"); got != "1" {
			t.Errorf("connected: LED %q", got)
		}
		if err := b.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := feeds(); got != "\x00\x00\x00\x00V" {
			t.Errorf("after stop: watchdog %q, want the magic close last", got)
		}
		if got := readAttr(t, led, "brightness"); got != "0" {
			t.Errorf("after stop: LED %q", got)
		}
		if err := b.Stop(t.Context()); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		b.SetStatus(StatusOffline) // ignored after Stop
	})
}

func TestStartWithoutHardware(t *testing.T) {
	root := t.TempDir()
	write(t, root, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
	lb := &logBuf{}
	cfg := DefaultConfig()
	cfg.StatusLED = "ACT" // named, but this board has no such LED
	b, err := New(&cfg, Options{Root: root, Logger: slog.New(slog.NewTextHandler(lb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := b.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lb.String(), "status LED not used") || !strings.Contains(lb.String(), "profile=rpi5") {
		t.Errorf("log:\n%s", lb)
	}
}

func TestStopWithoutStart(t *testing.T) {
	b, err := New(nil, Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b.Install()
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if transports.SetRS485 != nil {
		t.Error("Stop did not undo Install")
	}
}

func TestInstallAndPackageResolveDevice(t *testing.T) {
	if transports.SetRS485 != nil {
		t.Fatal("transports.SetRS485 set before any Install")
	}
	host := Detect("/").Ports["rs485-0"]
	if got := ResolveDevice("rs485-0"); got != host {
		t.Errorf("before Install: ResolveDevice(rs485-0) = %q, want this host's profile's %q", got, host)
	}
	root, _, _ := fakePi(t)
	cfg := DefaultConfig()
	cfg.Ports = map[string]Port{"meter": {Device: "/dev/ttyUSB7"}}
	b, err := New(&cfg, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	b.Install()
	b.Install() // once is enough
	if transports.SetRS485 == nil {
		t.Fatal("Install did not set transports.SetRS485")
	}
	for name, want := range map[string]string{"rs485-0": "/dev/ttyAMA0", "meter": "/dev/ttyUSB7", "/dev/ttyS4": "/dev/ttyS4", "rs485-9": "rs485-9"} {
		if got := ResolveDevice(name); got != want {
			t.Errorf("ResolveDevice(%q) = %q, want %q", name, got, want)
		}
	}
	if err := b.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if transports.SetRS485 != nil {
		t.Error("Stop left transports.SetRS485 set")
	}
	if got := ResolveDevice("meter"); got != "meter" {
		t.Errorf("after Stop: ResolveDevice(meter) = %q", got)
	}
}
