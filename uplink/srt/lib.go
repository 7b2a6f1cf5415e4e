package srt

/*
#cgo pkg-config: srt
#include <stdlib.h>
#include "csrt.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// MaxMessageSize is the largest message WriteMessage accepts: the live-mode
// payload size (SRTO_PAYLOADSIZE), 7 MPEG-TS packets of 188 bytes.
const MaxMessageSize = 1316

// ReadBufferSize is a receive buffer size that always holds one message.
const ReadBufferSize = 1500

// gate bounds how many goroutines are inside a libsrt call at once.
//
// Every call this package makes is non-blocking in libsrt's sense, but
// libsrt serialises many of them on internal locks (its global control
// lock among them). While its GC thread reaps closed sockets a "non-
// blocking" srt_recvmsg2 was measured stalling 250ms; 200 readers then
// each held an OS thread inside C and the process grew 160 Go threads. A
// goroutine waiting at the gate parks on a channel and holds no thread, so
// the threads the Go side can have in libsrt are bounded by the gate size.
// Exempt: the poller's srt_epoll_uwait and its drains (one goroutine, so
// one thread at most), calls made from
// libsrt's callbacks (they run on libsrt's threads; making them wait for a
// slot could deadlock against a slot holder waiting on the lock the
// callback's thread holds), srt_cleanup.
var gate = make(chan struct{}, max(4, runtime.GOMAXPROCS(0)))

func enter() { gate <- struct{}{} }
func leave() { <-gate }

// lib is the package-level libsrt state: startup, the poller and the count of
// sockets this package holds open. srt_cleanup is only called by Cleanup, and
// only when nothing is open (libsrt's srt_cleanup hangs otherwise).
var lib struct {
	mu      sync.Mutex
	started bool
	broken  error // a previous Cleanup did not finish; libsrt is unusable
	open    int   // sockets created and not yet srt_close'd by us
	poll    *poller
}

// acquire makes sure libsrt is started and the poller runs, and counts one
// socket about to be created. Every successful acquire is paired with one
// release after srt_close.
func acquire() (*poller, error) {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.broken != nil {
		return nil, lib.broken
	}
	if !lib.started {
		applyLogConfig() // before startup: libsrt must never print to stderr
		var e C.tsrt_err
		if C.tsrt_startup(&e) == -1 {
			return nil, errFrom("startup", &e)
		}
		p, err := startPoller()
		if err != nil {
			// Nothing is open: cleanup is safe here.
			C.tsrt_cleanup(nil)
			return nil, err
		}
		lib.poll = p
		lib.started = true
	}
	lib.open++
	return lib.poll, nil
}

func release() {
	lib.mu.Lock()
	lib.open--
	lib.mu.Unlock()
}

// OpenSockets reports how many libsrt sockets this package holds open
// (listeners, connections and sockets being dialled). For tests and metrics.
func OpenSockets() int {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	return lib.open
}

// ErrBusy is returned by Cleanup while sockets are still open.
var ErrBusy = errors.New("srt: sockets still open")

// Cleanup stops the poller and calls srt_cleanup, but only if no socket of
// this package is open (else it returns ErrBusy and changes nothing: libsrt's
// srt_cleanup hangs while a socket is open or a call is blocked). It never
// hangs: if srt_cleanup does not return before ctx is done, Cleanup returns
// ctx's error, leaves srt_cleanup running on its own thread and the package
// refuses new sockets from then on. After a successful Cleanup the next Dial
// or Listen starts libsrt again.
//
// Programs do not need to call Cleanup; it exists for tests and for an
// orderly shutdown.
func Cleanup(ctx context.Context) error {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.broken != nil {
		return lib.broken
	}
	if !lib.started {
		return nil
	}
	if lib.open > 0 {
		return fmt.Errorf("srt cleanup: %w (%d)", ErrBusy, lib.open)
	}
	lib.poll.stop()
	lib.poll = nil
	done := make(chan error, 1)
	go func() {
		var e C.tsrt_err
		if C.tsrt_cleanup(&e) == -1 {
			done <- errFrom("cleanup", &e)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		lib.started = false
		return err
	case <-ctx.Done():
		lib.broken = fmt.Errorf("srt: srt_cleanup did not return, library unusable: %w", ctx.Err())
		return fmt.Errorf("srt cleanup: %w", ctx.Err())
	}
}

// cString copies s into C memory; the caller frees it with C.free.
func cString(s string) (*C.char, C.int) {
	return C.CString(s), C.int(len(s))
}

func freeC(p *C.char) { C.free(unsafe.Pointer(p)) }

func goText(e *C.tsrt_err) string {
	return C.GoString(&e.text[0])
}
