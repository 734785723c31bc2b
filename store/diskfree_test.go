package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestDiskFullRules drives the free-space rules with a filesystem whose
// free space the test sets: appends refused below MinFreeBytes (waiting
// callers get ErrDiskFull, QoS 0 is counted dropped), deletes written down
// to a quarter of it and held below, Open refused below a quarter, and
// everything taken again once there is room.
func TestDiskFullRules(t *testing.T) {
	var free atomic.Int64
	free.Store(1 << 40)
	const min = 64 << 20
	var dropped []string
	var mu sync.Mutex
	o := Options{MinFreeBytes: min, diskFree: func(string) (int64, bool) { return free.Load(), true },
		OnDrop: func(m *Message, reason string) { mu.Lock(); dropped = append(dropped, reason); mu.Unlock() }}
	s := openT(t, o)
	stored := appendN(t, s, 0, 10)

	free.Store(min - 1)
	m := testMsg(100)
	err := s.Append(context.Background(), m)
	if !errors.Is(err, ErrDiskFull) || m.Seq != 0 {
		t.Fatalf("append below min_free: err %v, seq %d; want ErrDiskFull and no seq", err, m.Seq)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(min-1)) {
		t.Errorf("error %q does not say how much is free", err)
	}
	if err := s.AppendNoWait(testMsg(101)); err != nil {
		t.Fatal(err)
	}
	// Deletes still go through above a quarter: the drain frees space.
	if err := s.Delete(stored[0].Seq); err != nil {
		t.Fatal(err)
	}
	held := func() int {
		s.do(func() { s.round() }) // a round on the committer, now
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.delQueue)
	}
	if n := held(); n != 0 {
		t.Fatalf("%d deletes held above a quarter of min_free, want them written", n)
	}
	st := s.Stats()
	if st.RejectedDiskFull != 1 || st.DroppedDiskFull != 1 || st.DiskFree != min-1 || st.Messages != 9 {
		t.Errorf("stats %+v: want 1 rejected, 1 dropped, disk_free %d, 9 messages", st, min-1)
	}
	mu.Lock()
	if len(dropped) != 1 || dropped[0] != DropReasonDiskFull {
		t.Errorf("OnDrop reasons %v, want [%s]", dropped, DropReasonDiskFull)
	}
	mu.Unlock()

	// Below a quarter, deletes wait (in order) and nothing is written.
	free.Store(min/4 - 1)
	if err := s.Delete(stored[1].Seq, stored[2].Seq); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), testMsg(102)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append below a quarter: %v", err)
	}
	if n := held(); n != 2 {
		t.Fatalf("%d deletes held below a quarter of min_free, want 2", n)
	}
	for _, got := range readAll(t, s) {
		if got.Seq <= stored[2].Seq {
			t.Errorf("deleted seq %d is read again", got.Seq)
		}
	}

	// Room again: the held deletes and new appends are written.
	free.Store(1 << 40)
	m = testMsg(103)
	if err := s.Append(context.Background(), m); err != nil || m.Seq == 0 {
		t.Fatalf("append with room again: %v", err)
	}
	waitFor(t, func() bool { return held() == 0 }, "the held deletes")
	if got := seqs(readAll(t, s)); len(got) != 8 || got[0] != stored[3].Seq || got[7] != m.Seq {
		t.Errorf("stored %v, want seqs %d..%d and %d", got, stored[3].Seq, stored[9].Seq, m.Seq)
	}
	s.Close()

	// Open refuses below a quarter, and leaves the store as it was.
	free.Store(min/4 - 1)
	o.Dir = s.opts.Dir
	if _, err := Open(o); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("open below a quarter of min_free: %v", err)
	}
	free.Store(1 << 40)
	s2 := openT(t, o)
	if got := s2.Stats().Messages; got != 8 {
		t.Errorf("reopened with %d messages, want 8", got)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

const diskFullEnv = "EDGEWAY_STORE_DISKFULL_DIR"

// TestDiskFullTmpfs fills a real filesystem (a 96MB tmpfs in a mount
// namespace of a child process) under a store. Without the free-space
// check the child dies of SIGBUS inside badger, which shows the test
// reaches the failure; with it, every append on the full filesystem gets
// ErrDiskFull, the process lives, and once the filler is removed appends
// are stored and all acknowledged messages read back.
func TestDiskFullTmpfs(t *testing.T) {
	for _, guard := range []bool{false, true} {
		t.Run(fmt.Sprintf("guard=%v", guard), func(t *testing.T) {
			cmd := childCommand(t, "-test.run=^TestDiskFullChild$", "-test.count=1", "-test.v", "-test.timeout=2m")
			cmd.Env = append(os.Environ(), diskFullEnv+"="+t.TempDir(), fmt.Sprintf("%s_GUARD=%v", diskFullEnv, guard))
			// A mount namespace through util-linux's unshare, not clone
			// flags: under qemu-user (the 32-bit ARM run) the emulator
			// cannot clone into namespaces. Not root: a user namespace too.
			unshare, err := exec.LookPath("unshare")
			if err != nil {
				t.Fatalf("unshare (util-linux) is needed: %v", err)
			}
			args := []string{"--mount"}
			if os.Geteuid() != 0 {
				args = append(args, "--user", "--map-root-user")
			}
			env := cmd.Env
			cmd = exec.Command(unshare, append(append(args, "--"), append([]string{cmd.Path}, cmd.Args[1:]...)...)...)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			switch {
			case !guard:
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGBUS && !strings.Contains(string(out), "SIGBUS") {
					t.Fatalf("without the check the child was expected to die of SIGBUS; it ended with %v:\n%s", err, tail(out))
				}
				if !strings.Contains(string(out), "filled") {
					t.Fatalf("the child did not get as far as filling the filesystem:\n%s", tail(out))
				}
			case err != nil:
				t.Fatalf("child: %v\n%s", err, tail(out))
			default:
				if !strings.Contains(string(out), "--- PASS: TestDiskFullChild") {
					t.Fatalf("child did not pass:\n%s", tail(out))
				}
				t.Logf("child:\n%s", tail(out))
			}
		})
	}
}

func tail(b []byte) string {
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// TestDiskFullChild runs in its own mount namespace (TestDiskFullTmpfs).
func TestDiskFullChild(t *testing.T) {
	base := os.Getenv(diskFullEnv)
	if base == "" {
		t.Skip("run by TestDiskFullTmpfs")
	}
	guard := os.Getenv(diskFullEnv+"_GUARD") == "true"
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("making mounts private: %v", err)
	}
	mnt := filepath.Join(base, "fs")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=96m"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) }) // after the store's Close

	o := Options{Dir: filepath.Join(mnt, "q")}
	if !guard {
		o.MinFreeBytes = -1
	}
	s := openT(t, o)
	acked := appendN(t, s, 0, 200) // 200 messages in the memtable, synced

	// Another writer takes all but 256KB.
	free, _ := diskFree(mnt)
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-256<<10); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	f.Close()
	free, _ = diskFree(mnt)
	fmt.Printf("filled: %d bytes free\n", free)

	// Devices keep sending: 5 000 messages of 1KB+.
	refused := 0
	for i := range 5000 {
		m := testMsg(1000 + i)
		m.Payload = make([]byte, 1100)
		err := s.Append(context.Background(), m)
		switch {
		case err == nil:
			acked = append(acked, m)
		case errors.Is(err, ErrDiskFull):
			refused++
		default:
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if refused != 5000 {
		t.Errorf("%d of 5000 appends refused on a full filesystem, want all", refused)
	}
	if st := s.Stats(); st.RejectedDiskFull != uint64(refused) {
		t.Errorf("rejected_disk_full %d, want %d", st.RejectedDiskFull, refused)
	}

	// The other writer's file goes: the store takes messages again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	more := appendN(t, s, 10000, 100)
	acked = append(acked, more...)
	got := readAll(t, s)
	if len(got) != len(acked) {
		t.Fatalf("read %d messages, %d were acknowledged", len(got), len(acked))
	}
	for i := range got {
		if got[i].Seq != acked[i].Seq || got[i].Topic != acked[i].Topic {
			t.Fatalf("message %d: seq %d %q, want %d %q", i, got[i].Seq, got[i].Topic, acked[i].Seq, acked[i].Topic)
		}
	}
	fmt.Printf("refused %d on the full filesystem; %d acknowledged, all read back\n", refused, len(acked))
}
