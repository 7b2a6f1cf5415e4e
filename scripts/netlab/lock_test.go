package netlab

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// tryLock is what another process would do: its own open of the lock file.
func tryLock(t *testing.T) bool {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

func TestLabLockKeepsOtherProcessesOut(t *testing.T) {
	Require(t)
	if err := acquireLabLock(t.Logf); err != nil {
		t.Fatal(err)
	}
	if err := acquireLabLock(t.Logf); err != nil { // a nested lab shares it
		t.Fatal(err)
	}
	if tryLock(t) {
		t.Fatal("another process could take the lab lock while a lab exists")
	}
	releaseLabLock()
	if tryLock(t) {
		t.Fatal("the lock was released while a nested lab still exists")
	}
	releaseLabLock()
	if !tryLock(t) {
		t.Fatal("the lab lock is still held after the last lab went")
	}
}
