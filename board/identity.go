// Package board knows the hardware edgeway runs on: the device identity
// (${board.serial}), and — as board profiles land — serial ports, RS-485
// mode, the status LED and the hardware watchdog. Everything reads through
// a root directory so tests run against a fake sysfs/procfs tree.
package board

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// Identity is what the agent knows about its box.
type Identity struct {
	Serial string // stable per board; never empty
	Model  string // "Raspberry Pi 4 Model B Rev 1.4", DMI product name, or ""
	// Source says where Serial came from: "device-tree", "cpuinfo", "dmi",
	// "machine-id" or "hostname".
	Source string
}

// ReadIdentity reads the board identity under root ("/" on a real box).
// It tries, in order: the device tree serial number, the Serial line of
// /proc/cpuinfo (Raspberry Pi), the DMI product serial (x86), the systemd
// machine id, and finally the host name, so it always returns something.
func ReadIdentity(root string) Identity {
	id := Identity{Model: firstLine(root, "proc/device-tree/model")}
	if id.Model == "" {
		id.Model = firstLine(root, "sys/class/dmi/id/product_name")
	}
	if s := firstLine(root, "proc/device-tree/serial-number"); usable(s) {
		id.Serial, id.Source = s, "device-tree"
		return id
	}
	if s := cpuinfoSerial(root); usable(s) {
		id.Serial, id.Source = s, "cpuinfo"
		return id
	}
	if s := firstLine(root, "sys/class/dmi/id/product_serial"); usable(s) {
		id.Serial, id.Source = s, "dmi"
		return id
	}
	if s := firstLine(root, "etc/machine-id"); usable(s) {
		id.Serial, id.Source = s, "machine-id"
		return id
	}
	h, _ := os.Hostname()
	if h == "" {
		h = "unknown"
	}
	id.Serial, id.Source = h, "hostname"
	return id
}

// usable rejects empty values and the placeholders vendors leave in DMI.
func usable(s string) bool {
	switch strings.ToLower(s) {
	case "", "0", "none", "default string", "to be filled by o.e.m.", "not specified", "system serial number", "0000000000000000":
		return false
	}
	return true
}

func firstLine(root, rel string) string {
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return ""
	}
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(strings.TrimRight(s, "\x00"))
}

func cpuinfoSerial(root string) string {
	f, err := os.Open(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "Serial" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
