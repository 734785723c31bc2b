//go:build linux

package board

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// Profile is what edgeway assumes about a family of boards until [board]
// says otherwise: the names of its serial ports, its status LED and its
// hardware watchdog.
type Profile struct {
	// Name is what [board] profile = "…" selects.
	Name        string
	Description string
	// Ports maps port names usable as a serial listener's device
	// ("rs485-0") to device paths.
	Ports map[string]string
	// StatusLEDs are candidate LED names under /sys/class/leds; the first
	// one present is used. Kernels renamed the Pi's led0 to ACT in 2022,
	// so both are listed.
	StatusLEDs []string
	// Watchdog is the hardware watchdog device, "" for none by default.
	Watchdog string

	// models are prefixes of /proc/device-tree/model that select the
	// profile under profile = "auto".
	models []string
}

// Auto is the [board] profile value that detects the board.
const Auto = "auto"

// The Pis route GPIO14/15 (header pins 8/10) to the PL011 as ttyAMA0 once
// Bluetooth is moved off it (dtoverlay=disable-bt or miniuart-bt); serial0
// is the firmware's alias for whichever UART is on the header.
var piPorts = map[string]string{
	"rs485-0": "/dev/ttyAMA0",
	"serial0": "/dev/serial0",
	"usb0":    "/dev/ttyUSB0",
	"usb1":    "/dev/ttyUSB1",
}

var profiles = []Profile{
	{
		Name: "rpi-zero-2w", Description: "Raspberry Pi Zero 2 W",
		Ports: piPorts, StatusLEDs: []string{"ACT", "led0"}, Watchdog: "/dev/watchdog",
		models: []string{"Raspberry Pi Zero 2"},
	},
	{
		Name: "rpi3", Description: "Raspberry Pi 3 (and Compute Module 3)",
		Ports: piPorts, StatusLEDs: []string{"ACT", "led0"}, Watchdog: "/dev/watchdog",
		models: []string{"Raspberry Pi 3", "Raspberry Pi Compute Module 3"},
	},
	{
		Name: "rpi4", Description: "Raspberry Pi 4, 400 and Compute Module 4",
		Ports: piPorts, StatusLEDs: []string{"ACT", "led0"}, Watchdog: "/dev/watchdog",
		models: []string{"Raspberry Pi 4", "Raspberry Pi 400", "Raspberry Pi Compute Module 4"},
	},
	{
		// The Pi 5's header UART is still ttyAMA0; ttyAMA10 is the
		// separate debug connector.
		Name: "rpi5", Description: "Raspberry Pi 5, 500 and Compute Module 5",
		Ports: map[string]string{
			"rs485-0": "/dev/ttyAMA0",
			"serial0": "/dev/serial0",
			"debug":   "/dev/ttyAMA10",
			"usb0":    "/dev/ttyUSB0",
			"usb1":    "/dev/ttyUSB1",
		},
		StatusLEDs: []string{"ACT", "led0"}, Watchdog: "/dev/watchdog",
		models: []string{"Raspberry Pi 5", "Raspberry Pi 500", "Raspberry Pi Compute Module 5"},
	},
	{
		// Older Pis (1, 2, Zero, Zero W): same header UART.
		Name: "rpi", Description: "other Raspberry Pi models",
		Ports: piPorts, StatusLEDs: []string{"ACT", "led0"}, Watchdog: "/dev/watchdog",
		models: []string{"Raspberry Pi"},
	},
	{
		// DIN-rail gateways keep ttyS0 (or ttymxc0) for the console and
		// put their RS-485 terminals on the next UARTs; [board.ports]
		// names the real ones.
		Name: "arm-gateway", Description: "generic ARM industrial gateway",
		Ports: map[string]string{
			"rs485-0": "/dev/ttyS1",
			"rs485-1": "/dev/ttyS2",
			"usb0":    "/dev/ttyUSB0",
			"usb1":    "/dev/ttyUSB1",
		},
		StatusLEDs: []string{"status", "user", "led-status"}, Watchdog: "/dev/watchdog",
	},
	{
		// A PC's /dev/watchdog is as likely to be systemd's or absent as
		// ours, so none by default; [board] watchdog names one.
		Name: "x86", Description: "generic x86 PC or industrial PC",
		Ports: map[string]string{
			"rs485-0": "/dev/ttyS0",
			"rs485-1": "/dev/ttyS1",
			"usb0":    "/dev/ttyUSB0",
			"usb1":    "/dev/ttyUSB1",
		},
	},
}

// Profiles lists the built-in profiles.
func Profiles() []Profile {
	out := make([]Profile, len(profiles))
	copy(out, profiles)
	return out
}

// ProfileByName returns the built-in profile called name.
func ProfileByName(name string) (Profile, bool) {
	for _, p := range profiles {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

func profileNames() []string {
	n := make([]string, len(profiles))
	for i, p := range profiles {
		n[i] = p.Name
	}
	return n
}

// Detect picks the profile for the board whose filesystem is at root ("/"
// on a real box). A device-tree model selects a Raspberry Pi profile by
// prefix, and any other device-tree board is an ARM gateway; without a
// device tree, a DMI table means a PC. With neither, the CPU the binary
// runs on decides.
func Detect(root string) Profile {
	model := firstLine(root, "proc/device-tree/model")
	if model == "" {
		model = firstLine(root, "sys/firmware/devicetree/base/model")
	}
	if model != "" {
		for _, p := range profiles {
			for _, m := range p.models {
				if strings.HasPrefix(model, m) {
					return p
				}
			}
		}
		p, _ := ProfileByName("arm-gateway")
		return p
	}
	if _, err := os.Stat(filepath.Join(root, "sys/class/dmi/id")); err == nil {
		p, _ := ProfileByName("x86")
		return p
	}
	switch runtime.GOARCH {
	case "amd64", "386":
		p, _ := ProfileByName("x86")
		return p
	}
	p, _ := ProfileByName("arm-gateway")
	return p
}

func sortedPortNames(m map[string]Port) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
