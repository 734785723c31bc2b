package board

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadIdentity(t *testing.T) {
	cases := []struct {
		name   string
		files  map[string]string
		serial string
		model  string
		source string
	}{
		{"raspberry pi device tree", map[string]string{
			"proc/device-tree/model":         "Raspberry Pi 4 Model B Rev 1.4\x00",
			"proc/device-tree/serial-number": "10000000abcdef01\x00",
			"proc/cpuinfo":                   "Serial\t\t: 10000000ffffffff\n",
		}, "10000000abcdef01", "Raspberry Pi 4 Model B Rev 1.4", "device-tree"},
		{"cpuinfo only", map[string]string{
			"proc/cpuinfo": "processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 00000000c0ffee00\nModel\t: Raspberry Pi Zero 2 W\n",
		}, "00000000c0ffee00", "", "cpuinfo"},
		{"x86 dmi", map[string]string{
			"sys/class/dmi/id/product_serial": "PF3ABC12\n",
			"sys/class/dmi/id/product_name":   "ThinkCentre M720q\n",
		}, "PF3ABC12", "ThinkCentre M720q", "dmi"},
		{"dmi placeholder falls through to machine-id", map[string]string{
			"sys/class/dmi/id/product_serial": "To be filled by O.E.M.\n",
			"etc/machine-id":                  "4c4c4544004a3010\n",
		}, "4c4c4544004a3010", "", "machine-id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, content := range c.files {
				write(t, root, rel, content)
			}
			id := ReadIdentity(root)
			if id.Serial != c.serial || id.Model != c.model || id.Source != c.source {
				t.Fatalf("got %+v, want serial %q model %q source %q", id, c.serial, c.model, c.source)
			}
		})
	}
	id := ReadIdentity(t.TempDir())
	if id.Source != "hostname" || id.Serial == "" {
		t.Fatalf("empty root: %+v", id)
	}
}
