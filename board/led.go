//go:build linux

package board

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Status is what the status LED shows.
type Status int

// The LED's states. The agent moves between them as the uplink comes and
// goes; Stop turns the LED off.
const (
	// StatusOff: the agent is not running.
	StatusOff Status = iota
	// StatusStarting: quick even blink until the first uplink state.
	StatusStarting
	// StatusConnected: steady on — the cloud broker is connected.
	StatusConnected
	// StatusOffline: slow blink — no uplink, nothing waiting.
	StatusOffline
	// StatusQueueing: double flash — no uplink and messages are queued.
	StatusQueueing
)

func (s Status) String() string {
	switch s {
	case StatusOff:
		return "off"
	case StatusStarting:
		return "starting"
	case StatusConnected:
		return "connected"
	case StatusOffline:
		return "offline"
	case StatusQueueing:
		return "queueing"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// patterns alternate on and off times, starting with on. Nil means steady:
// off for StatusOff, on for StatusConnected.
var patterns = map[Status][]time.Duration{
	StatusStarting: {100 * time.Millisecond, 100 * time.Millisecond},
	StatusOffline:  {time.Second, time.Second},
	StatusQueueing: {150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond, 1050 * time.Millisecond},
}

// LED drives one LED under /sys/class/leds from an owned goroutine.
type LED struct {
	dir string
	on  []byte // max_brightness

	state chan Status // latest wins
	stop  chan struct{}
	done  chan struct{}

	mu               sync.Mutex
	started, stopped bool
}

// OpenLED takes over the LED name under root/sys/class/leds: it reads the
// LED's full brightness and detaches any kernel trigger (mmc0, heartbeat)
// that would fight over it. The LED is left off until Start.
func OpenLED(root, name string) (*LED, error) {
	dir := filepath.Join(root, "sys/class/leds", name)
	full, err := os.ReadFile(filepath.Join(dir, "max_brightness"))
	if err != nil {
		return nil, fmt.Errorf("board: led %s: %w", name, err)
	}
	on := strings.TrimSpace(string(full))
	if n, err := strconv.Atoi(on); err != nil || n <= 0 {
		on = "1"
	}
	l := &LED{
		dir:   dir,
		on:    []byte(on),
		state: make(chan Status, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if err := writeAttr(filepath.Join(dir, "trigger"), []byte("none")); err != nil {
		return nil, fmt.Errorf("board: led %s: %w", name, err)
	}
	if err := l.set(false); err != nil {
		return nil, fmt.Errorf("board: led %s: %w", name, err)
	}
	return l, nil
}

// writeAttr writes a sysfs attribute the way `echo v > attr` does. It
// never creates the file: a missing attribute is an error, not a new file.
func writeAttr(path string, v []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (l *LED) set(on bool) error {
	v := []byte("0")
	if on {
		v = l.on
	}
	return writeAttr(filepath.Join(l.dir, "brightness"), v)
}

// Start runs the goroutine that plays the current pattern, beginning with
// StatusStarting unless SetState came first.
func (l *LED) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.stopped {
		return
	}
	l.started = true
	select {
	case l.state <- StatusStarting:
	default: // SetState came first
	}
	go l.run()
}

// SetState switches the pattern. It never blocks; only the latest state
// counts.
func (l *LED) SetState(s Status) {
	for {
		select {
		case l.state <- s:
			return
		default:
		}
		select {
		case <-l.state:
		default:
		}
	}
}

// Stop ends the goroutine and leaves the LED off. It is idempotent; Start
// after Stop does nothing.
func (l *LED) Stop() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	l.stopped = true
	started := l.started
	l.mu.Unlock()
	close(l.stop)
	if started {
		<-l.done
	} else {
		l.set(false)
	}
}

func (l *LED) run() {
	defer close(l.done)
	defer l.set(false)
	var (
		pat   []time.Duration
		step  int
		timer *time.Timer
		tick  <-chan time.Time
	)
	stopTimer := func() {
		if timer != nil {
			timer.Stop()
			timer, tick = nil, nil
		}
	}
	defer stopTimer()
	for {
		select {
		case <-l.stop:
			return
		case s := <-l.state:
			stopTimer()
			pat, step = patterns[s], 0
			if pat == nil {
				l.set(s == StatusConnected)
				continue
			}
		case <-tick:
			step = (step + 1) % len(pat)
		}
		l.set(step%2 == 0)
		timer = time.NewTimer(pat[step])
		tick = timer.C
	}
}
