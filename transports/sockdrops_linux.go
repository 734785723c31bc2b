package transports

import (
	"net"
	"syscall"
	"unsafe"
)

// soMemInfo is SO_MEMINFO (include/uapi/asm-generic/socket.h); the kernel
// answers with an array of u32 in which index 8 (SK_MEMINFO_DROPS) counts
// datagrams dropped because the socket's receive buffer was full.
const (
	soMemInfo      = 55
	skMemInfoDrops = 8
	skMemInfoVars  = 9
)

// socketDrops returns the kernel's count of datagrams dropped on uc's
// receive queue since the socket was opened, and false where the kernel
// cannot say (before Linux 4.5 the array is shorter).
func socketDrops(uc *net.UDPConn) (uint32, bool) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info [skMemInfoVars]uint32
	size := uint32(unsafe.Sizeof(info))
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_SOCKET, soMemInfo,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	}); err != nil || errno != 0 || size < uint32(unsafe.Sizeof(info)) {
		return 0, false
	}
	return info[skMemInfoDrops], true
}
