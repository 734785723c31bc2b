//go:build linux

package transports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

// SerialSpec is the settings of a serial listener: one UART, usually an
// RS-485 bus, read as a single byte stream. A serial listener has no bind,
// and the limits other listeners share (access_rules, max_connections,
// max_conn_rate) do not apply: there is one Conn at a time and no peer.
type SerialSpec struct {
	// Device is the tty path (/dev/ttyAMA0, /dev/serial/by-id/…). It is
	// opened anew after every loss, so a by-id symlink follows a USB
	// adapter that comes back under another ttyUSB number.
	Device   string `toml:"device"`
	Baud     int    `toml:"baud"`
	DataBits int    `toml:"data_bits"`
	Parity   string `toml:"parity"` // "none", "even" or "odd"
	StopBits int    `toml:"stop_bits"`
	// ReadTimeout is accepted for configs written for tarm/serial, where
	// it bounded a blocked read so that Close could be noticed. It has no
	// effect here: the port is read through the runtime poller, so Close
	// and read deadlines interrupt a pending Read at once.
	ReadTimeout config.Duration `toml:"read_timeout"`
	// RS485 asks for the kernel's RS-485 mode through SetRS485.
	RS485                bool            `toml:"rs485"`
	RS485DelayBeforeSend config.Duration `toml:"rs485_delay_before_send"`
	RS485DelayAfterSend  config.Duration `toml:"rs485_delay_after_send"`
	ReopenBackoff        SerialBackoff   `toml:"reopen_backoff"`
}

// SerialBackoff is `reopen_backoff`: the wait between attempts to open a
// missing device doubles from Initial up to Max. It can change live.
type SerialBackoff struct {
	Initial config.Duration `toml:"initial"`
	Max     config.Duration `toml:"max"`
}

// DefaultSerialSpec returns a serial listener's defaults (no device).
func DefaultSerialSpec() SerialSpec {
	return SerialSpec{
		Baud: 115200, DataBits: 8, Parity: "none", StopBits: 1,
		ReadTimeout: config.Duration(100 * time.Millisecond),
		ReopenBackoff: SerialBackoff{
			Initial: config.Duration(500 * time.Millisecond),
			Max:     config.Duration(30 * time.Second),
		},
	}
}

// maxRS485Delay is the kernel's clamp on the RTS delays (serial_core).
const maxRS485Delay = 100 * time.Millisecond

// serialBauds are the rates with a termios constant, the set tarm/serial
// accepts on Linux.
var serialBauds = map[int]uint32{
	50: unix.B50, 75: unix.B75, 110: unix.B110, 134: unix.B134, 150: unix.B150,
	200: unix.B200, 300: unix.B300, 600: unix.B600, 1200: unix.B1200, 1800: unix.B1800,
	2400: unix.B2400, 4800: unix.B4800, 9600: unix.B9600, 19200: unix.B19200,
	38400: unix.B38400, 57600: unix.B57600, 115200: unix.B115200, 230400: unix.B230400,
	460800: unix.B460800, 500000: unix.B500000, 576000: unix.B576000, 921600: unix.B921600,
	1000000: unix.B1000000, 1152000: unix.B1152000, 1500000: unix.B1500000,
	2000000: unix.B2000000, 2500000: unix.B2500000, 3000000: unix.B3000000,
	3500000: unix.B3500000, 4000000: unix.B4000000,
}

var serialBaudList = func() string {
	r := make([]int, 0, len(serialBauds))
	for b := range serialBauds {
		r = append(r, b)
	}
	sort.Ints(r)
	s := make([]string, len(r))
	for i, b := range r {
		s[i] = strconv.Itoa(b)
	}
	return strings.Join(s, ", ")
}()

// Validate implements config.Validator.
func (s *SerialSpec) Validate() error {
	var errs []error
	if s.Device == "" {
		errs = append(errs, config.Field("device", "must be set"))
	}
	if _, ok := serialBauds[s.Baud]; !ok {
		errs = append(errs, config.Field("baud", "unsupported rate %d (standard rates: %s)", s.Baud, serialBaudList))
	}
	if s.DataBits < 5 || s.DataBits > 8 {
		errs = append(errs, config.Field("data_bits", "must be 5, 6, 7 or 8, got %d", s.DataBits))
	}
	switch s.Parity {
	case "none", "even", "odd":
	default:
		errs = append(errs, config.Field("parity", `must be "none", "even" or "odd", got %q`, s.Parity))
	}
	if s.StopBits != 1 && s.StopBits != 2 {
		errs = append(errs, config.Field("stop_bits", "must be 1 or 2, got %d", s.StopBits))
	}
	if s.RS485DelayBeforeSend.D() > maxRS485Delay {
		errs = append(errs, config.Field("rs485_delay_before_send", "%s is above the kernel's %s limit", s.RS485DelayBeforeSend, maxRS485Delay))
	}
	if s.RS485DelayAfterSend.D() > maxRS485Delay {
		errs = append(errs, config.Field("rs485_delay_after_send", "%s is above the kernel's %s limit", s.RS485DelayAfterSend, maxRS485Delay))
	}
	return errors.Join(errs...)
}

// Validate implements config.Validator.
func (b *SerialBackoff) Validate() error {
	if b.Initial <= 0 {
		return config.Field("initial", "must be positive, got %s", b.Initial)
	}
	if b.Max < b.Initial {
		return config.Field("max", "%s is below initial (%s)", b.Max, b.Initial)
	}
	return nil
}

// RS485Config is the half-duplex set-up of a UART driving an RS-485
// transceiver: the UART raises (RTSOnSend) or lowers RTS to enable the
// transceiver's driver while it sends, waiting DelayBeforeSend after
// enabling it and DelayAfterSend after the last stop bit before releasing
// the bus. It maps one to one onto the kernel's struct serial_rs485.
type RS485Config struct {
	Enabled                         bool
	RTSOnSend                       bool
	DelayBeforeSend, DelayAfterSend time.Duration
}

// SetRS485 puts the port open on fd into RS-485 mode (TIOCSRS485). Package
// board installs it from init for boards whose UARTs support it; tests
// install a recorder. It is called only for listeners with rs485 = true —
// a port without it keeps whatever mode the device tree gave it — right
// after the port is opened and configured and before any byte moves, on
// every (re)open. It must not keep or close fd. An error fails that open,
// which is then retried with backoff like a missing device.
//
// Left nil, a listener asking for RS-485 logs one warning and runs the
// port as a plain UART.
var SetRS485 func(fd uintptr, c RS485Config) error

// ResolveDevice maps a board's named port ("rs485-0") to a device path;
// set by package board at agent start. Nil or an unknown name: the
// device is used as written.
var ResolveDevice func(name string) string

// TxGate switches an RS-485 transceiver's direction around each write
// when the UART has no kernel RS-485 mode (a GPIO line); set by package
// board. It may return nil for "nothing to switch".
var RS485Gate func(fd uintptr) Transmitter

// Transmitter wraps one write on a half-duplex line.
type Transmitter interface {
	Transmit(write func() (int, error)) (int, error)
}

func init() {
	Register(Type{
		Name:    "serial",
		NewSpec: func() any { s := DefaultSerialSpec(); return &s },
		Open: func(ctx context.Context, cfg *config.Listener, env Env) (Listener, error) {
			return openSerial(cfg, env)
		},
	})
}

// serialListener hands out the port as one Conn at a time. A single token
// in free is the right to own the device: Accept takes it, the Conn's
// Close gives it back, so a second Conn cannot exist and no goroutine is
// needed to watch the device.
type serialListener struct {
	cfg     atomic.Pointer[config.Listener]
	spec    SerialSpec // device and framing: fixed for the listener's life
	backoff atomic.Pointer[SerialBackoff]
	env     Env
	log     *slog.Logger
	addr    serialAddr

	free      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	// Held by the token's owner only.
	down        bool // an outage has been reported and not yet ended
	opened      bool // the device was opened before
	rs485Warned bool
	gate        Transmitter // of the port opened last

	reopens, failures *metrics.Counter
	connected, count  *metrics.Gauge
}

func openSerial(cfg *config.Listener, env Env) (*serialListener, error) {
	spec, ok := cfg.Spec.(*SerialSpec)
	if !ok {
		return nil, fmt.Errorf("serial: spec is %T, want *SerialSpec", cfg.Spec)
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	if err := spec.ReopenBackoff.Validate(); err != nil {
		return nil, fmt.Errorf("serial: reopen_backoff.%w", err)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	l := &serialListener{
		spec: *spec,
		env:  env,
		log:  env.Logger.With("listener", cfg.ID(), "device", spec.Device),
		addr: serialAddr(spec.Device),
		free: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	m := env.Metrics
	if m == nil {
		m = metrics.NewSet(nil)
	}
	l.reopens = m.Counter("serial.reopen")
	l.failures = m.Counter("serial.open_failures")
	l.connected = m.Gauge("serial.connected")
	l.count = m.Gauge(metrics.ConnectionsCount)
	l.cfg.Store(cfg)
	b := spec.ReopenBackoff
	l.backoff.Store(&b)
	l.free <- struct{}{}
	return l, nil
}

func (l *serialListener) Addr() net.Addr { return l.addr }

func (l *serialListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Update applies a new reopen_backoff live; anything about the port
// itself needs a restart.
func (l *serialListener) Update(cfg *config.Listener) error {
	old := l.cfg.Load()
	ns, ok := cfg.Spec.(*SerialSpec)
	if !ok || old.Transport != cfg.Transport || old.Bind != cfg.Bind || old.Enable != cfg.Enable {
		return ErrRestartRequired
	}
	if err := ns.ReopenBackoff.Validate(); err != nil {
		return fmt.Errorf("serial: reopen_backoff.%w", err)
	}
	a, b := l.spec, *ns
	a.ReopenBackoff, b.ReopenBackoff = SerialBackoff{}, SerialBackoff{}
	if a != b {
		return ErrRestartRequired
	}
	bo := ns.ReopenBackoff
	l.backoff.Store(&bo)
	l.cfg.Store(cfg)
	return nil
}

func (l *serialListener) errClosed() error {
	return &net.OpError{Op: "accept", Net: "serial", Addr: l.addr, Err: net.ErrClosed}
}

// Accept waits until the previous Conn is closed and the device can be
// opened, then returns it as the next Conn.
func (l *serialListener) Accept() (Conn, error) {
	select {
	case <-l.done:
		return nil, l.errClosed()
	case <-l.free:
	}
	f, err := l.openRetry()
	if err != nil {
		l.free <- struct{}{}
		return nil, err
	}
	l.connected.Set(1)
	l.count.Inc()
	info := &ConnInfo{ListenerID: l.cfg.Load().ID(), Transport: "serial", Accepted: time.Now()}
	return newCounted(&serialConn{f: f, addr: l.addr, gate: l.gate}, info, l.env.Metrics, l.release), nil
}

func (l *serialListener) release() {
	l.connected.Set(0)
	l.count.Dec()
	l.free <- struct{}{}
}

// openRetry opens the device, waiting with backoff while it is missing.
// A successful open right after a Conn closed costs no wait: most closes
// are the owner's, and an unplugged device fails the first attempt anyway.
func (l *serialListener) openRetry() (*os.File, error) {
	var delay time.Duration
	for {
		select {
		case <-l.done:
			return nil, l.errClosed()
		default:
		}
		f, err := l.open()
		if err == nil {
			if l.down {
				l.down = false
				l.log.Info("device back")
			}
			if l.opened {
				l.reopens.Inc()
			}
			l.opened = true
			return f, nil
		}
		l.failures.Inc()
		if !l.down {
			l.down = true
			l.log.Warn("device gone, retrying", "error", err)
		}
		delay = nextBackoff(delay, *l.backoff.Load())
		wait := delay + rand.N(delay/10+1)
		l.log.Debug("open failed", "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-l.done:
			t.Stop()
			return nil, l.errClosed()
		case <-t.C:
		}
	}
}

func nextBackoff(d time.Duration, b SerialBackoff) time.Duration {
	d *= 2
	if d < b.Initial.D() {
		d = b.Initial.D()
	}
	if d > b.Max.D() {
		d = b.Max.D()
	}
	return d
}

// open opens and configures the port. The descriptor stays non-blocking
// so that os.File reads it through the runtime poller: Close and
// deadlines then interrupt a pending Read, which a blocking tty read
// (tarm/serial's way) cannot offer.
func (l *serialListener) open() (*os.File, error) {
	dev := l.spec.Device
	if ResolveDevice != nil {
		dev = ResolveDevice(dev)
	}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dev, Err: err}
	}
	if err := l.setup(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("serial: %s: %w", dev, err)
	}
	l.gate = nil
	if l.spec.RS485 && RS485Gate != nil {
		if g := RS485Gate(uintptr(fd)); g != nil && !reflect.ValueOf(g).IsNil() {
			l.gate = g
		}
	}
	return os.NewFile(uintptr(fd), dev), nil
}

func (l *serialListener) setup(fd int) error {
	s := &l.spec
	t := s.termios()
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return fmt.Errorf("set termios: %w", err)
	}
	// The driver may have rounded an unsupported rate to another.
	got, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	if got.Cflag&unix.CBAUD != t.Cflag&unix.CBAUD {
		return fmt.Errorf("baud %d not supported by the device", s.Baud)
	}
	// Whatever arrived before the framing was set is noise.
	if err := unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if !s.RS485 {
		return nil
	}
	set := SetRS485
	if set == nil {
		if !l.rs485Warned {
			l.rs485Warned = true
			l.log.Warn("rs485 requested but no board support linked")
		}
		return nil
	}
	if err := set(uintptr(fd), RS485Config{
		Enabled: true, RTSOnSend: true,
		DelayBeforeSend: s.RS485DelayBeforeSend.D(), DelayAfterSend: s.RS485DelayAfterSend.D(),
	}); err != nil {
		return fmt.Errorf("rs485: %w", err)
	}
	return nil
}

// termios is the port's raw-mode set-up for the spec's framing.
func (s *SerialSpec) termios() unix.Termios {
	rate := serialBauds[s.Baud]
	t := unix.Termios{
		// Raw: no line editing, echo, signals, CR/LF mapping or flow
		// control; bytes with framing or parity errors are dropped (a
		// frame's CRC notices), a break is ignored.
		Iflag:  unix.IGNBRK | unix.IGNPAR,
		Cflag:  unix.CREAD | unix.CLOCAL | rate,
		Ispeed: rate,
		Ospeed: rate,
	}
	t.Cflag |= [...]uint32{5: unix.CS5, 6: unix.CS6, 7: unix.CS7, 8: unix.CS8}[s.DataBits]
	if s.StopBits == 2 {
		t.Cflag |= unix.CSTOPB
	}
	switch s.Parity {
	case "even":
		t.Cflag |= unix.PARENB
		t.Iflag |= unix.INPCK
	case "odd":
		t.Cflag |= unix.PARENB | unix.PARODD
		t.Iflag |= unix.INPCK
	}
	// VMIN 1, VTIME 0: a read waits for a byte. With VMIN 0 a non-blocking
	// read of an idle line would return 0, which os.File reports as EOF.
	t.Cc[unix.VMIN] = 1
	return t
}

// serialConn is an open port. A device that vanishes makes Read return
// io.EOF (a tty hangup, as on USB unplug) or EIO/ENXIO; the owner closes
// the Conn and the listener's next Accept opens the device again.
type serialConn struct {
	f    *os.File
	addr serialAddr
	gate Transmitter
}

func (c *serialConn) Read(p []byte) (int, error) { return c.f.Read(p) }
func (c *serialConn) Write(p []byte) (int, error) {
	if c.gate != nil {
		return c.gate.Transmit(func() (int, error) { return c.f.Write(p) })
	}
	return c.f.Write(p)
}
func (c *serialConn) Close() error                       { return c.f.Close() }
func (c *serialConn) LocalAddr() net.Addr                { return c.addr }
func (c *serialConn) RemoteAddr() net.Addr               { return c.addr }
func (c *serialConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *serialConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *serialConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// serialAddr is the device path, standing in for both ends' addresses.
type serialAddr string

func (a serialAddr) Network() string { return "serial" }
func (a serialAddr) String() string  { return string(a) }
