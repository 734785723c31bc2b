//go:build linux

package board

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgeway/edgeway/transports"
)

// struct serial_rs485 (linux/serial.h): flags, the two RTS delays in
// milliseconds, then five u32 of padding (addresses on ≥ 6.0 kernels,
// which edgeway leaves zero).
const (
	rs485Size = 32

	serRS485Enabled      = 1 << 0
	serRS485RTSOnSend    = 1 << 1
	serRS485RTSAfterSend = 1 << 2
	serRS485RXDuringTX   = 1 << 4
	serRS485TerminateBus = 1 << 5 // kernel ≥ 6.0, UARTs with a term GPIO
)

// ErrNoRS485 is returned (wrapped) when a port must use the kernel's
// RS-485 mode and its UART driver has none.
var ErrNoRS485 = errors.New("UART has no kernel RS-485 mode")

// encodeRS485 builds the serial_rs485 the port's settings ask for.
func encodeRS485(c transports.RS485Config, p Port) [rs485Size]byte {
	var b [rs485Size]byte
	var flags uint32
	if c.Enabled {
		flags |= serRS485Enabled
		// RTS is the driver-enable: high while sending unless the
		// transceiver is wired inverted.
		if c.RTSOnSend != p.RTSActiveLow {
			flags |= serRS485RTSOnSend
		} else {
			flags |= serRS485RTSAfterSend
		}
		if p.RXDuringTX {
			flags |= serRS485RXDuringTX
		}
		if p.Termination {
			flags |= serRS485TerminateBus
		}
	}
	ne.PutUint32(b[0:], flags)
	ne.PutUint32(b[4:], ceilMillis(c.DelayBeforeSend))
	ne.PutUint32(b[8:], ceilMillis(c.DelayAfterSend))
	return b
}

// ceilMillis rounds up: a 500µs settle time asked for must not become none.
func ceilMillis(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	return uint32((d + time.Millisecond - 1) / time.Millisecond)
}

// rs485 sets up RS-485 on the ports the serial listener opens. It is
// what Install puts into transports.SetRS485.
type rs485 struct {
	b *Board

	mu     sync.Mutex
	gates  map[string]*Gate // by device path; lines kept across reopens
	warned map[string]bool
}

func (r *rs485) set(fd uintptr, c transports.RS485Config) error {
	b := r.b
	dev, err := b.fdPath(fd)
	if err != nil {
		return fmt.Errorf("board: rs485: which device is fd %d: %w", fd, err)
	}
	name, p := b.portForDevice(dev)
	log := b.log.With("device", dev)
	if name != "" {
		log = log.With("port", name)
	}
	dir := p.Direction
	if dir == "" {
		dir = DirectionAuto
	}
	switch dir {
	case DirectionNone:
		return nil
	case DirectionGPIO:
		return r.gpio(fd, dev, name, p, c)
	}
	buf := encodeRS485(c, p)
	want := ne.Uint32(buf[0:])
	err = b.ioctl(fd, unix.TIOCSRS485, unsafe.Pointer(&buf[0]))
	switch {
	case err == nil:
		// The kernel writes back what it applied; a UART without a
		// terminator GPIO silently drops that flag.
		if got := ne.Uint32(buf[0:]); want&serRS485TerminateBus != 0 && got&serRS485TerminateBus == 0 {
			r.warnOnce(dev+"/term", func() {
				log.Warn("rs485: termination requested but the UART driver cannot switch it; set the board's jumper")
			})
		}
		r.dropGate(dev)
		return nil
	case !notSupported(err):
		return fmt.Errorf("board: rs485 %s: %w", dev, err)
	}
	if dir == DirectionKernel {
		return fmt.Errorf("board: rs485 %s: %w (%v)", dev, ErrNoRS485, err)
	}
	if p.DirectionGPIO != "" {
		return r.gpio(fd, dev, name, p, c)
	}
	r.warnOnce(dev, func() {
		log.Warn("rs485: the UART has no kernel RS-485 mode and no direction_gpio is set; assuming the transceiver switches direction itself")
	})
	return nil
}

// gpio prepares user-space direction control for dev. The line is
// requested once and kept across reopens of the port.
func (r *rs485) gpio(fd uintptr, dev, name string, p Port, c transports.RS485Config) error {
	if p.DirectionGPIO == "" {
		return fmt.Errorf("board: rs485 %s: direction = \"gpio\" needs direction_gpio", dev)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.gates[dev]
	if g == nil {
		consumer := "edgeway"
		if name != "" {
			consumer = "edgeway-" + name
		}
		line, err := requestGPIOLine(r.b.root, p.DirectionGPIO, consumer, p.DirectionGPIOActiveLow, r.b.ioctl)
		if err != nil {
			return fmt.Errorf("board: rs485 %s: %w", dev, err)
		}
		g = &Gate{line: line, ioctl: r.b.ioctl, sleep: time.Sleep}
		r.gates[dev] = g
	}
	g.mu.Lock()
	g.uart = fd
	g.before, g.after = c.DelayBeforeSend, c.DelayAfterSend
	g.mu.Unlock()
	return nil
}

func (r *rs485) warnOnce(key string, f func()) {
	r.mu.Lock()
	seen := r.warned[key]
	r.warned[key] = true
	r.mu.Unlock()
	if !seen {
		f()
	}
}

func (r *rs485) dropGate(dev string) {
	r.mu.Lock()
	g := r.gates[dev]
	delete(r.gates, dev)
	r.mu.Unlock()
	if g != nil {
		g.line.Close()
	}
}

// gate returns the Gate for the port open on fd, or nil.
func (r *rs485) gate(fd uintptr) *Gate {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.gates {
		g.mu.Lock()
		u := g.uart
		g.mu.Unlock()
		if u == fd {
			return g
		}
	}
	return nil
}

func (r *rs485) close() {
	r.mu.Lock()
	gs := r.gates
	r.gates = map[string]*Gate{}
	r.mu.Unlock()
	for _, g := range gs {
		g.line.Set(false)
		g.line.Close()
	}
}

// Gate switches an RS-485 transceiver between sending and listening from
// user space, through a GPIO line on its DE/RE pins, for UARTs that have
// no kernel RS-485 mode. A serial writer wraps every frame in Transmit.
type Gate struct {
	line  *gpioLine
	ioctl ioctlFunc
	sleep func(time.Duration)

	mu            sync.Mutex // held for a whole frame: one sender at a time
	uart          uintptr
	before, after time.Duration
}

// Transmit enables the driver, waits the configured delay, runs write,
// waits until the UART has shifted out the last stop bit, waits the
// after-send delay and releases the bus — whatever write returned.
func (g *Gate) Transmit(write func() (int, error)) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.line.Set(true); err != nil {
		return 0, fmt.Errorf("board: rs485: %w", err)
	}
	if g.before > 0 {
		g.sleep(g.before)
	}
	n, err := write()
	if derr := g.drain(); derr != nil && err == nil {
		err = derr
	}
	if g.after > 0 {
		g.sleep(g.after)
	}
	if serr := g.line.Set(false); serr != nil && err == nil {
		err = fmt.Errorf("board: rs485: %w", serr)
	}
	return n, err
}

// drain waits for the kernel's buffer (tcdrain) and then the UART's own
// transmitter: tcdrain returns when the driver's FIFO is still shifting,
// and releasing DE then would cut the last byte.
func (g *Gate) drain() error {
	if err := unix.IoctlSetInt(int(g.uart), unix.TCSBRK, 1); err != nil {
		return fmt.Errorf("board: rs485: drain: %w", err)
	}
	// TIOCSERGETLSR: bit TIOCSER_TEMT once the shift register is empty.
	// Bounded: a 16-byte FIFO at 1200 baud drains in ~140ms.
	for i := 0; i < 200; i++ {
		var lsr uint32
		if err := g.ioctl(g.uart, unix.TIOCSERGETLSR, unsafe.Pointer(&lsr)); err != nil {
			return nil // driver cannot tell: tcdrain is all there is
		}
		if lsr&unix.TIOCSER_TEMT != 0 {
			return nil
		}
		g.sleep(time.Millisecond)
	}
	return nil
}
