//go:build linux

package board

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/transports"
)

// Options are a Board's settings that do not come from [board].
type Options struct {
	// Root is where sysfs, procfs and devfs are found: "/" on a box, a
	// t.TempDir() in tests. Serial device paths are used as given.
	Root   string
	Logger *slog.Logger
	// Health reports whether the agent's core still works (the broker
	// routes, the store answers). The health loop calls it with a
	// deadline; the hardware watchdog and OnHealthy are fed only after it
	// returned nil. A nil Health counts as healthy whenever the loop runs.
	Health func(ctx context.Context) error
	// OnHealthy runs after every healthy check; the agent passes a
	// function that sends sdnotify.Watchdog().
	OnHealthy func()
	// HealthInterval is the loop's period; the agent passes
	// sdnotify.WatchdogInterval(). Zero means 5s. It is shortened to a
	// third of the hardware watchdog's timeout when that is shorter.
	HealthInterval time.Duration
}

// Board is the hardware edgeway runs on: its profile, named serial ports
// and RS-485 set-up, status LED, hardware watchdog and health loop.
//
// New (no device I/O beyond reading the board model) → Install (hooks
// into the serial transport) → Start (LED, watchdog, health loop) → Stop.
type Board struct {
	cfg     Config
	opts    Options
	root    string
	log     *slog.Logger
	profile Profile
	ports   map[string]Port // resolved: every entry has a Device

	ioctl  ioctlFunc
	fdPath func(fd uintptr) (string, error)
	rs485  *rs485

	statusLED string // "" for none
	watchdog  string // device path under root, "" for none

	mu        sync.Mutex
	started   bool
	stopped   bool
	led       *LED
	wd        *Watchdog
	cancel    context.CancelFunc
	loopDone  chan struct{}
	status    Status
	prevSet   func(uintptr, transports.RS485Config) error
	prevRes   func(string) string
	prevGate  func(uintptr) transports.Transmitter
	installed bool
}

// New resolves [board] against the detected or named profile. cfg may be
// nil for the defaults.
func New(cfg *Config, opts Options) (*Board, error) {
	c := DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Board{
		cfg: c, opts: opts, root: opts.Root,
		log:    opts.Logger.With("component", "board"),
		ioctl:  sysIoctl,
		fdPath: procFDPath,
		status: StatusStarting,
	}
	b.rs485 = &rs485{b: b, gates: map[string]*Gate{}, warned: map[string]bool{}}
	if c.Profile == Auto {
		b.profile = Detect(b.root)
	} else {
		b.profile, _ = ProfileByName(c.Profile)
	}
	ports, err := mergePorts(b.profile, c.Ports)
	if err != nil {
		return nil, err
	}
	b.ports = ports
	b.statusLED = b.pickLED()
	b.watchdog = b.pickWatchdog()
	return b, nil
}

func mergePorts(p Profile, over map[string]Port) (map[string]Port, error) {
	out := make(map[string]Port, len(p.Ports)+len(over))
	for name, dev := range p.Ports {
		out[name] = Port{Device: dev}
	}
	for _, name := range sortedPortNames(over) {
		o := over[name]
		if o.Device == "" {
			base, ok := out[name]
			if !ok {
				return nil, fmt.Errorf("board: ports.%s.device: must be set: profile %q has no port %q", name, p.Name, name)
			}
			o.Device = base.Device
		}
		out[name] = o
	}
	return out, nil
}

func (b *Board) pickLED() string {
	switch b.cfg.StatusLED {
	case none:
		return ""
	case Auto:
		for _, n := range b.profile.StatusLEDs {
			if _, err := os.Stat(filepath.Join(b.root, "sys/class/leds", n)); err == nil {
				return n
			}
		}
		return ""
	}
	return b.cfg.StatusLED
}

func (b *Board) pickWatchdog() string {
	switch b.cfg.Watchdog {
	case none:
		return ""
	case Auto:
		dev := b.profile.Watchdog
		if dev == "" {
			return ""
		}
		if _, err := os.Stat(filepath.Join(b.root, dev)); err != nil {
			return ""
		}
		// Under "auto", never arm a watchdog that a clean stop cannot
		// disarm: `systemctl stop edgeway` would reboot the box.
		if watchdogNoWayOut(b.root, dev) {
			b.log.Warn("watchdog not used: driver has nowayout; set [board] watchdog to use it anyway", "device", dev)
			return ""
		}
		return dev
	}
	return b.cfg.Watchdog
}

// Profile is the profile in use.
func (b *Board) Profile() Profile { return b.profile }

// Ports are the named serial ports: the profile's, overridden and extended
// by [board.ports].
func (b *Board) Ports() map[string]Port {
	out := make(map[string]Port, len(b.ports))
	for k, v := range b.ports {
		out[k] = v
	}
	return out
}

// LookupDevice maps a named port ("rs485-0") to its device path.
func (b *Board) LookupDevice(name string) (string, bool) {
	p, ok := b.ports[name]
	return p.Device, ok
}

// ResolveDevice maps a serial listener's device to a path: a named port
// becomes its device, anything else (a path) is returned unchanged.
func (b *Board) ResolveDevice(name string) string {
	if d, ok := b.LookupDevice(name); ok {
		return d
	}
	return name
}

// portForDevice finds the port whose device is dev, following symlinks
// (/dev/serial0, /dev/serial/by-id/…) on both sides.
func (b *Board) portForDevice(dev string) (string, Port) {
	real := evalOr(dev)
	for _, name := range sortedPortNames(b.ports) {
		p := b.ports[name]
		if p.Device == dev || evalOr(p.Device) == real {
			return name, p
		}
	}
	return "", Port{}
}

func evalOr(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

func procFDPath(fd uintptr) (string, error) {
	return os.Readlink("/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10))
}

// active is the installed Board, which the package-level ResolveDevice
// and TxGate consult.
var active atomic.Pointer[Board]

// Install makes this Board the serial transport's RS-485 set-up
// (transports.SetRS485) and the one behind the package-level
// ResolveDevice and TxGate. The agent calls it once, before starting
// gateways; Stop undoes it.
func (b *Board) Install() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.installed {
		return
	}
	b.installed = true
	b.prevSet = transports.SetRS485
	b.prevRes = transports.ResolveDevice
	b.prevGate = transports.RS485Gate
	transports.SetRS485 = b.rs485.set
	transports.ResolveDevice = b.ResolveDevice
	transports.RS485Gate = func(fd uintptr) transports.Transmitter {
		if g := b.TxGate(fd); g != nil {
			return g
		}
		return nil
	}
	active.Store(b)
}

func (b *Board) uninstall() {
	if !b.installed {
		return
	}
	b.installed = false
	transports.SetRS485 = b.prevSet
	transports.ResolveDevice = b.prevRes
	transports.RS485Gate = b.prevGate
	active.CompareAndSwap(b, nil)
}

// TxGate returns the direction gate for the port open on fd when its
// transceiver is switched from user space (direction_gpio), or nil when
// the kernel or the transceiver itself does it.
func (b *Board) TxGate(fd uintptr) *Gate { return b.rs485.gate(fd) }

var (
	fallbackOnce  sync.Once
	fallbackBoard *Board
)

// ResolveDevice maps a serial listener's device setting to a path: a port
// name ("rs485-0") becomes the installed Board's device for it, a path is
// returned unchanged, and so is an unknown name (whose open then fails
// naming it). Before any Board is installed (edgeway config check), names
// resolve against the detected profile's defaults.
func ResolveDevice(name string) string {
	if strings.ContainsRune(name, '/') {
		return name
	}
	if b := active.Load(); b != nil {
		return b.ResolveDevice(name)
	}
	fallbackOnce.Do(func() { fallbackBoard, _ = New(nil, Options{}) })
	if fallbackBoard != nil {
		return fallbackBoard.ResolveDevice(name)
	}
	return name
}

// TxGate is Board.TxGate of the installed Board; nil when none is.
func TxGate(fd uintptr) *Gate {
	if b := active.Load(); b != nil {
		return b.TxGate(fd)
	}
	return nil
}

// Start opens the status LED and the hardware watchdog and starts the LED
// and health loop goroutines. A missing or busy LED or watchdog is logged
// and skipped: the agent runs without them rather than not at all.
func (b *Board) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("board: already started")
	}
	if b.stopped {
		return errors.New("board: stopped")
	}
	b.started = true
	attrs := []any{"profile", b.profile.Name, "ports", portSummary(b.ports)}
	if b.statusLED != "" {
		led, err := OpenLED(b.root, b.statusLED)
		if err != nil {
			b.log.Warn("status LED not used", "error", err)
		} else {
			b.led = led
			led.SetState(b.status)
			led.Start()
			attrs = append(attrs, "status_led", b.statusLED)
		}
	}
	if b.watchdog != "" {
		wd, err := openWatchdog(filepath.Join(b.root, b.watchdog), b.cfg.WatchdogTimeout.D(), b.ioctl)
		if err != nil {
			b.log.Warn("hardware watchdog not used", "error", err)
		} else {
			b.wd = wd
			attrs = append(attrs, "watchdog", b.watchdog, "watchdog_timeout", wd.Timeout())
		}
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	b.loopDone = make(chan struct{})
	go b.healthLoop(lctx, b.interval(), b.wd)
	b.log.Info("board ready", attrs...)
	return nil
}

func portSummary(ports map[string]Port) string {
	var s []string
	for _, n := range sortedPortNames(ports) {
		s = append(s, n+"="+ports[n].Device)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func (b *Board) interval() time.Duration {
	iv := b.opts.HealthInterval
	if iv <= 0 {
		iv = 5 * time.Second
	}
	if b.wd != nil {
		if t := b.wd.Timeout() / 3; t > 0 && t < iv {
			iv = t
		}
	}
	return iv
}

// healthLoop checks the agent every interval and feeds the watchdogs
// after each healthy check. A check that hangs stops the feeding, which
// is the point: a wedged core must end in a restart or a reset.
func (b *Board) healthLoop(ctx context.Context, every time.Duration, wd *Watchdog) {
	defer close(b.loopDone)
	t := time.NewTicker(every)
	defer t.Stop()
	healthy := true
	for {
		err := b.check(ctx, every)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			if healthy {
				b.log.Error("health check failed: watchdogs not fed", "error", err)
			}
			healthy = false
		default:
			if !healthy {
				b.log.Info("health check passes again")
			}
			healthy = true
			if wd != nil {
				if err := wd.Feed(); err != nil {
					b.log.Error("feeding the watchdog failed", "error", err)
				}
			}
			if b.opts.OnHealthy != nil {
				b.opts.OnHealthy()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *Board) check(ctx context.Context, limit time.Duration) error {
	if b.opts.Health == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return b.opts.Health(cctx)
}

// SetStatus sets what the status LED shows. It never blocks and may be
// called before Start (the LED starts with the latest status) and after
// Stop (ignored).
func (b *Board) SetStatus(s Status) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status = s
	if b.led != nil && !b.stopped {
		b.led.SetState(s)
	}
}

// Stop ends the health loop, disarms the watchdog with the magic close,
// turns the LED off, releases GPIO lines and undoes Install. It is
// idempotent and safe after a partial start. Call it only for a clean
// stop: leaving the watchdog armed is how a crash gets the board reset.
func (b *Board) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return nil
	}
	b.stopped = true
	if b.cancel != nil {
		b.cancel()
		select {
		case <-b.loopDone:
		case <-ctx.Done():
			// A Health that ignores its context: leave it, but do not
			// disarm a watchdog it might still feed.
			return fmt.Errorf("board: health loop did not stop: %w", ctx.Err())
		}
	}
	var errs []error
	if b.wd != nil {
		if err := b.wd.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.led != nil {
		b.led.Stop()
	}
	b.rs485.close()
	b.uninstall()
	return errors.Join(errs...)
}
