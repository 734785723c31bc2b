//go:build linux

package board

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// Config is [board]. Every key is optional; an empty section means "detect
// the board and use its profile's defaults". Changes take effect on the
// next start.
type Config struct {
	// Profile is "auto" or a built-in profile name ("rpi4", "arm-gateway"…).
	Profile string `toml:"profile"`
	// StatusLED is an LED name under /sys/class/leds, "auto" for the
	// profile's, or "none".
	StatusLED string `toml:"status_led"`
	// Watchdog is the hardware watchdog device, "auto" for the profile's
	// (if present, and only if a clean stop can disarm it), or "none".
	Watchdog string `toml:"watchdog"`
	// WatchdogTimeout is asked of the driver (WDIOC_SETTIMEOUT); drivers
	// round or cap it (the Pi's stops at 15s) and the one granted is used.
	WatchdogTimeout config.Duration `toml:"watchdog_timeout"`
	// Ports add named serial ports or override the profile's, keyed by
	// the name a serial listener uses as its device.
	Ports map[string]Port `toml:"ports"`
}

// Port is [board.ports.<name>]: a named serial port and how its RS-485
// transceiver is driven.
type Port struct {
	// Device is the tty path; empty keeps the profile's device for a name
	// the profile knows.
	Device string `toml:"device"`
	// Direction says who switches the transceiver between send and
	// receive: "auto" (the kernel's RS-485 mode if the UART has one, else
	// direction_gpio if set, else the transceiver itself), "kernel"
	// (TIOCSRS485 or fail), "gpio" (direction_gpio from user space) or
	// "none" (an auto-direction transceiver, as on most USB adapters).
	Direction string `toml:"direction"`
	// Termination switches the board's bus terminator on
	// (SER_RS485_TERMINATE_BUS) where the UART driver has a GPIO for it.
	Termination bool `toml:"termination"`
	// RTSActiveLow is for transceivers whose driver-enable follows RTS
	// inverted: RTS low while sending.
	RTSActiveLow bool `toml:"rts_active_low"`
	// RXDuringTX keeps the receiver on while sending (echo of own frames).
	RXDuringTX bool `toml:"rx_during_tx"`
	// DirectionGPIO is the line wired to the transceiver's DE/RE pins, as
	// "gpiochip0:17" (chip and line offset, as gpioinfo shows them).
	DirectionGPIO string `toml:"direction_gpio"`
	// DirectionGPIOActiveLow drives the line low to send.
	DirectionGPIOActiveLow bool `toml:"direction_gpio_active_low"`
}

// Direction values of a port.
const (
	DirectionAuto   = "auto"
	DirectionKernel = "kernel"
	DirectionGPIO   = "gpio"
	DirectionNone   = "none"
)

const (
	defaultWatchdogTimeout = 15 * time.Second
	none                   = "none"
)

// DefaultConfig is [board] when the file has none.
func DefaultConfig() Config {
	return Config{
		Profile:         Auto,
		StatusLED:       Auto,
		Watchdog:        Auto,
		WatchdogTimeout: config.Duration(defaultWatchdogTimeout),
	}
}

func init() {
	config.RegisterSection(config.SectionSchema{
		Name: "board",
		New:  func() any { c := DefaultConfig(); return &c },
	})
}

// FromConfig returns the [board] section of a loaded config, or the
// defaults if this binary's config has none.
func FromConfig(c *config.Config) *Config {
	if c != nil {
		if b, ok := c.Extra["board"].(*Config); ok && b != nil {
			return b
		}
	}
	d := DefaultConfig()
	return &d
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var errs []error
	var prof *Profile
	if c.Profile != Auto {
		if p, ok := ProfileByName(c.Profile); ok {
			prof = &p
		} else {
			errs = append(errs, config.Field("profile", "unknown profile %q (auto, %s)", c.Profile, strings.Join(profileNames(), ", ")))
		}
	}
	if c.StatusLED == "" || strings.ContainsAny(c.StatusLED, "/\x00") || c.StatusLED == "." || c.StatusLED == ".." {
		errs = append(errs, config.Field("status_led", "want an LED name under /sys/class/leds, \"auto\" or \"none\", got %q", c.StatusLED))
	}
	if c.Watchdog != Auto && c.Watchdog != none && !strings.HasPrefix(c.Watchdog, "/dev/") {
		errs = append(errs, config.Field("watchdog", "want a device under /dev, \"auto\" or \"none\", got %q", c.Watchdog))
	}
	// Watchdog drivers take whole seconds; below 2s a feed every third of
	// it leaves no room for a slow check.
	if t := c.WatchdogTimeout.D(); t < 2*time.Second || t > time.Hour || t%time.Second != 0 {
		errs = append(errs, config.Field("watchdog_timeout", "want whole seconds between 2s and 1h, got %s", c.WatchdogTimeout))
	}
	for _, name := range sortedPortNames(c.Ports) {
		if !validPortName(name) {
			errs = append(errs, config.Field("ports."+name, "port names are letters, digits, '-' and '_' (used as a serial listener's device)"))
			continue
		}
		if prof != nil && c.Ports[name].Device == "" {
			if _, ok := prof.Ports[name]; !ok {
				errs = append(errs, config.Field("ports."+name+".device", "must be set: profile %q has no port %q", prof.Name, name))
			}
		}
	}
	return errors.Join(errs...)
}

func validPortName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Validate implements config.Validator.
func (p *Port) Validate() error {
	var errs []error
	if p.Device != "" && !filepath.IsAbs(p.Device) {
		errs = append(errs, config.Field("device", "want an absolute path such as /dev/ttyAMA0, got %q", p.Device))
	}
	switch p.Direction {
	case "", DirectionAuto, DirectionKernel, DirectionNone:
	case DirectionGPIO:
		if p.DirectionGPIO == "" {
			errs = append(errs, config.Field("direction_gpio", "must be set when direction = \"gpio\""))
		}
	default:
		errs = append(errs, config.Field("direction", "want \"auto\", \"kernel\", \"gpio\" or \"none\", got %q", p.Direction))
	}
	if p.DirectionGPIO != "" {
		if _, _, err := parseGPIO(p.DirectionGPIO); err != nil {
			errs = append(errs, config.Field("direction_gpio", "%v", err))
		}
	}
	return errors.Join(errs...)
}

// parseGPIO reads "gpiochip0:17" (or "17", meaning gpiochip0).
func parseGPIO(s string) (chip string, line uint32, err error) {
	chip, off, ok := strings.Cut(s, ":")
	if !ok {
		chip, off = "gpiochip0", s
	}
	if !strings.HasPrefix(chip, "gpiochip") || !isDigits(strings.TrimPrefix(chip, "gpiochip")) {
		return "", 0, errGPIOSpec(s)
	}
	n, err := strconv.ParseUint(off, 10, 32)
	if err != nil || n > 0xffff {
		return "", 0, errGPIOSpec(s)
	}
	return chip, uint32(n), nil
}

func errGPIOSpec(s string) error {
	return fmt.Errorf("want \"gpiochipN:LINE\" (chip and line offset, as gpioinfo shows them), got %q", s)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
