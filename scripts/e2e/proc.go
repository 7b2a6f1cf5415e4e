package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ClockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux we run). The kernel scales them so that their sum is
// the task's exact run time, but rounds to a tick: over a window of w
// seconds a process's figure is exact to ±1 tick, i.e. ±(1/w)% of a core.
const ClockTick = 10 * time.Millisecond

// ProcStat is one read of /proc/<pid>/stat.
type ProcStat struct {
	PPID int
	CPU  time.Duration // utime + stime of every thread, live or exited
}

// ReadProcStat reads a process's parent and CPU time.
func ReadProcStat(pid int) (ProcStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, err
	}
	s := string(data)
	// The command name is in parentheses and may contain spaces.
	end := strings.LastIndexByte(s, ')')
	if end < 0 || end+2 > len(s) {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: no command name in %q", pid, s)
	}
	fs := strings.Fields(s[end+2:])
	if len(fs) < 13 {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(fs))
	}
	ppid, err1 := strconv.Atoi(fs[1])
	ut, err2 := strconv.ParseInt(fs[11], 10, 64)
	st, err3 := strconv.ParseInt(fs[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: unreadable ppid/utime/stime in %q", pid, s)
	}
	return ProcStat{PPID: ppid, CPU: time.Duration(ut+st) * ClockTick}, nil
}

// ProcCPU is a process's user+system CPU time (0 if it is gone).
func ProcCPU(pid int) time.Duration {
	st, err := ReadProcStat(pid)
	if err != nil {
		return 0
	}
	return st.CPU
}

// ChildrenOf lists the pids whose parent is pid, sorted.
func ChildrenOf(pid int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		c, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, err := ReadProcStat(c); err == nil && st.PPID == pid {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// ReadProcRSS is a process's resident set size in bytes.
func ReadProcRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			fs := strings.Fields(v)
			if len(fs) == 0 {
				break
			}
			n, err := strconv.ParseInt(fs[0], 10, 64)
			return n * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// ProcRSS is ReadProcRSS, 0 if the process is gone.
func ProcRSS(pid int) int64 {
	n, _ := ReadProcRSS(pid)
	return n
}
