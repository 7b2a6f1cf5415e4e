package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcCPU is a process's user+system CPU time from /proc (0 if it is gone).
func ProcCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	// /proc counts in USER_HZ, 100 on Linux.
	return time.Duration(ut+st) * time.Second / 100
}

// ProcRSS is a process's resident memory in bytes (0 if it is gone).
func ProcRSS(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n * 1024
		}
	}
	return 0
}
