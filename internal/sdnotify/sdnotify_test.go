package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a real unixgram socket playing systemd's side and points
// $NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	// Notify has returned before recv is called, so the datagram is
	// already queued; the deadline only turns a bug into a failure.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestMessages(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	cases := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", Ready, "READY=1"},
		{"stopping", Stopping, "STOPPING=1"},
		{"watchdog", Watchdog, "WATCHDOG=1"},
		{"status", func() error { return Status("3 gateways\nuplink offline") }, "STATUS=3 gateways uplink offline"},
		{"raw", func() error { return Notify("READY=1\nSTATUS=up") }, "READY=1\nSTATUS=up"},
	}
	for _, tc := range cases {
		if err := tc.send(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := recv(t, c); got != tc.want {
			t.Errorf("%s: sent %q, want %q", tc.name, got, tc.want)
		}
	}
	if !Enabled() {
		t.Error("Enabled() = false with NOTIFY_SOCKET set")
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	before := monotonicUsec()
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec()
	got := recv(t, c)
	first, rest, ok := strings.Cut(got, "\n")
	if !ok || first != "RELOADING=1" || !strings.HasPrefix(rest, "MONOTONIC_USEC=") {
		t.Fatalf("sent %q, want RELOADING=1 then MONOTONIC_USEC=", got)
	}
	us, err := strconv.ParseInt(strings.TrimPrefix(rest, "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if us < before || us > after || before == 0 {
		t.Errorf("MONOTONIC_USEC=%d not within [%d, %d]", us, before, after)
	}
}

func TestAbstractSocket(t *testing.T) {
	name := "@edgeway-sdnotify-test-" + strconv.Itoa(os.Getpid())
	c := listen(t, name)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Errorf("sent %q", got)
	}
}

func TestUnsetIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Ready(); err != nil {
		t.Errorf("Ready without NOTIFY_SOCKET: %v", err)
	}
	if Enabled() {
		t.Error("Enabled() = true without NOTIFY_SOCKET")
	}
}

func TestBadSocket(t *testing.T) {
	for _, name := range []string{"relative/sock", "vsock:2:1234", filepath.Join(t.TempDir(), "missing")} {
		t.Setenv("NOTIFY_SOCKET", name)
		err := Ready()
		if err == nil || !strings.HasPrefix(err.Error(), "sdnotify: ") {
			t.Errorf("NOTIFY_SOCKET=%q: err = %v, want an sdnotify error", name, err)
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	cases := []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"30000000", "", 15 * time.Second},
		{"30000000", me, 15 * time.Second},
		{"30000000", "1", 0},    // inherited from another process
		{"30000000", "nope", 0}, // malformed pid
		{"0", "", 0},            // disabled
		{"-5", "", 0},           // malformed
		{"20s", "", 0},          // not microseconds
		{"1000", me, 500 * time.Microsecond},
	}
	for _, tc := range cases {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		if got := WatchdogInterval(); got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", tc.usec, tc.pid, got, tc.want)
		}
	}
}
