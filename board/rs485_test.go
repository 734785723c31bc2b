//go:build linux

package board

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgeway/edgeway/internal/pty"
	"github.com/edgeway/edgeway/transports"
)

// recorder stands in for the kernel at the ioctl seam: it keeps the bytes
// each call would have handed the driver and lets the test answer.
type recorder struct {
	mu    sync.Mutex
	calls []ioctlCall
	log   []string // ioctls and other events, in order
	// reply may change arg in place (as a driver writes back) or fail.
	reply func(req uint, arg []byte) error
}

type ioctlCall struct {
	fd  uintptr
	req uint
	arg []byte
}

// argSize is how many bytes each request reads or writes.
func argSize(req uint) int {
	switch req {
	case unix.TIOCSRS485:
		return 32
	case unix.TIOCSERGETLSR:
		return 4
	}
	return int(req >> 16 & 0x3fff) // _IOC size field
}

func (r *recorder) ioctl(fd uintptr, req uint, arg unsafe.Pointer) error {
	b := unsafe.Slice((*byte)(arg), argSize(req))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, ioctlCall{fd: fd, req: req, arg: bytes.Clone(b)})
	r.log = append(r.log, fmt.Sprintf("ioctl %#x", req))
	if r.reply != nil {
		return r.reply(req, b)
	}
	return nil
}

func (r *recorder) event(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

func (r *recorder) find(req uint) []ioctlCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ioctlCall
	for _, c := range r.calls {
		if c.req == req {
			out = append(out, c)
		}
	}
	return out
}

// le32 builds the expected little-endian words of a struct (every
// architecture edgeway ships for is little-endian).
func le32(words ...uint32) []byte {
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

func TestEncodeRS485(t *testing.T) {
	on := transports.RS485Config{Enabled: true, RTSOnSend: true}
	cases := []struct {
		name string
		c    transports.RS485Config
		p    Port
		want []byte // struct serial_rs485, 32 bytes
	}{
		{"rts on send", on, Port{}, le32(0x03, 0, 0, 0, 0, 0, 0, 0)},
		{"delays in ms", transports.RS485Config{Enabled: true, RTSOnSend: true, DelayBeforeSend: 2 * time.Millisecond, DelayAfterSend: 10 * time.Millisecond}, Port{},
			le32(0x03, 2, 10, 0, 0, 0, 0, 0)},
		{"sub-ms delay rounds up", transports.RS485Config{Enabled: true, RTSOnSend: true, DelayAfterSend: 500 * time.Microsecond}, Port{},
			le32(0x03, 0, 1, 0, 0, 0, 0, 0)},
		{"termination and rx during tx", on, Port{Termination: true, RXDuringTX: true}, le32(0x01|0x02|0x10|0x20, 0, 0, 0, 0, 0, 0, 0)},
		{"inverted rts", on, Port{RTSActiveLow: true}, le32(0x01|0x04, 0, 0, 0, 0, 0, 0, 0)},
		{"inverted twice", transports.RS485Config{Enabled: true}, Port{RTSActiveLow: true}, le32(0x03, 0, 0, 0, 0, 0, 0, 0)},
		{"disabled", transports.RS485Config{}, Port{Termination: true}, le32(0, 0, 0, 0, 0, 0, 0, 0)},
	}
	for _, tc := range cases {
		got := encodeRS485(tc.c, tc.p)
		if !bytes.Equal(got[:], tc.want) {
			t.Errorf("%s:\n got % x\nwant % x", tc.name, got, tc.want)
		}
	}
}

// logBuf collects a Board's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestBoard(t *testing.T, cfg Config, root string) (*Board, *recorder, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	b, err := New(&cfg, Options{Root: root, Logger: slog.New(slog.NewTextHandler(lb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	b.ioctl = rec.ioctl
	return b, rec, lb
}

func rpiConfig(ports map[string]Port) Config {
	c := DefaultConfig()
	c.Profile = "rpi4"
	c.StatusLED, c.Watchdog = none, none
	c.Ports = ports
	return c
}

func TestSetRS485Bytes(t *testing.T) {
	b, rec, lb := newTestBoard(t, rpiConfig(map[string]Port{"rs485-0": {Termination: true}}), t.TempDir())
	b.fdPath = func(uintptr) (string, error) { return "/dev/ttyAMA0", nil }
	err := b.rs485.set(7, transports.RS485Config{Enabled: true, RTSOnSend: true, DelayBeforeSend: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	calls := rec.find(unix.TIOCSRS485)
	if len(calls) != 1 || calls[0].fd != 7 {
		t.Fatalf("TIOCSRS485 calls: %+v", rec.calls)
	}
	if want := le32(0x23, 1, 0, 0, 0, 0, 0, 0); !bytes.Equal(calls[0].arg, want) {
		t.Errorf("serial_rs485:\n got % x\nwant % x", calls[0].arg, want)
	}
	if strings.Contains(lb.String(), "termination") {
		t.Errorf("warned although the driver kept termination: %s", lb)
	}

	// A driver without a terminator GPIO clears the flag in what it
	// writes back; that is worth one warning, not an error.
	rec.reply = func(req uint, arg []byte) error {
		binary.LittleEndian.PutUint32(arg, binary.LittleEndian.Uint32(arg)&^0x20)
		return nil
	}
	for range 2 {
		if err := b.rs485.set(7, transports.RS485Config{Enabled: true, RTSOnSend: true}); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(lb.String(), "termination requested"); n != 1 {
		t.Errorf("%d termination warnings, want 1:\n%s", n, lb)
	}

	// Any other driver error fails the open.
	rec.reply = func(uint, []byte) error { return unix.EIO }
	if err := b.rs485.set(7, transports.RS485Config{Enabled: true}); !errors.Is(err, unix.EIO) {
		t.Errorf("EIO from the driver: err = %v", err)
	}
}

func TestSetRS485DirectionNoneSkipsKernel(t *testing.T) {
	b, rec, _ := newTestBoard(t, rpiConfig(map[string]Port{"rs485-0": {Direction: DirectionNone}}), t.TempDir())
	b.fdPath = func(uintptr) (string, error) { return "/dev/ttyAMA0", nil }
	if err := b.rs485.set(3, transports.RS485Config{Enabled: true, RTSOnSend: true}); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 0 {
		t.Errorf("direction none made ioctls: %+v", rec.calls)
	}
}

// openPTY returns a real tty's slave, open as the serial listener opens it.
func openPTY(t *testing.T) (path string, fd int) {
	t.Helper()
	m, slave, err := pty.Open()
	if err != nil {
		t.Skip("no pty here:", err)
	}
	t.Cleanup(func() { m.Close() })
	fd, err = unix.Open(slave, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return slave, fd
}

// A pty, like a UART driver without RS-485 support, refuses TIOCSRS485.
// This runs the real ioctl and the real fd-to-device lookup.
func TestSetRS485OnPTY(t *testing.T) {
	slave, fd := openPTY(t)
	for _, tc := range []struct {
		direction string
		wantErr   bool
	}{{DirectionKernel, true}, {DirectionAuto, false}, {"", false}} {
		t.Run("direction="+tc.direction, func(t *testing.T) {
			lb := &logBuf{}
			cfg := rpiConfig(map[string]Port{"bus": {Device: slave, Direction: tc.direction}})
			b, err := New(&cfg, Options{Root: t.TempDir(), Logger: slog.New(slog.NewTextHandler(lb, nil))})
			if err != nil {
				t.Fatal(err)
			}
			err = b.rs485.set(uintptr(fd), transports.RS485Config{Enabled: true, RTSOnSend: true})
			if tc.wantErr {
				if !errors.Is(err, ErrNoRS485) || !strings.Contains(err.Error(), slave) {
					t.Fatalf("err = %v, want ErrNoRS485 naming %s", err, slave)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b.rs485.set(uintptr(fd), transports.RS485Config{Enabled: true, RTSOnSend: true})
			if n := strings.Count(lb.String(), "no kernel RS-485 mode"); n != 1 || !strings.Contains(lb.String(), "port=bus") {
				t.Errorf("want one warning naming the port, got:\n%s", lb)
			}
		})
	}
}

func TestGPIOFallback(t *testing.T) {
	root := t.TempDir()
	write(t, root, "dev/gpiochip1", "")
	slave, fd := openPTY(t)
	lb := &logBuf{}
	cfg := rpiConfig(map[string]Port{"rs485-0": {Device: slave, DirectionGPIO: "gpiochip1:17", DirectionGPIOActiveLow: true}})
	b, err := New(&cfg, Options{Root: root, Logger: slog.New(slog.NewTextHandler(lb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	b.ioctl = rec.ioctl
	// The line fd the "kernel" hands back: something real to close.
	lineFile, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	lineFD, err := unix.Dup(int(lineFile.Fd()))
	lineFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	lsr := 0
	rec.reply = func(req uint, arg []byte) error {
		switch req {
		case unix.TIOCSRS485:
			return unix.ENOTTY // the UART has no RS-485 mode
		case 0xC250B407: // GPIO_V2_GET_LINE_IOCTL
			binary.LittleEndian.PutUint32(arg[588:], uint32(lineFD))
		case unix.TIOCSERGETLSR:
			lsr++
			if lsr > 1 { // empty on the second look
				binary.LittleEndian.PutUint32(arg, unix.TIOCSER_TEMT)
			}
		}
		return nil
	}
	b.Install()
	defer b.Stop(t.Context())
	rcfg := transports.RS485Config{Enabled: true, RTSOnSend: true, DelayBeforeSend: 2 * time.Millisecond, DelayAfterSend: 3 * time.Millisecond}
	if err := transports.SetRS485(uintptr(fd), rcfg); err != nil {
		t.Fatal(err)
	}
	// A reopen reuses the line instead of requesting it again.
	if err := transports.SetRS485(uintptr(fd), rcfg); err != nil {
		t.Fatal(err)
	}
	reqs := rec.find(0xC250B407)
	if len(reqs) != 1 {
		t.Fatalf("%d line requests, want 1", len(reqs))
	}
	// struct gpio_v2_line_request, offsets from linux/gpio.h.
	want := make([]byte, 592)
	binary.LittleEndian.PutUint32(want[0:], 17)          // offsets[0]
	copy(want[256:], "edgeway-rs485-0")                  // consumer[32]
	binary.LittleEndian.PutUint64(want[288:], 1<<3|1<<1) // config.flags: OUTPUT | ACTIVE_LOW
	binary.LittleEndian.PutUint32(want[296:], 1)         // config.num_attrs
	binary.LittleEndian.PutUint32(want[320:], 2)         // attrs[0].attr.id: OUTPUT_VALUES
	binary.LittleEndian.PutUint64(want[328:], 0)         // attrs[0].attr.values: inactive
	binary.LittleEndian.PutUint64(want[336:], 1)         // attrs[0].mask: line 0
	binary.LittleEndian.PutUint32(want[560:], 1)         // num_lines
	if !bytes.Equal(reqs[0].arg, want) {
		t.Errorf("gpio_v2_line_request:\n got % x\nwant % x", reqs[0].arg, want)
	}

	g := TxGate(uintptr(fd))
	if g == nil {
		t.Fatal("no gate for a port on GPIO direction control")
	}
	var slept []time.Duration
	g.sleep = func(d time.Duration) { slept = append(slept, d); rec.event("sleep " + d.String()) }
	rec.mu.Lock()
	rec.log = nil
	rec.mu.Unlock()
	n, err := g.Transmit(func() (int, error) { rec.event("write"); return 5, nil })
	if n != 5 || err != nil {
		t.Fatalf("Transmit = %d, %v", n, err)
	}
	set := fmt.Sprintf("ioctl %#x", uint(0xC010B40F)) // GPIO_V2_LINE_SET_VALUES_IOCTL
	lsrReq := fmt.Sprintf("ioctl %#x", uint(unix.TIOCSERGETLSR))
	wantLog := []string{set, "sleep 2ms", "write", lsrReq, "sleep 1ms", lsrReq, "sleep 3ms", set}
	if fmt.Sprint(rec.log) != fmt.Sprint(wantLog) {
		t.Errorf("transmit sequence:\n got %q\nwant %q", rec.log, wantLog)
	}
	sets := rec.find(0xC010B40F)
	if len(sets) != 2 || !bytes.Equal(sets[0].arg, le32(1, 0, 1, 0)) || !bytes.Equal(sets[1].arg, le32(0, 0, 1, 0)) {
		t.Errorf("gpio_v2_line_values: %+v", sets)
	}
	if TxGate(uintptr(fd)+1000) != nil {
		t.Error("a gate for an fd nobody set up")
	}
}

func TestGPIODirectionWithoutChip(t *testing.T) {
	b, _, _ := newTestBoard(t, rpiConfig(map[string]Port{"rs485-0": {Direction: DirectionGPIO, DirectionGPIO: "gpiochip4:3"}}), t.TempDir())
	b.fdPath = func(uintptr) (string, error) { return "/dev/ttyAMA0", nil }
	err := b.rs485.set(3, transports.RS485Config{Enabled: true})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "gpiochip4:3") {
		t.Errorf("err = %v, want a missing chip named", err)
	}
}
