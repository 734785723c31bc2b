//go:build linux

// Package pty opens pseudo-terminal pairs for tests that need a real tty:
// the serial transport configures and reads a pty slave exactly as it
// would a UART, and the test plays the device on the master.
package pty

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Open allocates a new pty pair through /dev/ptmx and unlocks its slave.
// master is non-blocking and registered with the runtime poller, so reads
// on it honour deadlines and Close interrupts them. Closing master hangs
// the slave up, as unplugging a USB serial adapter does: reads on the
// slave then return EOF (EIO on older kernels) and slavePath disappears.
func Open() (master *os.File, slavePath string, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", &os.PathError{Op: "open", Path: "/dev/ptmx", Err: err}
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("pty: unlock: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("pty: slave number: %w", err)
	}
	slavePath = "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	// In a container /dev/ptmx may belong to another devpts instance than
	// the one mounted on /dev/pts; then the name would be someone else's.
	if _, err := os.Stat(slavePath); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("pty: slave of /dev/ptmx not found: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), slavePath, nil
}
