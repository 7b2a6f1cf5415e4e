package srt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/scripts/logbuf"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// Every test closes what it opened: nothing may be left, and the
	// package must shut down without hanging.
	if n := OpenSockets(); n != 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d srt sockets still open after the tests\n", n)
		code = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := Cleanup(ctx); err != nil && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: Cleanup: %v\n", err)
		code = 1
	}
	cancel()
	os.Exit(code)
}

// logBuf is a concurrency-safe log sink.
type logBuf struct{ logbuf.Buffer }

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

func listen(t testing.TB, cfg ListenConfig) *Listener {
	t.Helper()
	l, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t testing.TB, addr string, opt Options) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, opt)
	if err != nil {
		t.Fatalf("Dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acceptOne accepts one connection in the background.
func acceptOne(t testing.TB, l *Listener) <-chan *Conn {
	t.Helper()
	ch := make(chan *Conn, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := l.Accept(ctx)
		if err != nil {
			t.Errorf("Accept: %v", err)
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func getConn(t testing.TB, ch <-chan *Conn) *Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("accept failed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
	return nil
}

// pair returns a connected (caller, accepted) pair on a fresh listener.
func pair(t testing.TB, cfg ListenConfig, opt Options) (*Conn, *Conn) {
	t.Helper()
	l := listen(t, cfg)
	ch := acceptOne(t, l)
	c := dial(t, l.Addr().String(), opt)
	return c, getConn(t, ch)
}

// message i: 8-byte sequence number, then a pattern derived from it.
func message(i, size int) []byte {
	if size < 8 {
		size = 8
	}
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, uint64(i))
	for j := 8; j < size; j++ {
		b[j] = byte(i*7 + j)
	}
	return b
}

func messageSize(i int) int { return 8 + (i*37)%(MaxMessageSize-7) }

func checkMessage(b []byte, i int) error {
	want := message(i, messageSize(i))
	if !bytes.Equal(b, want) {
		got := -1
		if len(b) >= 8 {
			got = int(binary.BigEndian.Uint64(b))
		}
		return fmt.Errorf("message %d: got %d bytes (seq %d), want %d bytes", i, len(b), got, len(want))
	}
	return nil
}

// tool finds an interop binary; missing is a skip, or a failure when CI=true.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found and CI=true: install it (Debian: srt-tools / ffmpeg)", name)
		}
		t.Skipf("%s not installed (Debian: srt-tools / ffmpeg); skipping interop test", name)
	}
	return p
}

// threadCensus counts this process's OS threads: libsrt names its own
// ("SRT:RcvQ:w1", "SRT:SndQ:w1", "SRT:TsbPd", "SRT:GC", ...); the rest are
// Go runtime threads (Ms), including cgo callback threads.
func threadCensus(t testing.TB) (total, libsrt int, names map[string]int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc/self/task: %v", err)
	}
	names = make(map[string]int)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", e.Name(), "comm"))
		if err != nil {
			continue // thread exited
		}
		name := strings.TrimSpace(string(b))
		total++
		if strings.HasPrefix(name, "SRT:") {
			libsrt++
			// group "SRT:RcvQ:w17" as "SRT:RcvQ"
			if i := strings.LastIndex(name, ":"); i > 3 && strings.Count(name, ":") > 1 {
				name = name[:i]
			}
		}
		names[name]++
	}
	return total, libsrt, names
}
