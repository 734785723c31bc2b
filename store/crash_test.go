package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashEnv = "EDGEWAY_STORE_CRASH_DIR"

// TestCrashChild is the child of TestCrashNothingAckedLost: it appends
// from 16 goroutines and prints "ack <seq>" the moment each Append has
// returned, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("run by TestCrashNothingAckedLost")
	}
	s, err := Open(Options{Dir: dir, Sync: SyncMode(os.Getenv(crashEnv + "_SYNC")),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriterSize(os.Stdout, 64)
	for w := range 16 {
		go func() {
			for i := 0; ; i++ {
				m := testMsg(w*1_000_000 + i)
				if err := s.Append(context.Background(), m); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				// Written through before the next Append: the parent sees
				// exactly what was acknowledged.
				fmt.Fprintf(out, "ack %d\n", m.Seq)
				if err := out.Flush(); err != nil {
					os.Exit(3) // the parent is gone
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(2 * time.Minute) // the parent kills us long before
	os.Exit(4)
}

// childCommand runs this test binary, under qemu-user if the kernel cannot
// execute it (the 32-bit ARM run on an amd64 host).
func childCommand(t *testing.T, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	if runtime.GOARCH == "arm" {
		if q, err := exec.LookPath("qemu-arm-static"); err == nil {
			if f, err := os.Open("/proc/sys/fs/binfmt_misc/qemu-arm"); err == nil {
				f.Close()
			} else {
				cmd = exec.Command(q, append([]string{exe}, args...)...)
			}
		}
	}
	return cmd
}

// TestCrashNothingAckedLost is the store-level proof of "nothing
// acknowledged is lost": a child appends and reports each acknowledged
// seq, it is SIGKILLed mid-stream (twice), and the reopened store must
// hold every acknowledged seq. SIGKILL keeps the page cache, so this
// proves the write path, not the behaviour on power loss (see README.md).
func TestCrashNothingAckedLost(t *testing.T) {
	kills := 2
	acksBeforeKill := 3000
	if testing.Short() {
		acksBeforeKill = 300
	}
	for _, mode := range []SyncMode{SyncBatch, SyncAlways} {
		t.Run(string(mode), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "q")
			acked := make(map[uint64]bool)
			var prevMax uint64
			for k := range kills {
				cmd := childCommand(t, "-test.run=^TestCrashChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashEnv+"_SYNC="+string(mode))
				var stderr strings.Builder
				cmd.Stderr = &stderr
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(stdout)
				n, killed := 0, false
				var minSeq, maxSeq uint64
				for sc.Scan() {
					line := sc.Text()
					v, ok := strings.CutPrefix(line, "ack ")
					if !ok {
						continue
					}
					seq, err := strconv.ParseUint(v, 10, 64)
					if err != nil {
						t.Fatalf("child printed %q", line)
					}
					if acked[seq] {
						t.Fatalf("seq %d acknowledged twice", seq)
					}
					acked[seq] = true
					if minSeq == 0 || seq < minSeq {
						minSeq = seq
					}
					maxSeq = max(maxSeq, seq)
					if n++; n == acksBeforeKill && !killed {
						// Mid-stream: 16 appends are in flight.
						if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
							t.Fatal(err)
						}
						killed = true
					}
				}
				_, _ = io.Copy(io.Discard, stdout)
				err = cmd.Wait()
				if !killed {
					t.Fatalf("child ended after %d acks: %v\n%s", n, err, stderr.String())
				}
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("child: %v", err)
				}
				if minSeq <= prevMax {
					t.Fatalf("kill %d: seqs restarted at %d, below %d acknowledged before", k, minSeq, prevMax)
				}
				prevMax = maxSeq
				t.Logf("kill %d: %d acknowledged (seqs %d..%d)", k, n, minSeq, maxSeq)
			}

			s := openT(t, Options{Dir: dir})
			stored := make(map[uint64]bool)
			for _, m := range readAll(t, s) {
				stored[m.Seq] = true
			}
			missing := 0
			for seq := range acked {
				if !stored[seq] {
					missing++
					if missing < 10 {
						t.Errorf("acknowledged seq %d was lost", seq)
					}
				}
			}
			if missing > 0 {
				t.Fatalf("%d of %d acknowledged messages lost", missing, len(acked))
			}
			t.Logf("all %d acknowledged messages survived; %d more were written but not yet acknowledged",
				len(acked), len(stored)-len(acked))
			if st := s.Stats(); st.Messages != int64(len(stored)) {
				t.Fatalf("stats count %d, stored %d", st.Messages, len(stored))
			}
		})
	}
}
