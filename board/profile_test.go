//go:build linux

package board

import (
	"runtime"
	"testing"
)

func TestDetect(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"pi zero 2 w", map[string]string{"proc/device-tree/model": "Raspberry Pi Zero 2 W Rev 1.0\x00"}, "rpi-zero-2w"},
		{"pi 3 b+", map[string]string{"proc/device-tree/model": "Raspberry Pi 3 Model B Plus Rev 1.3\x00"}, "rpi3"},
		{"pi 4", map[string]string{"proc/device-tree/model": "Raspberry Pi 4 Model B Rev 1.4\x00"}, "rpi4"},
		{"cm4", map[string]string{"proc/device-tree/model": "Raspberry Pi Compute Module 4 Rev 1.0\x00"}, "rpi4"},
		{"pi 400", map[string]string{"proc/device-tree/model": "Raspberry Pi 400 Rev 1.0\x00"}, "rpi4"},
		{"pi 5", map[string]string{"proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00"}, "rpi5"},
		{"pi zero w", map[string]string{"proc/device-tree/model": "Raspberry Pi Zero W Rev 1.1\x00"}, "rpi"},
		{"firmware path only", map[string]string{"sys/firmware/devicetree/base/model": "Raspberry Pi 5 Model B Rev 1.0\x00"}, "rpi5"},
		{"other device tree", map[string]string{"proc/device-tree/model": "NXP i.MX8MPlus EVK board\x00"}, "arm-gateway"},
		{"pc", map[string]string{"sys/class/dmi/id/product_name": "ThinkCentre M720q\n"}, "x86"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, c := range tc.files {
				write(t, root, p, c)
			}
			if got := Detect(root).Name; got != tc.want {
				t.Errorf("Detect = %s, want %s", got, tc.want)
			}
		})
	}
	t.Run("nothing known", func(t *testing.T) {
		want := "arm-gateway"
		if runtime.GOARCH == "amd64" || runtime.GOARCH == "386" {
			want = "x86"
		}
		if got := Detect(t.TempDir()).Name; got != want {
			t.Errorf("Detect(empty) = %s, want %s on %s", got, want, runtime.GOARCH)
		}
	})
}

func TestProfilesAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Profiles() {
		if seen[p.Name] {
			t.Errorf("profile %s twice", p.Name)
		}
		seen[p.Name] = true
		if p.Description == "" || p.Ports["rs485-0"] == "" || p.Ports["usb0"] == "" {
			t.Errorf("profile %s lacks a description or rs485-0/usb0 ports: %+v", p.Name, p)
		}
		if got, ok := ProfileByName(p.Name); !ok || got.Name != p.Name {
			t.Errorf("ProfileByName(%s) = %v, %v", p.Name, got.Name, ok)
		}
	}
	if _, ok := ProfileByName(Auto); ok {
		t.Error("auto must not be a profile")
	}
}
