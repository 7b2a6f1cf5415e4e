package switcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"tandem/scripts/e2e"
	"testing"
	"time"

	"tandem/uplink/switcher"
	"tandem/uplink/testpub"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(e2e.LogWriter(t), nil))
}

// startSwitcher runs an in-process switcher on loopback with free ports.
func startSwitcher(t testing.TB, mutate func(*switcher.Config)) *switcher.Server {
	t.Helper()
	return startSwitcherLogging(t, mutate, testLogger(t))
}

// startSwitcherLogging is startSwitcher with the switcher's log going to log.
func startSwitcherLogging(t testing.TB, mutate func(*switcher.Config), log *slog.Logger) *switcher.Server {
	t.Helper()
	cfg := switcher.DefaultConfig()
	cfg.SRTAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.StateDir = t.TempDir()
	cfg.RTMPAddr = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := switcher.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		srv.Close()
	})
	return srv
}

// runPublisher runs an in-process test publisher until the test ends.
func runPublisher(t testing.TB, cfg testpub.Config) *testpub.Publisher {
	p, _ := runStoppablePublisher(t, cfg)
	return p
}

// runStoppablePublisher is runPublisher with a function that stops it early
// (as if its process died: its connections close).
func runStoppablePublisher(t testing.TB, cfg testpub.Config) (*testpub.Publisher, func()) {
	t.Helper()
	e2e.Need(t, "ffmpeg")
	cfg.Log = testLogger(t).With("component", "testpub")
	p, err := testpub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("publisher: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// toneSource runs ffmpeg encoding a sine to AAC and sending it to url in
// the given muxer format (mpegts over SRT, flv over RTMP, adts to Icecast),
// like a third-party encoder; it is killed when the test ends.
func toneSource(t *testing.T, url string, freq int, format ...string) *exec.Cmd {
	t.Helper()
	return lavfiSourceAt(t, url, fmt.Sprintf("sine=frequency=%d:sample_rate=48000", freq), "128k", format...)
}

// toneSourceAt is toneSource at another AAC bitrate.
func toneSourceAt(t *testing.T, url string, freq int, bitrate string, format ...string) *exec.Cmd {
	t.Helper()
	return lavfiSourceAt(t, url, fmt.Sprintf("sine=frequency=%d:sample_rate=48000", freq), bitrate, format...)
}

// lavfiSource is toneSource for any lavfi audio graph.
func lavfiSource(t *testing.T, url, graph string, format ...string) *exec.Cmd {
	t.Helper()
	return lavfiSourceAt(t, url, graph, "128k", format...)
}

func lavfiSourceAt(t *testing.T, url, graph, bitrate string, format ...string) *exec.Cmd {
	t.Helper()
	ffmpeg := e2e.Need(t, "ffmpeg")
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", graph, "-ac", "2",
		"-c:a", "aac", "-b:a", bitrate, "-f"}
	args = append(append(args, format...), url)
	cmd := exec.Command(ffmpeg, args...)
	cmd.Stderr = e2e.LogWriter(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// hearHandover listens to url, kills the primary publisher two seconds in,
// and checks the listener stayed connected and heard the primary's 440 Hz
// tone, then the fallback's 660 Hz, decoding cleanly throughout. The
// stream's other outputs, an SRT pull and the HLS playlist, must decode
// with no error across the same kill.
func hearHandover(t *testing.T, srv *switcher.Server, stream, url string, primary *exec.Cmd) {
	t.Helper()
	ffmpeg := e2e.Need(t, "ffmpeg")
	l := e2e.Listen(t, url, nil)
	pulled := filepath.Join(t.TempDir(), "pull.ts")
	pull := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error",
		"-i", fmt.Sprintf("srt://%s?streamid=#!::r=%s,m=request&latency=120000", srv.SRTAddr(), stream),
		"-t", "5", "-c", "copy", "-f", "mpegts", pulled)
	var pullErr strings.Builder
	pull.Stderr = &pullErr
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	primary.Process.Signal(syscall.SIGKILL)
	time.Sleep(4 * time.Second)
	if err := pull.Wait(); err != nil {
		t.Errorf("ffmpeg pulling %s over SRT across the kill: %v: %s", stream, err, pullErr.String())
	} else if errs := decodeErrors(t, "-i", pulled); errs != "" {
		t.Errorf("the SRT pull across the kill does not decode cleanly:\n%.2000s", errs)
	}
	playlist := "http://" + srv.HTTPAddr().String() + "/" + stream + "/index.m3u8"
	if errs := decodeErrors(t, "-i", playlist, "-t", "6"); errs != "" {
		t.Errorf("HLS across the kill does not decode cleanly:\n%.2000s", errs)
	}
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatalf("listener dropped: %v", err)
	}
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	pcm, err := testpub.DecodeToMono(context.Background(), e2e.Need(t, "ffmpeg"), all, 48000)
	if err != nil {
		t.Fatalf("output across the failover does not decode cleanly: %v", err)
	}
	a, b := toneShare(pcm, 440, 660)
	t.Logf("output: %d blocks of the primary's tone, %d of the fallback's", a, b)
	if a < 150 || b < 250 {
		t.Errorf("want the primary's tone, then the fallback's: %d / %d", a, b)
	}
}
