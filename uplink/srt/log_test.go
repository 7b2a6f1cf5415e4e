package srt

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// By default libsrt must not print anything itself: its default sink is
// stderr, and refusals and bad passphrases make it log errors.
func TestLibsrtSilentByDefault(t *testing.T) {
	SetLogger(nil, 0)
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(f.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	func() {
		defer syscall.Dup3(saved, 2, 0)
		l, err := Listen("127.0.0.1:0", ListenConfig{Authorize: func(sid string, _ net.Addr) (string, error) {
			if sid == "no" {
				return "", &RejectError{Code: RejectForbidden}
			}
			return "a-good-passphrase", nil
		}})
		if err != nil {
			return
		}
		defer l.Close()
		Dial(context.Background(), l.Addr().String(), Options{StreamID: "no"})
		Dial(context.Background(), l.Addr().String(), Options{Passphrase: "a-bad-passphrase"})
		Dial(context.Background(), l.Addr().String(), Options{})
		time.Sleep(100 * time.Millisecond)
	}()
	syscall.Close(saved)
	b, _ := os.ReadFile(f.Name())
	if len(b) > 0 {
		t.Errorf("libsrt wrote to stderr:\n%s", b)
	}
}

func TestSetLoggerRoutesAndRateLimits(t *testing.T) {
	// SetLogger before libsrt starts must hold across srt_startup.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	var out logBuf
	SetLogger(out.logger(), slog.LevelInfo)
	defer SetLogger(nil, 0)
	l := listen(t, ListenConfig{
		Options: Options{Passphrase: "listener-secret"},
		Authorize: func(sid string, _ net.Addr) (string, error) {
			if sid == "x" {
				return "", &RejectError{Code: RejectNotFound}
			}
			return "listener-secret", nil
		},
	})
	Dial(context.Background(), l.Addr().String(), Options{StreamID: "x"})
	Dial(context.Background(), l.Addr().String(), Options{StreamID: "y"}) // no passphrase
	if !waitFor(time.Second, func() bool { return strings.Contains(out.String(), "thread=SRT:RcvQ") }) {
		t.Errorf("no libsrt line with its thread name in the log:\n%s", out.String())
	}
	for _, noise := range []string{"no pending connection", "NOT SUBSCRIBED"} {
		if strings.Contains(out.String(), noise) {
			t.Errorf("libsrt noise %q leaked into the log", noise)
		}
	}

	// The bucket: a burst of logBurst passes, the rest is counted and
	// reported with the next line that passes.
	logState.mu.Lock()
	logState.tokens, logState.last, logState.dropped = logBurst, time.Time{}, 0
	logState.mu.Unlock()
	now := time.Now()
	passed := 0
	for i := 0; i < 300; i++ {
		if ok, _ := rateLimit(now); ok {
			passed++
		}
	}
	if passed != int(logBurst) {
		t.Errorf("burst: %d lines passed, want %d", passed, int(logBurst))
	}
	ok, dropped := rateLimit(now.Add(time.Second))
	if !ok || dropped != 300-int(logBurst) {
		t.Errorf("after 1s: ok=%v dropped=%d, want true %d", ok, dropped, 300-int(logBurst))
	}
}
