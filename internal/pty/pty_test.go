//go:build linux

package pty

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOpen(t *testing.T) {
	master, slavePath, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open slave: %v", err)
	}
	defer slave.Close()
	if _, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS); err != nil {
		t.Fatalf("slave is not a tty: %v", err)
	}
	if err := master.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("master not pollable: %v", err)
	}

	// The slave starts in canonical mode: a line typed on the master
	// arrives whole, and is echoed back to the master.
	if _, err := master.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(slave, got); err != nil || string(got) != "ping\n" {
		t.Fatalf("slave read %q, %v", got, err)
	}
	echo := make([]byte, 6)
	if _, err := io.ReadFull(master, echo); err != nil || string(echo) != "ping\r\n" {
		t.Fatalf("echo %q, %v", echo, err)
	}
	if _, err := slave.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 4)
	if _, err := io.ReadFull(master, got); err != nil || string(got) != "pong" {
		t.Fatalf("master read %q, %v", got, err)
	}

	// Closing the master hangs the slave up, as unplugging a USB adapter
	// does: the kernel answers EOF (or EIO on older kernels).
	master.Close()
	if _, err := slave.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.EIO) {
		t.Fatalf("slave read after master close: %v, want EOF or EIO", err)
	}
	if _, err := os.Stat(slavePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("slave %s still there after hangup: %v", slavePath, err)
	}
}

func TestOpenDistinct(t *testing.T) {
	m1, p1, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	m2, p2, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if p1 == p2 {
		t.Fatalf("two pairs share slave %s", p1)
	}
}
