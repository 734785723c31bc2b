package benchkit

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clkTck is USER_HZ; 100 on every Linux the agent targets.
const clkTck = 100

// ProcStat is one reading of a process from /proc.
type ProcStat struct {
	RSS     int64   // bytes
	CPUSecs float64 // user + system, seconds
	Threads int
}

// ReadProc reads /proc/<pid>/status and /proc/<pid>/stat.
func ReadProc(pid int) (ProcStat, error) {
	var s ProcStat
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("benchkit/proc: %w", err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			s.RSS = kb * 1024
		case "Threads:":
			s.Threads, _ = strconv.Atoi(f[1])
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("benchkit/proc: %w", err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("benchkit/proc: bad stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("benchkit/proc: short stat %q", b)
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14: utime
	stt, _ := strconv.ParseFloat(f[12], 64)
	s.CPUSecs = (ut + stt) / clkTck
	return s, nil
}
