//go:build linux

package transports

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/internal/pty"
)

const serialKind = "serialtest"

// serialParse parses TOML with a throw-away kind that accepts serial
// listeners, registered for the duration of the parse.
func serialParse(t *testing.T, data string) (*config.Config, error) {
	t.Helper()
	config.RegisterKind(config.KindSchema{Name: serialKind, ListenerTypes: []string{"serial"}})
	defer config.UnregisterKind(serialKind)
	return config.Parse([]byte(data), "t.toml")
}

// serialConfig is the listener serialtest:serial:bus on device with the
// extra spec lines given.
func serialConfig(t *testing.T, device string, lines ...string) *config.Listener {
	t.Helper()
	c, err := serialParse(t, "[gateway.serialtest.listeners.serial.bus]\ndevice = \""+device+"\"\n"+strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return c.Gateways[serialKind].Listeners[0]
}

// serialLogs records what a listener logs.
type serialLogs struct {
	mu   sync.Mutex
	recs []string // "LEVEL message"
}

func (h *serialLogs) Enabled(context.Context, slog.Level) bool { return true }
func (h *serialLogs) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *serialLogs) WithGroup(string) slog.Handler            { return h }
func (h *serialLogs) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Level.String()+" "+r.Message)
	h.mu.Unlock()
	return nil
}

func (h *serialLogs) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.recs, "; ")
}

func (h *serialLogs) count(rec string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r == rec {
			n++
		}
	}
	return n
}

type serialRig struct {
	ln   Listener
	m    *metrics.Set
	logs *serialLogs
}

func serialOpen(t *testing.T, cfg *config.Listener) *serialRig {
	t.Helper()
	r := &serialRig{m: metrics.NewSet(nil), logs: &serialLogs{}}
	ln, err := Open(context.Background(), cfg, Env{Logger: slog.New(r.logs), Metrics: r.m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r.ln = ln
	return r
}

func (r *serialRig) counter(name string) uint64 { return r.m.Counter(name).Load() }
func (r *serialRig) gauge(name string) int64    { return r.m.Gauge(name).Load() }

// serialPty returns a fresh pty pair; the master is closed at cleanup.
func serialPty(t *testing.T) (*os.File, string) {
	t.Helper()
	m, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, slave
}

// serialLink points link at target, replacing it atomically.
func serialLink(t *testing.T, link, target string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

type serialAccepted struct {
	c   Conn
	err error
}

func serialAcceptAsync(ln Listener) <-chan serialAccepted {
	ch := make(chan serialAccepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- serialAccepted{c, err}
	}()
	return ch
}

func serialWait[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func serialEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// serialExchange sends data both ways between the device's master and c.
func serialExchange(t *testing.T, master *os.File, c Conn, toConn, toMaster []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	c.SetDeadline(deadline)
	master.SetDeadline(deadline)
	if _, err := master.Write(toConn); err != nil {
		t.Fatalf("master write: %v", err)
	}
	got := make([]byte, len(toConn))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, toConn) {
		t.Fatalf("conn read %x, %v; want %x", got, err, toConn)
	}
	if _, err := c.Write(toMaster); err != nil {
		t.Fatalf("conn write: %v", err)
	}
	got = make([]byte, len(toMaster))
	if _, err := io.ReadFull(master, got); err != nil || !bytes.Equal(got, toMaster) {
		t.Fatalf("master read %x, %v; want %x", got, err, toMaster)
	}
	c.SetDeadline(time.Time{})
}

// serialTermios reads the termios the listener left on the slave.
func serialTermios(t *testing.T, slave string) *unix.Termios {
	t.Helper()
	fd, err := unix.Open(slave, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio
}

func TestSerialRoundTrip(t *testing.T) {
	master, slave := serialPty(t)
	dev := filepath.Join(t.TempDir(), "rs485-0")
	serialLink(t, dev, slave)
	r := serialOpen(t, serialConfig(t, dev, "baud = 9600", `parity = "even"`, "stop_bits = 2"))
	if a := r.ln.Addr(); a.Network() != "serial" || a.String() != dev {
		t.Errorf("Addr %s %s", a.Network(), a)
	}

	c, err := r.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info := c.Info()
	if info.Transport != "serial" || info.ListenerID != "serialtest:serial:bus" || info.Peer.IsValid() || info.Accepted.IsZero() {
		t.Errorf("info %+v", info)
	}

	// Every byte value crosses untouched: no CR/LF mapping, echo, signal
	// characters or XON/XOFF.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	reply := []byte("\x00\r\n\x03\x11\x13\x7f\xff")
	serialExchange(t, master, c, all, reply)

	if info.BytesIn.Load() != 256 || info.BytesOut.Load() != uint64(len(reply)) {
		t.Errorf("conn bytes in %d out %d", info.BytesIn.Load(), info.BytesOut.Load())
	}
	if r.counter(metrics.BytesReceived) != 256 || r.counter(metrics.BytesSent) != uint64(len(reply)) {
		t.Errorf("listener bytes %v", r.m.Snapshot())
	}
	if r.gauge("serial.connected") != 1 || r.gauge(metrics.ConnectionsCount) != 1 {
		t.Errorf("gauges %v", r.m.Snapshot())
	}

	// An idle line is a timeout, not EOF.
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("idle read: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})

	// Close interrupts the owner's pending Read.
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	if err := serialWait(t, "read to end", readErr); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if r.gauge("serial.connected") != 0 || r.gauge(metrics.ConnectionsCount) != 0 {
		t.Errorf("gauges after close %v", r.m.Snapshot())
	}
}

func TestSerialFraming(t *testing.T) {
	cases := []struct {
		lines                     []string
		rate, size                uint32
		parity, odd, stop2, inpck bool
	}{
		{nil, unix.B115200, unix.CS8, false, false, false, false},
		{[]string{"baud = 9600", "data_bits = 7", `parity = "even"`, "stop_bits = 2"}, unix.B9600, unix.CS7, true, false, true, true},
		{[]string{"baud = 19200", "data_bits = 5", `parity = "odd"`}, unix.B19200, unix.CS5, true, true, false, true},
		{[]string{"baud = 4000000", "data_bits = 6"}, unix.B4000000, unix.CS6, false, false, false, false},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.lines, ","), func(t *testing.T) {
			_, slave := serialPty(t)
			cfg := serialConfig(t, slave, tc.lines...)

			// What the listener asks of the driver.
			want := cfg.Spec.(*SerialSpec).termios()
			if want.Cflag&unix.CBAUD != tc.rate || want.Cflag&unix.CSIZE != tc.size ||
				(want.Cflag&unix.PARENB != 0) != tc.parity || (want.Cflag&unix.PARODD != 0) != tc.odd ||
				(want.Cflag&unix.CSTOPB != 0) != tc.stop2 || (want.Iflag&unix.INPCK != 0) != tc.inpck ||
				want.Cflag&(unix.CREAD|unix.CLOCAL) != unix.CREAD|unix.CLOCAL || want.Cflag&unix.CRTSCTS != 0 {
				t.Errorf("requested cflag %#o iflag %#o", want.Cflag, want.Iflag)
			}

			// What the pty kept: everything but CSIZE and PARENB, which
			// the pty driver forces to CS8 and off.
			r := serialOpen(t, cfg)
			c, err := r.ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := serialTermios(t, slave)
			const ptyForced = unix.CSIZE | unix.PARENB
			if got.Cflag&^ptyForced != want.Cflag&^ptyForced || got.Iflag != want.Iflag {
				t.Errorf("tty cflag %#o iflag %#o, want cflag %#o iflag %#o (ignoring %#o)", got.Cflag, got.Iflag, want.Cflag, want.Iflag, ptyForced)
			}
			if got.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG|unix.IEXTEN) != 0 || got.Oflag&unix.OPOST != 0 ||
				got.Iflag&(unix.IXON|unix.ICRNL|unix.ISTRIP) != 0 || got.Cc[unix.VMIN] != 1 || got.Cc[unix.VTIME] != 0 {
				t.Errorf("not raw: lflag %#o oflag %#o iflag %#o cc %v", got.Lflag, got.Oflag, got.Iflag, got.Cc)
			}
		})
	}
}

func TestSerialDeviceGoneAndBack(t *testing.T) {
	m1, s1 := serialPty(t)
	dev := filepath.Join(t.TempDir(), "rs485-0")
	serialLink(t, dev, s1)
	r := serialOpen(t, serialConfig(t, dev, "[gateway.serialtest.listeners.serial.bus.reopen_backoff]",
		`initial = "20ms"`, `max = "40ms"`))

	c1, err := r.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	serialExchange(t, m1, c1, []byte("one"), []byte("1"))

	// Unplug: the owner's Read fails.
	readErr := make(chan error, 1)
	go func() {
		_, err := c1.Read(make([]byte, 16))
		readErr <- err
	}()
	m1.Close()
	err = serialWait(t, "read error on unplug", readErr)
	if err != io.EOF && !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("read after unplug: %v, want EOF, EIO or ENXIO", err)
	}

	// The device comes back under the same name before the owner has
	// closed the dead Conn: no second Conn while the first is open.
	m2, s2 := serialPty(t)
	serialLink(t, dev, s2)
	next := serialAcceptAsync(r.ln)
	time.Sleep(60 * time.Millisecond)
	select {
	case a := <-next:
		t.Fatalf("Accept returned %v, %v while the previous Conn was open", a.c, a.err)
	default:
	}
	if r.gauge("serial.connected") != 1 {
		t.Errorf("connected %d with the dead Conn still open", r.gauge("serial.connected"))
	}
	c1.Close()
	a := serialWait(t, "accept after close", next)
	if a.err != nil {
		t.Fatal(a.err)
	}
	c2 := a.c
	serialExchange(t, m2, c2, []byte("two"), []byte("2"))
	if got := r.counter("serial.reopen"); got != 1 {
		t.Errorf("serial.reopen %d, want 1", got)
	}
	if got := r.counter("serial.open_failures"); got != 0 {
		t.Errorf("serial.open_failures %d, want 0", got)
	}
	if r.gauge("serial.connected") != 1 {
		t.Errorf("connected %d", r.gauge("serial.connected"))
	}

	// Unplug again, and this time the path is gone for a while.
	m2.Close()
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after second unplug succeeded")
	}
	if err := os.Remove(dev); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if r.gauge("serial.connected") != 0 {
		t.Errorf("connected %d after close", r.gauge("serial.connected"))
	}
	next = serialAcceptAsync(r.ln)
	serialEventually(t, "two failed opens", func() bool { return r.counter("serial.open_failures") >= 2 })
	if r.logs.count("WARN device gone, retrying") != 1 {
		t.Errorf("logs: %s", r.logs)
	}
	m3, s3 := serialPty(t)
	serialLink(t, dev, s3)
	a = serialWait(t, "accept after the device came back", next)
	if a.err != nil {
		t.Fatal(a.err)
	}
	defer a.c.Close()
	serialExchange(t, m3, a.c, []byte("three"), []byte("3"))
	if got := r.counter("serial.reopen"); got != 2 {
		t.Errorf("serial.reopen %d, want 2", got)
	}
	if got := r.counter("serial.open_failures"); got < 2 {
		t.Errorf("serial.open_failures %d, want ≥ 2", got)
	}
	if r.gauge("serial.connected") != 1 {
		t.Errorf("connected %d", r.gauge("serial.connected"))
	}
	if r.logs.count("WARN device gone, retrying") != 1 || r.logs.count("INFO device back") != 1 {
		t.Errorf("logs: %s", r.logs)
	}
	if got := r.counter(metrics.BytesReceived); got != 11 {
		t.Errorf("bytes.received %d, want 11 over three Conns", got)
	}
}

func TestSerialCloseUnblocksAccept(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()

	t.Run("while retrying", func(t *testing.T) {
		r := serialOpen(t, serialConfig(t, filepath.Join(dir, "missing"), "[gateway.serialtest.listeners.serial.bus.reopen_backoff]", `initial = "10ms"`))
		next := serialAcceptAsync(r.ln)
		serialEventually(t, "a failed open", func() bool { return r.counter("serial.open_failures") >= 1 })
		r.ln.Close()
		if a := serialWait(t, "Accept to return", next); !errors.Is(a.err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, %v", a.c, a.err)
		}
		if _, err := r.ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Accept after Close: %v", err)
		}
		if err := r.ln.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})

	t.Run("while a Conn is open", func(t *testing.T) {
		master, slave := serialPty(t)
		r := serialOpen(t, serialConfig(t, slave))
		c, err := r.ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		next := serialAcceptAsync(r.ln)
		r.ln.Close()
		if a := serialWait(t, "Accept to return", next); !errors.Is(a.err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, %v", a.c, a.err)
		}
		// The accepted Conn outlives its listener.
		serialExchange(t, master, c, []byte("still"), []byte("here"))
		c.Close()
	})

	for i := 0; i < 200 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestSerialRS485(t *testing.T) {
	type call struct {
		c       RS485Config
		termios error
		vmin    uint8
	}
	var mu sync.Mutex
	var calls []call
	fail := false
	SetRS485 = func(fd uintptr, c RS485Config) error {
		tio, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		mu.Lock()
		defer mu.Unlock()
		cl := call{c: c, termios: err}
		if err == nil {
			cl.vmin = tio.Cc[unix.VMIN]
		}
		calls = append(calls, cl)
		if fail {
			return errors.New("TIOCSRS485: inappropriate ioctl for device")
		}
		return nil
	}
	t.Cleanup(func() { SetRS485 = nil })

	_, slave := serialPty(t)
	r := serialOpen(t, serialConfig(t, slave, "rs485 = true", `rs485_delay_before_send = "1ms"`, `rs485_delay_after_send = "2500us"`,
		"[gateway.serialtest.listeners.serial.bus.reopen_backoff]", `initial = "10ms"`))
	c, err := r.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	want := RS485Config{Enabled: true, RTSOnSend: true, DelayBeforeSend: time.Millisecond, DelayAfterSend: 2500 * time.Microsecond}
	if len(calls) != 1 || calls[0].c != want || calls[0].termios != nil || calls[0].vmin != 1 {
		t.Fatalf("calls %+v, want one with %+v on the configured tty", calls, want)
	}
	// A board that cannot do RS-485 fails the open, which is retried.
	fail = true
	mu.Unlock()
	c.Close()
	next := serialAcceptAsync(r.ln)
	serialEventually(t, "failed opens", func() bool { return r.counter("serial.open_failures") >= 2 })
	r.ln.Close()
	if a := serialWait(t, "Accept to return", next); !errors.Is(a.err, net.ErrClosed) {
		t.Fatalf("Accept: %v, %v", a.c, a.err)
	}

	// Without board support the port runs as a plain UART, with one warning.
	SetRS485 = nil
	_, slave2 := serialPty(t)
	r2 := serialOpen(t, serialConfig(t, slave2, "rs485 = true"))
	for range 2 {
		c, err := r2.ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if n := r2.logs.count("WARN rs485 requested but no board support linked"); n != 1 {
		t.Errorf("warned %d times: %s", n, r2.logs)
	}

	// rs485 = false leaves the port's mode alone.
	called := false
	SetRS485 = func(uintptr, RS485Config) error { called = true; return nil }
	_, slave3 := serialPty(t)
	r3 := serialOpen(t, serialConfig(t, slave3))
	c, err = r3.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if called {
		t.Error("SetRS485 called with rs485 = false")
	}
}

func TestSerialUpdate(t *testing.T) {
	_, slave := serialPty(t)
	base := []string{"baud = 9600"}
	r := serialOpen(t, serialConfig(t, slave, base...))
	cases := []struct {
		name  string
		lines []string
		want  error
	}{
		{"identical", base, nil},
		{"backoff", append(base, "[gateway.serialtest.listeners.serial.bus.reopen_backoff]", `initial = "1s"`, `max = "1m"`), nil},
		{"baud", []string{"baud = 19200"}, ErrRestartRequired},
		{"parity", append(base, `parity = "odd"`), ErrRestartRequired},
		{"rs485", append(base, "rs485 = true"), ErrRestartRequired},
	}
	for _, c := range cases {
		if err := r.ln.Update(serialConfig(t, slave, c.lines...)); !errors.Is(err, c.want) {
			t.Errorf("%s: Update = %v, want %v", c.name, err, c.want)
		}
	}
	if err := r.ln.Update(serialConfig(t, slave+"x", base...)); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("device: Update = %v", err)
	}
	if b := r.ln.(*serialListener).backoff.Load(); b.Initial.D() != time.Second || b.Max.D() != time.Minute {
		t.Errorf("backoff not applied live: %+v", b)
	}
}

func TestSerialConfig(t *testing.T) {
	const head = "[gateway.serialtest.listeners.serial.bus]\n"
	const p = "gateway.serialtest.listeners.serial.bus."
	cases := []struct {
		name string
		toml string
		want []string
	}{
		{"missing device", head + "baud = 9600", []string{"t.toml:1: " + p + "device: must be set"}},
		{"bad parity", head + "device = \"/dev/ttyAMA0\"\nparity = \"mark\"", []string{`t.toml:3: ` + p + `parity: must be "none", "even" or "odd", got "mark"`}},
		{"bad baud", head + "device = \"/dev/ttyAMA0\"\nbaud = 12345", []string{"t.toml:3: " + p + "baud: unsupported rate 12345 (standard rates: 50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000)"}},
		{"bad stop_bits", head + "device = \"/dev/ttyAMA0\"\nstop_bits = 3", []string{"t.toml:3: " + p + "stop_bits: must be 1 or 2, got 3"}},
		{"bad data_bits", head + "device = \"/dev/ttyAMA0\"\ndata_bits = 9", []string{"t.toml:3: " + p + "data_bits: must be 5, 6, 7 or 8, got 9"}},
		{"rs485 delay", head + "device = \"/dev/ttyAMA0\"\nrs485_delay_after_send = \"150ms\"", []string{"t.toml:3: " + p + "rs485_delay_after_send: 150ms is above the kernel's 100ms limit"}},
		{"bad read_timeout", head + "device = \"/dev/ttyAMA0\"\nread_timeout = 100", []string{`t.toml:3: ` + p + `read_timeout: expected a duration string such as "30s", got integer 100`}},
		{"backoff max below initial", head + "device = \"/dev/ttyAMA0\"\nreopen_backoff = { initial = \"2s\", max = \"1s\" }", []string{"t.toml:3: " + p + "reopen_backoff.max: 1s is below initial (2s)"}},
		{"backoff zero", head + "device = \"/dev/ttyAMA0\"\nreopen_backoff = { initial = \"0s\" }", []string{"t.toml:3: " + p + "reopen_backoff.initial: must be positive, got 0s"}},
		{"unknown key", head + "device = \"/dev/ttyAMA0\"\nbaudrate = 9600", []string{"t.toml:3: " + p + "baudrate: unknown key"}},
		{"several at once", head + "parity = \"mark\"\nstop_bits = 0", []string{
			"t.toml:1: " + p + "device: must be set",
			`t.toml:2: ` + p + `parity: must be "none", "even" or "odd", got "mark"`,
			"t.toml:3: " + p + "stop_bits: must be 1 or 2, got 0",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := serialParse(t, c.toml)
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", err, strings.Join(c.want, "\n"))
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		c, err := serialParse(t, head+"device = \"/dev/serial/by-id/usb-FTDI\"")
		if err != nil {
			t.Fatal(err)
		}
		l := c.Gateways[serialKind].Listeners[0]
		want := DefaultSerialSpec()
		want.Device = "/dev/serial/by-id/usb-FTDI"
		if got := *l.Spec.(*SerialSpec); got != want {
			t.Fatalf("spec %+v, want %+v", got, want)
		}
		if want.Baud != 115200 || want.DataBits != 8 || want.Parity != "none" || want.StopBits != 1 ||
			want.ReadTimeout.D() != 100*time.Millisecond || want.RS485 ||
			want.ReopenBackoff.Initial.D() != 500*time.Millisecond || want.ReopenBackoff.Max.D() != 30*time.Second {
			t.Fatalf("defaults %+v", want)
		}
		if l.Bind != "" {
			t.Errorf("bind %q", l.Bind)
		}
	})
}
