//go:build !linux

package transports

import "net"

func socketDrops(*net.UDPConn) (uint32, bool) { return 0, false }
