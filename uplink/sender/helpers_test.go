package sender_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/sender"
)

// testLogger logs to the test log with TANDEM_TEST_LOG set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(e2e.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var stereo48k = media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}

var (
	toneOnce   sync.Once
	toneFrames [][]byte
	toneErr    error
)

// tone returns the raw AAC frames of 10 s of a 440 Hz tone, 48 kHz stereo,
// 128 kb/s, encoded once per test run by ffmpeg.
func tone(t testing.TB) [][]byte {
	t.Helper()
	ffmpeg := e2e.Need(t, "ffmpeg")
	toneOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tandem-sender-tone-")
		if err != nil {
			toneErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "tone.aac")
		cmd := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10",
			"-ac", "2", "-c:a", "aac", "-b:a", "128k", "-f", "adts", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			toneErr = fmt.Errorf("ffmpeg: %v: %s", err, b)
			return
		}
		data, err := os.ReadFile(out)
		if err != nil {
			toneErr = err
			return
		}
		rd := adts.NewReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			_, payload, err := rd.ReadFrame()
			if err != nil {
				break
			}
			toneFrames = append(toneFrames, append([]byte(nil), payload...))
		}
		if len(toneFrames) < 400 {
			toneErr = fmt.Errorf("tone has only %d frames", len(toneFrames))
		}
	})
	if toneErr != nil {
		t.Fatal(toneErr)
	}
	return toneFrames
}

// feed sends the tone to every sender in real time, frame i stamped with
// the capture clock's PTS of frame base+i, until ctx ends. It returns when
// ctx ends.
func feed(ctx context.Context, frames [][]byte, base int64, senders ...*sender.Sender) {
	start := time.Now()
	dur := time.Duration(stereo48k.FrameSamples()) * time.Second / time.Duration(stereo48k.SampleRate)
	for i := int64(0); ; i++ {
		due := start.Add(time.Duration(i) * dur)
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		pts := stereo48k.FramePTS(base+i) & (1<<33 - 1)
		f := media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: frames[int(i)%len(frames)]}
		for _, s := range senders {
			s.Send(f)
		}
	}
}

// events records a sender's events.
type events struct {
	mu  sync.Mutex
	evs []sender.Event
}

func (e *events) add(ev sender.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *events) list() []sender.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]sender.Event(nil), e.evs...)
}

// after returns the events of kind at or after t.
func (e *events) after(kind string, t time.Time) []sender.Event {
	var out []sender.Event
	for _, ev := range e.list() {
		if ev.Kind == kind && !ev.Time.Before(t) {
			out = append(out, ev)
		}
	}
	return out
}

func (e *events) count(kind string) int { return len(e.after(kind, time.Time{})) }

func (e *events) String() string {
	var b strings.Builder
	for _, ev := range e.list() {
		fmt.Fprintf(&b, "\n  %s %s", ev.Time.Format("15:04:05.000"), ev)
	}
	return b.String()
}

// run starts s.Run and stops it (checking it returns nil, promptly) at
// cleanup.
// runConnected makes a sender of cfg, runs it and waits until it is
// connected.
func runConnected(t testing.TB, cfg sender.Config) *sender.Sender {
	t.Helper()
	s, err := sender.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	if !e2e.WaitFor(5*time.Second, func() bool { return s.Stats().State == sender.StateConnected }) {
		t.Fatalf("not connected: %+v", s.Stats())
	}
	return s
}

func run(t testing.TB, s *sender.Sender) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5 s of cancel")
		}
		if st := s.Stats(); st.State != sender.StateStopped {
			t.Errorf("state after Run: %q", st.State)
		}
	})
}
