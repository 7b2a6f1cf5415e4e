package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Labs are serialised across processes. go test runs several packages'
// test binaries at once, and each lab test drives real encoders and a
// switcher on a 2-core machine: two at once starve each other's feeds past
// the merge's hold and fill holes that no code caused. A process holds the
// lock while it has any lab (nested labs in one process share it).
var machineLock struct {
	sync.Mutex
	holders int
	file    *os.File
}

// acquireLabLock takes the machine-wide lab lock, logging while it waits.
func acquireLabLock(logf func(string, ...any)) error {
	machineLock.Lock()
	defer machineLock.Unlock()
	if machineLock.holders > 0 {
		machineLock.holders++
		return nil
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("lab lock: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lab lock: %w", err)
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		logf("netlab: another process has a lab; waiting for it")
		start := time.Now()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return fmt.Errorf("lab lock: %w", err)
		}
		logf("netlab: lab lock taken after %v", time.Since(start).Round(time.Millisecond))
	}
	machineLock.file, machineLock.holders = f, 1
	return nil
}

// releaseLabLock gives the lock back when the process's last lab is gone.
func releaseLabLock() {
	machineLock.Lock()
	defer machineLock.Unlock()
	if machineLock.holders == 0 {
		return
	}
	machineLock.holders--
	if machineLock.holders == 0 {
		machineLock.file.Close() // closing the descriptor releases the flock
		machineLock.file = nil
	}
}
