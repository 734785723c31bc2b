// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) without libsystemd: each call writes one datagram to the
// unix socket named by $NOTIFY_SOCKET. When the variable is unset — the
// agent run by hand, in a container, under another supervisor — every call
// is a no-op that returns nil, so callers never branch on "am I under
// systemd?".
//
// The unit this pairs with is systemd/edgeway.service (Type=notify,
// WatchdogSec=, ExecReload= sending SIGHUP). The agent calls:
//
//	Ready()        once Agent.Start returned (also after a reload finished)
//	Reloading()    when SIGHUP arrives, before re-reading the file
//	Stopping()     when a stop signal arrives, before Agent.Stop
//	Watchdog()     from the health loop, every WatchdogInterval()
//	Status(text)   whenever a one-line summary for `systemctl status` changes
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notify sends state, one or more newline-separated VAR=value
// assignments, to $NOTIFY_SOCKET. It returns nil without doing anything
// when the variable is unset. A socket name starting with '@' is in the
// abstract namespace, as systemd documents.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "vsock:") {
		// systemd ≥ 254 can hand a VM's guest a vsock address; an agent on
		// a gateway box is never in that position.
		return fmt.Errorf("sdnotify: NOTIFY_SOCKET %q: vsock is not supported", path)
	}
	if path[0] != '/' && path[0] != '@' {
		return fmt.Errorf("sdnotify: NOTIFY_SOCKET %q: want an absolute path or @abstract name", path)
	}
	// Go maps a leading '@' to the abstract namespace's leading NUL.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Enabled reports whether $NOTIFY_SOCKET is set, i.e. whether notifications
// go anywhere.
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Ready tells the service manager that start-up (or a reload) finished.
func Ready() error { return Notify("READY=1") }

// Reloading tells the service manager that a configuration reload began;
// Ready must follow when it is done. It carries MONOTONIC_USEC, which
// systemd ≥ 253 requires to match RELOADING=1 for Type=notify-reload
// units, and which older versions ignore.
func Reloading() error {
	return Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
}

// Stopping tells the service manager that a clean shutdown began, so the
// stop it sees is not taken for a crash.
func Stopping() error { return Notify("STOPPING=1") }

// Watchdog is one keep-alive ping for WatchdogSec=. Send it only from a
// loop that has just seen the agent work; a ping from a goroutine that
// cannot notice a wedged core would defeat the watchdog.
func Watchdog() error { return Notify("WATCHDOG=1") }

// Status sets the free-form line `systemctl status` shows. Newlines in
// text would start new assignments, so they become spaces.
func Status(text string) error {
	return Notify("STATUS=" + strings.ReplaceAll(text, "\n", " "))
}

// WatchdogInterval is how often to call Watchdog: half of $WATCHDOG_USEC,
// as sd_watchdog_enabled(3) recommends. It is 0 when the service manager
// expects no pings: the variable is unset or bad, or $WATCHDOG_PID names
// another process (the variables were inherited from a parent).
func WatchdogInterval() time.Duration {
	d, err := watchdogTimeout()
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

func watchdogTimeout() (time.Duration, error) {
	s := os.Getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, nil
	}
	us, err := strconv.ParseUint(s, 10, 63)
	if err != nil || us == 0 {
		return 0, fmt.Errorf("sdnotify: bad WATCHDOG_USEC %q", s)
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("sdnotify: bad WATCHDOG_PID %q", p)
		}
		if pid != os.Getpid() {
			return 0, errNotOurs
		}
	}
	if us > uint64(1<<63-1)/1000 {
		us = uint64(1<<63-1) / 1000
	}
	return time.Duration(us) * time.Microsecond, nil
}

var errNotOurs = errors.New("sdnotify: WATCHDOG_PID is another process")

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC against.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return int64(ts.Sec)*1e6 + int64(ts.Nsec)/1e3
}
