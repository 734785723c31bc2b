//go:build linux

package board

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The GPIO character device uAPI v2 (linux/gpio.h, kernel ≥ 5.10). The
// structs are built as byte arrays at fixed offsets rather than Go structs:
// their layout is the same on every architecture edgeway ships for (the
// u64 members are __aligned_u64), and bytes are what a test can compare.
const (
	gpioLinesMax     = 64
	gpioNumAttrsMax  = 10
	gpioConsumerSize = 32

	gpioAttrSize       = 16                                  // gpio_v2_line_attribute
	gpioConfigAttrSize = gpioAttrSize + 8                    // gpio_v2_line_config_attribute
	gpioConfigSize     = 8 + 4 + 5*4 + gpioNumAttrsMax*24    // gpio_v2_line_config: 272
	gpioRequestSize    = gpioLinesMax*4 + gpioConsumerSize + // gpio_v2_line_request: 592
		gpioConfigSize + 4 + 4 + 5*4 + 4
	gpioValuesSize = 16 // gpio_v2_line_values

	offConsumer  = gpioLinesMax * 4               // 256
	offConfig    = offConsumer + gpioConsumerSize // 288
	offNumLines  = offConfig + gpioConfigSize     // 560
	offRequestFD = offNumLines + 4 + 4 + 5*4      // 588
	offNumAttrs  = offConfig + 8                  // 296
	offAttrs     = offConfig + 8 + 4 + 5*4        // 320

	gpioLineFlagActiveLow = 1 << 1
	gpioLineFlagOutput    = 1 << 3

	gpioAttrIDOutputValues = 2

	// _IOWR(0xB4, 0x07, struct gpio_v2_line_request) and
	// _IOWR(0xB4, 0x0F, struct gpio_v2_line_values).
	gpioV2GetLineIoctl   = 3<<30 | gpioRequestSize<<16 | 0xB4<<8 | 0x07
	gpioV2SetValuesIoctl = 3<<30 | gpioValuesSize<<16 | 0xB4<<8 | 0x0F
)

var ne = binary.NativeEndian

// gpioOutputRequest is the request for one output line, starting
// inactive (the transceiver listening).
func gpioOutputRequest(offset uint32, activeLow bool, consumer string) [gpioRequestSize]byte {
	var b [gpioRequestSize]byte
	ne.PutUint32(b[0:], offset)
	copy(b[offConsumer:offConsumer+gpioConsumerSize-1], consumer)
	flags := uint64(gpioLineFlagOutput)
	if activeLow {
		flags |= gpioLineFlagActiveLow
	}
	ne.PutUint64(b[offConfig:], flags)
	// One attribute: the output value 0 for line 0 of the request, so the
	// line never glitches active between request and first send.
	ne.PutUint32(b[offNumAttrs:], 1)
	ne.PutUint32(b[offAttrs:], gpioAttrIDOutputValues)
	ne.PutUint64(b[offAttrs+8:], 0)            // values
	ne.PutUint64(b[offAttrs+gpioAttrSize:], 1) // mask: line 0
	ne.PutUint32(b[offNumLines:], 1)
	return b
}

func gpioValues(active bool) [gpioValuesSize]byte {
	var b [gpioValuesSize]byte
	if active {
		ne.PutUint64(b[0:], 1)
	}
	ne.PutUint64(b[8:], 1)
	return b
}

// gpioLine is one requested output line.
type gpioLine struct {
	fd    int
	ioctl ioctlFunc
	name  string // "gpiochip0:17", for errors
}

// requestGPIOLine asks the chip under root/dev for one output line.
func requestGPIOLine(root, spec, consumer string, activeLow bool, ioctl ioctlFunc) (*gpioLine, error) {
	chip, offset, err := parseGPIO(spec)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(root, "dev", chip)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("gpio %s: %w", spec, err)
	}
	// The line fd the kernel hands back outlives the chip fd.
	defer f.Close()
	req := gpioOutputRequest(offset, activeLow, consumer)
	if err := ioctl(f.Fd(), gpioV2GetLineIoctl, unsafe.Pointer(&req[0])); err != nil {
		return nil, fmt.Errorf("gpio %s: request line: %w", spec, err)
	}
	fd := int(int32(ne.Uint32(req[offRequestFD:])))
	if fd <= 0 {
		return nil, fmt.Errorf("gpio %s: request line: kernel returned fd %d", spec, fd)
	}
	unix.CloseOnExec(fd)
	return &gpioLine{fd: fd, ioctl: ioctl, name: spec}, nil
}

// Set drives the line active (the transceiver sending) or inactive.
func (l *gpioLine) Set(active bool) error {
	v := gpioValues(active)
	if err := l.ioctl(uintptr(l.fd), gpioV2SetValuesIoctl, unsafe.Pointer(&v[0])); err != nil {
		return fmt.Errorf("gpio %s: set: %w", l.name, err)
	}
	return nil
}

func (l *gpioLine) Close() error { return unix.Close(l.fd) }
