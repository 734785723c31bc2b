//go:build linux

package board

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlFunc is the one seam between board and the kernel's device
// ioctls: the RS-485 set-up, GPIO line requests and the watchdog. Tests
// put a recorder here to see the exact bytes that would reach the driver,
// which no pty or fake devfs can show.
type ioctlFunc func(fd uintptr, req uint, arg unsafe.Pointer) error

func sysIoctl(fd uintptr, req uint, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

// notSupported reports whether an ioctl error means "this device has no
// such feature", as opposed to a failure of one it has.
func notSupported(err error) bool {
	for _, e := range []error{unix.ENOTTY, unix.EINVAL, unix.EOPNOTSUPP, unix.ENOSYS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
