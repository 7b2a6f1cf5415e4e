// Package testenv holds what tests need from the machine they run on: peer
// programs, and timing bounds that allow for an overloaded machine. It
// imports nothing of ours, so any package's internal tests can use it.
package testenv

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Need returns the path of a peer program. Outside CI a missing one skips
// the test; under CI=true it is a failure.
func Need(t testing.TB, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (scripts/deps.sh installs it): %v", prog, err)
		}
		t.Skipf("needs %s in PATH (run make deps)", prog)
	}
	return p
}

// Slack scales a timing tolerance when the machine is overloaded (other
// test binaries running in parallel): by load/(2·CPUs), at most 4, once
// the load average exceeds three times the number of CPUs. It logs when it
// widens a bound, so a pass under load says so.
func Slack(t testing.TB, d time.Duration) time.Duration {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return d
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return d
	}
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return d
	}
	k := load / float64(2*runtime.NumCPU())
	if k <= 1.5 {
		return d
	}
	k = min(k, 4)
	t.Logf("load average %.1f on %d CPUs: timing bound %v widened to %v", load, runtime.NumCPU(), d, time.Duration(float64(d)*k))
	return time.Duration(float64(d) * k)
}
