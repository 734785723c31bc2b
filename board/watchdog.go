//go:build linux

package board

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watchdog is an open hardware watchdog (/dev/watchdog). Opening it arms
// it: from then on the board resets unless Feed is called within the
// timeout, or Close disarms it with the magic 'V'. A crash closes the
// device without the 'V', so the countdown goes on and the board resets
// unless the restarted agent opens and feeds it in time.
type Watchdog struct {
	path    string
	timeout time.Duration

	mu sync.Mutex
	f  *os.File
}

var keepalive = []byte{0}

// OpenWatchdog opens and arms the watchdog at path and asks its driver for
// timeout (WDIOC_SETTIMEOUT). Drivers round or cap the value; Timeout
// reports the one granted. A driver that cannot set a timeout keeps its
// own, which is then read back (WDIOC_GETTIMEOUT) or, failing that,
// assumed to be the one asked for.
func OpenWatchdog(path string, timeout time.Duration) (*Watchdog, error) {
	return openWatchdog(path, timeout, sysIoctl)
}

func openWatchdog(path string, timeout time.Duration, ioctl ioctlFunc) (*Watchdog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("board: watchdog: %w", err)
	}
	w := &Watchdog{path: path, f: f, timeout: timeout}
	secs := int32(timeout / time.Second)
	if err := ioctl(f.Fd(), unix.WDIOC_SETTIMEOUT, unsafe.Pointer(&secs)); err == nil && secs > 0 {
		w.timeout = time.Duration(secs) * time.Second
	} else {
		var got int32
		if err := ioctl(f.Fd(), unix.WDIOC_GETTIMEOUT, unsafe.Pointer(&got)); err == nil && got > 0 {
			w.timeout = time.Duration(got) * time.Second
		}
	}
	// The countdown runs from the open; the first feed restarts it with
	// the timeout just set.
	if err := w.Feed(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Timeout is the driver's timeout: feed well within it.
func (w *Watchdog) Timeout() time.Duration { return w.timeout }

// Feed restarts the countdown.
func (w *Watchdog) Feed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return fmt.Errorf("board: watchdog %s: closed", w.path)
	}
	if _, err := w.f.Write(keepalive); err != nil {
		return fmt.Errorf("board: watchdog: %w", err)
	}
	return nil
}

// Close disarms the watchdog with the magic close ('V' then close) and is
// idempotent. Call it only on a clean stop.
func (w *Watchdog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	_, err := w.f.Write([]byte("V"))
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		return fmt.Errorf("board: watchdog: magic close: %w", err)
	}
	return nil
}

// watchdogNoWayOut reads the driver's nowayout attribute for the device
// at dev (/dev/watchdog is watchdog0). Kernels without the attribute say
// nothing, which counts as "can be disarmed".
func watchdogNoWayOut(root, dev string) bool {
	name := filepath.Base(dev)
	if name == "watchdog" {
		name = "watchdog0"
	}
	return strings.TrimSpace(firstLine(root, filepath.Join("sys/class/watchdog", name, "nowayout"))) == "1"
}
