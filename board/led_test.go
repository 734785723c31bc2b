//go:build linux

package board

import (
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"
)

// fakeLED makes /sys/class/leds/<name> under root with the attributes a
// real LED has; trigger starts on a kernel trigger as a Pi's ACT does.
func fakeLED(t *testing.T, root, name, max string) string {
	t.Helper()
	dir := filepath.Join("sys/class/leds", name)
	write(t, root, filepath.Join(dir, "max_brightness"), max+"\n")
	write(t, root, filepath.Join(dir, "brightness"), "0\n")
	write(t, root, filepath.Join(dir, "trigger"), "none [mmc0] heartbeat\n")
	return filepath.Join(root, dir)
}

func readAttr(t *testing.T, dir, attr string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, attr))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLEDPatterns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		root := t.TempDir()
		dir := fakeLED(t, root, "ACT", "255")
		l, err := OpenLED(root, "ACT")
		if err != nil {
			t.Fatal(err)
		}
		if got := readAttr(t, dir, "trigger"); got != "none" {
			t.Errorf("trigger = %q, want the kernel trigger detached", got)
		}
		brightness := func() string { synctest.Wait(); return readAttr(t, dir, "brightness") }
		// expect walks a pattern: the LED must hold each value for the
		// step's time and change right after.
		expect := func(name string, steps ...any) {
			t.Helper()
			for i := 0; i < len(steps); i += 2 {
				want, d := steps[i].(string), steps[i+1].(time.Duration)
				if got := brightness(); got != want {
					t.Fatalf("%s step %d: brightness %q, want %q", name, i/2, got, want)
				}
				time.Sleep(d - time.Millisecond)
				if got := brightness(); got != want {
					t.Fatalf("%s step %d: changed to %q before %s", name, i/2, got, d)
				}
				time.Sleep(time.Millisecond)
			}
		}

		l.Start()
		expect("starting", "255", 100*time.Millisecond, "0", 100*time.Millisecond, "255", 100*time.Millisecond)

		l.SetState(StatusConnected)
		if got := brightness(); got != "255" {
			t.Fatalf("connected: %q, want steady on", got)
		}
		time.Sleep(time.Hour)
		if got := brightness(); got != "255" {
			t.Fatalf("connected after an hour: %q", got)
		}

		l.SetState(StatusOffline)
		expect("offline", "255", time.Second, "0", time.Second, "255", time.Second)

		l.SetState(StatusQueueing)
		expect("queueing", "255", 150*time.Millisecond, "0", 150*time.Millisecond, "255", 150*time.Millisecond, "0", 1050*time.Millisecond, "255", 150*time.Millisecond)

		// The latest of several quick changes wins.
		l.SetState(StatusOffline)
		l.SetState(StatusOff)
		if got := brightness(); got != "0" {
			t.Fatalf("off: %q", got)
		}

		l.SetState(StatusConnected)
		brightness()
		l.Stop()
		if got := readAttr(t, dir, "brightness"); got != "0" {
			t.Errorf("after Stop: %q, want off", got)
		}
		l.Stop() // idempotent
		l.Start()
		l.SetState(StatusConnected)
		if got := brightness(); got != "0" {
			t.Errorf("Start after Stop lit the LED: %q", got)
		}
	})
}

func TestLEDMaxBrightnessOne(t *testing.T) {
	root := t.TempDir()
	dir := fakeLED(t, root, "status", "1")
	l, err := OpenLED(root, "status")
	if err != nil {
		t.Fatal(err)
	}
	l.SetState(StatusConnected)
	l.Start()
	l.Stop()
	if got := readAttr(t, dir, "brightness"); got != "0" {
		t.Errorf("after stop: %q", got)
	}
}

func TestLEDMissing(t *testing.T) {
	if _, err := OpenLED(t.TempDir(), "ACT"); err == nil {
		t.Error("OpenLED of a missing LED succeeded")
	}
	// A never-started LED stops without a goroutine to wait for.
	root := t.TempDir()
	fakeLED(t, root, "ACT", "1")
	l, err := OpenLED(root, "ACT")
	if err != nil {
		t.Fatal(err)
	}
	l.Stop()
}
