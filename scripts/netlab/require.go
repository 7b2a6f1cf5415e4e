package netlab

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

var (
	requireOnce sync.Once
	missingMsg  string
)

// Require skips the test, with a message naming what is missing, unless this
// machine can run a lab: root, iproute2's ip, nftables' nft, and network
// namespaces. With CI=true in the environment a missing prerequisite fails the
// test instead: CI must not pass by skipping the network tests.
func Require(t testing.TB) {
	t.Helper()
	requireOnce.Do(func() { missingMsg = missing() })
	if missingMsg == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("netlab: cannot build the network lab: %s (CI=true: this is a failure, not a skip)", missingMsg)
	}
	t.Skipf("netlab: skipping, cannot build the network lab: %s", missingMsg)
}

func missing() string {
	var miss []string
	if os.Geteuid() != 0 {
		miss = append(miss, "not root (network namespaces need CAP_SYS_ADMIN; run the tests as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		miss = append(miss, "no `ip` in PATH (apt-get install iproute2)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		miss = append(miss, "no `nft` in PATH (apt-get install nftables)")
	}
	if len(miss) == 0 {
		if err := probeNetns(); err != nil {
			miss = append(miss, "network namespaces unsupported: unshare(CLONE_NEWNET): "+err.Error())
		}
	}
	return strings.Join(miss, "; ")
}

// probeNetns creates a throwaway network namespace on a locked thread. The
// thread is never unlocked, so the runtime discards it with its namespace.
func probeNetns() error {
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- unix.Unshare(unix.CLONE_NEWNET)
	}()
	return <-errc
}
