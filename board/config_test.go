//go:build linux

package board

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

func parseBoard(t *testing.T, snippet string) (*Config, error) {
	t.Helper()
	c, err := config.Parse([]byte(snippet), "edgeway.toml")
	if err != nil {
		return nil, err
	}
	return FromConfig(c), nil
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseBoard(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(*c, want) {
		t.Errorf("no [board]: %+v, want %+v", *c, want)
	}
	if c.WatchdogTimeout.D() != 15*time.Second {
		t.Errorf("watchdog_timeout default %s", c.WatchdogTimeout)
	}
}

func TestConfigSnippets(t *testing.T) {
	cases := []struct {
		name, toml string
		err        string // exact error; "" for valid
	}{
		{"full", `
[board]
profile = "rpi4"
status_led = "PWR"
watchdog = "/dev/watchdog1"
watchdog_timeout = "30s"

[board.ports.rs485-0]
termination = true
direction = "auto"
direction_gpio = "gpiochip0:17"

[board.ports.meter]
device = "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"
direction = "none"
`, ""},
		{"unknown profile", "[board]\nprofile = \"rpi6\"\n",
			`edgeway.toml:2: board.profile: unknown profile "rpi6" (auto, rpi-zero-2w, rpi3, rpi4, rpi5, rpi, arm-gateway, x86)`},
		{"unknown key", "[board]\nled = \"ACT\"\n",
			`edgeway.toml:2: board.led: unknown key`},
		{"led path", "[board]\nstatus_led = \"/sys/class/leds/ACT\"\n",
			`edgeway.toml:2: board.status_led: want an LED name under /sys/class/leds, "auto" or "none", got "/sys/class/leds/ACT"`},
		{"watchdog not a device", "[board]\nwatchdog = \"on\"\n",
			`edgeway.toml:2: board.watchdog: want a device under /dev, "auto" or "none", got "on"`},
		{"watchdog timeout fraction", "[board]\nwatchdog_timeout = \"1500ms\"\n",
			`edgeway.toml:2: board.watchdog_timeout: want whole seconds between 2s and 1h, got 1.5s`},
		{"watchdog timeout unitless", "[board]\nwatchdog_timeout = 15\n",
			`edgeway.toml:2: board.watchdog_timeout: expected a duration string such as "30s", got integer 15`},
		{"port without device on named profile", "[board]\nprofile = \"x86\"\n[board.ports.rs485-7]\ntermination = true\n",
			`edgeway.toml:3: board.ports.rs485-7.device: must be set: profile "x86" has no port "rs485-7"`},
		{"relative device", "[board.ports.meter]\ndevice = \"ttyUSB0\"\n",
			`edgeway.toml:2: board.ports.meter.device: want an absolute path such as /dev/ttyAMA0, got "ttyUSB0"`},
		{"bad direction", "[board.ports.rs485-0]\ndirection = \"rts\"\n",
			`edgeway.toml:2: board.ports.rs485-0.direction: want "auto", "kernel", "gpio" or "none", got "rts"`},
		{"gpio direction without line", "[board.ports.rs485-0]\ndirection = \"gpio\"\n",
			`edgeway.toml:1: board.ports.rs485-0.direction_gpio: must be set when direction = "gpio"`},
		{"bad gpio", "[board.ports.rs485-0]\ndirection_gpio = \"GPIO17\"\n",
			`edgeway.toml:2: board.ports.rs485-0.direction_gpio: want "gpiochipN:LINE" (chip and line offset, as gpioinfo shows them), got "GPIO17"`},
		{"bad gpio line", "[board.ports.rs485-0]\ndirection_gpio = \"gpiochip1:x\"\n",
			`edgeway.toml:2: board.ports.rs485-0.direction_gpio: want "gpiochipN:LINE" (chip and line offset, as gpioinfo shows them), got "gpiochip1:x"`},
		{"bad port name", "[board.ports.\"rs 485\"]\ndevice = \"/dev/ttyS3\"\n",
			`edgeway.toml:1: board.ports.rs 485: port names are letters, digits, '-' and '_' (used as a serial listener's device)`},
		{"port unknown key", "[board.ports.rs485-0]\nbaud = 9600\n",
			`edgeway.toml:2: board.ports.rs485-0.baud: unknown key`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseBoard(t, tc.toml)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Errorf("error:\n got %s\nwant %s", got, tc.err)
			}
		})
	}
}

func TestConfigFullSnippetValues(t *testing.T) {
	c, err := parseBoard(t, "[board.ports.rs485-0]\ntermination = true\ndirection_gpio = \"27\"\n")
	if err != nil {
		t.Fatal(err)
	}
	p := c.Ports["rs485-0"]
	if !p.Termination || p.DirectionGPIO != "27" || c.Profile != Auto {
		t.Errorf("decoded %+v", c)
	}
	chip, line, err := parseGPIO(p.DirectionGPIO)
	if chip != "gpiochip0" || line != 27 || err != nil {
		t.Errorf("parseGPIO(27) = %s, %d, %v", chip, line, err)
	}
}

func TestFromConfigWithoutSection(t *testing.T) {
	if c := FromConfig(nil); c.Profile != Auto {
		t.Errorf("FromConfig(nil) = %+v", c)
	}
	if c := FromConfig(&config.Config{}); !strings.EqualFold(c.Watchdog, Auto) {
		t.Errorf("FromConfig(empty) = %+v", c)
	}
}
