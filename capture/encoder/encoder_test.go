package encoder_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/capture"
	"tandem/capture/encoder"
	"tandem/scripts/testenv"
	"tandem/uplink/adts"
	"tandem/uplink/media"
)

func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type stamped struct {
	media.Frame
	at   time.Time
	more bool
}

// sink collects an encoder's frames.
type sink struct {
	mu     sync.Mutex
	frames []stamped
}

func (s *sink) out(f media.Frame, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames = append(s.frames, stamped{f, time.Now(), more})
}

func (s *sink) get() []stamped {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stamped(nil), s.frames...)
}

// runEncoder runs e on a new subscription of c until stop.
func runEncoder(t *testing.T, c *capture.Capture, e *encoder.Encoder, s *sink) (stop func()) {
	blocks, unsub := c.Subscribe(128)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, blocks, s.out) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			unsub()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("encoder Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("encoder Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func startCapture(t *testing.T, src capture.Source) *capture.Capture {
	return startCaptureBlocks(t, src, 0)
}

// startCaptureBlocks is startCapture with blocks of blockFrames (0: the
// default).
func startCaptureBlocks(t *testing.T, src capture.Source, blockFrames int) *capture.Capture {
	c := capture.New(src, capture.Config{Log: testLog(t), BlockFrames: blockFrames})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c
}

// onGrid checks that PTS are on the frame grid, strictly increasing and
// consecutive except where gaps are allowed; it returns the gaps found.
func onGrid(t *testing.T, name string, cfg media.AudioConfig, frames []stamped) (gaps []int64) {
	t.Helper()
	for i, f := range frames {
		idx := cfg.FrameIndex(f.PTS)
		if cfg.FramePTS(idx) != f.PTS || f.DTS != f.PTS || !f.Key {
			t.Fatalf("%s: frame %d PTS %d is off the grid", name, i, f.PTS)
		}
		if i > 0 {
			prev := cfg.FrameIndex(frames[i-1].PTS)
			switch {
			case idx <= prev:
				t.Fatalf("%s: frame %d index %d after %d: duplicate or backwards", name, i, idx, prev)
			case idx != prev+1:
				gaps = append(gaps, idx-prev-1)
			}
		}
	}
	return gaps
}

// decode decodes ADTS frames (stamped with PTS) to mono floats.
func decode(t *testing.T, ffmpeg string, cfg media.AudioConfig, frames []stamped) []float64 {
	t.Helper()
	var stream []byte
	for _, f := range frames {
		var err error
		if stream, err = adts.AppendFrame(stream, cfg, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "aac", "-i", "pipe:0",
		"-ac", "1", "-f", "s16le", "pipe:1")
	cmd.Stdin = bytes.NewReader(stream)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("decoding: %v: %s", err, stderr.String())
	}
	raw := out.Bytes()
	pcm := make([]float64, len(raw)/2)
	for i := range pcm {
		pcm[i] = float64(int16(binary.LittleEndian.Uint16(raw[2*i:]))) / 32768
	}
	return pcm
}

// phases demodulates decoded audio in 10 ms blocks against the tone's
// exact reference, sin(2π·f·n/rate) at capture index n = first + j: a
// frame stamped with the right PTS gives phase 0, one frame off gives
// 2.4 rad at 440 Hz, 48 kHz (0.94 rad at 997 Hz, 44.1 kHz). The first four frames
// are skipped: the decoder starts without the previous frame's overlap,
// and a freshly started encoder's first frames are rough at low bitrates
// (measured: 0.35 rad in the first 10 ms at 48 kbit/s).
func phases(pcm []float64, sr int, freq float64, first int64) (ph, amp []float64) {
	n := sr / 100
	w := 2 * math.Pi * freq / float64(sr)
	for b := 4096/n + 1; (b+1)*n <= len(pcm); b++ {
		var i, q float64
		for k := 0; k < n; k++ {
			j := b*n + k
			arg := w * float64(first+int64(j))
			i += pcm[j] * math.Cos(arg)
			q += pcm[j] * math.Sin(arg)
		}
		ph = append(ph, math.Atan2(i, q))
		amp = append(amp, 2*math.Hypot(i, q)/float64(n))
	}
	return ph, amp
}

func maxAbs(v []float64) float64 {
	var m float64
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}

func meanAbs(v []float64) float64 {
	var m float64
	for _, x := range v {
		m += math.Abs(x)
	}
	return m / float64(len(v))
}

// phaseTolerance is AAC coding noise with margin: at 48 kbit/s a pure
// tone's 10 ms blocks wander by up to ~0.1–0.26 rad; a frame off is
// ≥ 0.94 rad in every block (the mean is checked too).
const phaseTolerance = 0.3

func TestTwoEncodersAlign(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	for _, tc := range []struct {
		f       capture.Format
		freq    float64
		bitrate [2]int
	}{
		{capture.Format{SampleRate: 48000, Channels: 2}, 440, [2]int{128000, 48000}},
		{capture.Format{SampleRate: 44100, Channels: 1}, 997, [2]int{96000, 48000}},
	} {
		t.Run(tc.f.String(), func(t *testing.T) {
			c := startCapture(t, capture.NewTone(tc.f, tc.freq, -12))
			var enc [2]*encoder.Encoder
			var sinks [2]*sink
			var stops [2]func()
			for i, name := range []string{"primary", "fallback"} {
				enc[i] = encoder.New(name, encoder.Profile{Codec: media.CodecAAC, Bitrate: tc.bitrate[i], Format: tc.f}, ffmpeg, testLog(t))
				sinks[i] = &sink{}
			}
			stops[0] = runEncoder(t, c, enc[0], sinks[0])
			time.Sleep(300 * time.Millisecond)
			stops[1] = runEncoder(t, c, enc[1], sinks[1])
			time.Sleep(2 * time.Second)
			stops[0]()
			stops[1]()
			cfg := enc[0].Config()
			if cfg != enc[1].Config() || cfg.SampleRate != tc.f.SampleRate || cfg.Channels != tc.f.Channels {
				t.Fatalf("configs %v and %v", cfg, enc[1].Config())
			}
			a, b := sinks[0].get(), sinks[1].get()
			for i, fr := range [][]stamped{a, b} {
				if g := onGrid(t, enc[i].Stats().State, cfg, fr); len(g) > 0 {
					t.Fatalf("feed %d has gaps %v", i, g)
				}
			}
			if len(a) < 50 || len(b) < 40 {
				t.Fatalf("%d and %d frames", len(a), len(b))
			}
			// b started 300 ms later: its frames are a's from b's first on.
			lead := cfg.FrameIndex(b[0].PTS) - cfg.FrameIndex(a[0].PTS)
			if lead < 10 {
				t.Fatalf("the late encoder starts only %d frames after the first", lead)
			}
			common := min(int64(len(a))-lead, int64(len(b)))
			for k := int64(0); k < common; k++ {
				if a[lead+k].PTS != b[k].PTS {
					t.Fatalf("overlap frame %d: PTS %d vs %d", k, a[lead+k].PTS, b[k].PTS)
				}
			}
			// Same audio at the same PTS: both decode to the reference
			// sine's phase at the capture index their PTS names.
			first := cfg.FrameIndex(b[0].PTS) * 1024
			pa, ampA := phases(decode(t, ffmpeg, cfg, a[lead:lead+common]), tc.f.SampleRate, tc.freq, first)
			pb, ampB := phases(decode(t, ffmpeg, cfg, b[:common]), tc.f.SampleRate, tc.freq, first)
			if maxAbs(pa) > phaseTolerance || maxAbs(pb) > phaseTolerance || meanAbs(pa) > 0.05 || meanAbs(pb) > 0.05 {
				t.Errorf("phase against the reference at the stamped index: up to %.3f and %.3f rad (mean %.3f, %.3f)",
					maxAbs(pa), maxAbs(pb), meanAbs(pa), meanAbs(pb))
			}
			want := math.Pow(10, -12.0/20)
			for _, amp := range [][]float64{ampA, ampB} {
				for _, x := range amp {
					if math.Abs(20*math.Log10(x/want)) > 1.5 {
						t.Fatalf("decoded amplitude %.4f, want %.4f", x, want)
					}
				}
			}
			t.Logf("started 300 ms apart (%d frames): %d overlapping frames, identical PTS; decoded phase vs the reference at the stamped index: max %.3f / %.3f rad, mean %.3f / %.3f rad",
				lead, common, maxAbs(pa), maxAbs(pb), meanAbs(pa), meanAbs(pb))
		})
	}
}

func TestRestartAfterSIGKILL(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	f := capture.Format{SampleRate: 48000, Channels: 2}
	c := startCapture(t, capture.NewTone(f, 440, -12))
	e := encoder.New("primary", encoder.Profile{Codec: media.CodecAAC, Bitrate: 96000, Format: f}, ffmpeg, testLog(t))
	other := encoder.New("fallback", encoder.Profile{Codec: media.CodecAAC, Bitrate: 48000, Format: f}, ffmpeg, testLog(t))
	s, so := &sink{}, &sink{}
	stop := runEncoder(t, c, e, s)
	stopOther := runEncoder(t, c, other, so)
	waitFor(t, 5*time.Second, "frames", func() bool { return e.Stats().Frames > 20 && other.Stats().Frames > 20 })
	time.Sleep(500 * time.Millisecond)
	st := e.Stats()
	otherPID := other.Stats().PID
	if st.State != encoder.StateRunning || st.PID == 0 {
		t.Fatalf("stats %+v", st)
	}
	killed := time.Now()
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "a new ffmpeg", func() bool { p := e.Stats().PID; return p != 0 && p != st.PID })
	newPID := time.Since(killed)
	waitFor(t, 3*time.Second, "frames after the restart", func() bool {
		fr := s.get()
		return fr[len(fr)-1].at.After(killed)
	})
	time.Sleep(time.Second)
	st = e.Stats()
	ost := other.Stats()
	stop()
	stopOther()
	frames := s.get()
	var firstAfter time.Duration
	var k int
	for k = range frames {
		if frames[k].at.After(killed) {
			firstAfter = frames[k].at.Sub(killed)
			break
		}
	}
	cfg := e.Config()
	gaps := onGrid(t, "restarted feed", cfg, frames)
	if len(gaps) != 1 {
		t.Fatalf("gaps %v, want exactly one (the restart)", gaps)
	}
	if newPID > testenv.Slack(t, time.Second) || firstAfter > testenv.Slack(t, time.Second) {
		t.Errorf("after the kill: new ffmpeg after %v, first frame after %v; want both within 1 s", newPID, firstAfter)
	}
	if st.Restarts != 1 || st.State != encoder.StateRunning || !strings.Contains(st.LastError, "killed") {
		t.Errorf("stats after the restart %+v", st)
	}
	// The other feed's encoder was not touched.
	if ost.Restarts != 0 || ost.PID != otherPID {
		t.Errorf("the other encoder was disturbed: %+v", ost)
	}
	if g := onGrid(t, "other feed", cfg, so.get()); len(g) != 0 {
		t.Errorf("the other feed has gaps %v", g)
	}
	// Same timeline: the restarted encoder's audio is still in phase with
	// the reference at the index its PTS names.
	after := frames[k:]
	pcm := decode(t, ffmpeg, cfg, after)
	ph, _ := phases(pcm, 48000, 440, cfg.FrameIndex(after[0].PTS)*1024)
	if maxAbs(ph) > phaseTolerance {
		t.Errorf("after the restart the tone is off its timeline by up to %.3f rad", maxAbs(ph))
	}
	t.Logf("SIGKILL: new ffmpeg after %v, first frame after %v; %d frames missing (lost with the killed process); phase after restart ≤ %.4f rad",
		newPID.Round(time.Millisecond), firstAfter.Round(time.Millisecond), gaps[0], maxAbs(ph))
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// feedBlocks sends hand-made blocks of a sine to an encoder.
func feedBlocks(f capture.Format, ch chan<- capture.Block, session string, from, to int64, frames int) {
	for idx := from; idx < to; idx += int64(frames) {
		s := make([]int16, frames*f.Channels)
		for i := 0; i < frames; i++ {
			v := int16(8000 * math.Sin(2*math.Pi*440*float64(idx+int64(i))/float64(f.SampleRate)))
			for c := 0; c < f.Channels; c++ {
				s[i*f.Channels+c] = v
			}
		}
		ch <- capture.Block{Index: idx, Samples: s, Format: f, Session: session}
	}
}

func TestGapsPaddedAndBlocksClosed(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	f := capture.Format{SampleRate: 48000, Channels: 2}
	e := encoder.New("primary", encoder.Profile{Codec: media.CodecAAC, Bitrate: 64000, Format: f}, ffmpeg, testLog(t))
	blocks := make(chan capture.Block, 1000)
	// Blocks of 480 frames, starting off the 1024 grid, with a hole of
	// 3 blocks (a lagging subscription): the hole is padded with silence,
	// the timeline continues.
	feedBlocks(f, blocks, "s1", 100, 100+480*40, 480)
	feedBlocks(f, blocks, "s1", 100+480*43, 100+480*100, 480)
	close(blocks)
	s := &sink{}
	if err := e.Run(context.Background(), blocks, s.out); err != nil {
		t.Fatal(err)
	}
	frames := s.get()
	cfg := e.Config()
	if g := onGrid(t, "padded", cfg, frames); len(g) != 0 {
		t.Fatalf("gaps %v", g)
	}
	// Starts at the first 1024 boundary at or after index 100; a closed
	// input flushes everything up to its end.
	if first := cfg.FrameIndex(frames[0].PTS); first != 1 {
		t.Errorf("first frame index %d, want 1", first)
	}
	if last := cfg.FrameIndex(frames[len(frames)-1].PTS); last < (100+480*100)/1024-1 {
		t.Errorf("last frame index %d: the tail was not flushed", last)
	}
	st := e.Stats()
	if st.PaddedFrames != 3*480 || st.State != encoder.StateStopped || st.Restarts != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestNewSessionRestartsTimeline(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	f := capture.Format{SampleRate: 48000, Channels: 2}
	e := encoder.New("primary", encoder.Profile{Codec: media.CodecAAC, Bitrate: 64000, Format: f}, ffmpeg, testLog(t))
	blocks := make(chan capture.Block, 1000)
	s := &sink{}
	done := make(chan error, 1)
	go func() { done <- e.Run(context.Background(), blocks, s.out) }()
	feedBlocks(f, blocks, "old", 0, 1024*60, 1024)
	waitFor(t, 5*time.Second, "frames of the old session", func() bool { return len(s.get()) > 10 })
	feedBlocks(f, blocks, "new", 0, 1024*30, 1024)
	close(blocks)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	frames := s.get()
	var restartAt int
	for i := 1; i < len(frames); i++ {
		if frames[i].PTS <= frames[i-1].PTS {
			restartAt = i
		}
	}
	if restartAt == 0 || frames[restartAt].PTS != 0 {
		t.Fatalf("the new session's frames do not start again at PTS 0 (restart at %d)", restartAt)
	}
	// The old session was drained, not cut: all 60 of its frames went out.
	if restartAt != 60 {
		t.Errorf("%d frames of the old session, want 60", restartAt)
	}
	onGrid(t, "old session", e.Config(), frames[:restartAt])
	onGrid(t, "new session", e.Config(), frames[restartAt:])
}

func TestFormatMismatchAndBadFFmpeg(t *testing.T) {
	f := capture.Format{SampleRate: 48000, Channels: 2}
	e := encoder.New("fallback", encoder.Profile{Codec: media.CodecAAC, Bitrate: 64000, Format: f}, "ffmpeg", testLog(t))
	blocks := make(chan capture.Block, 10)
	feedBlocks(capture.Format{SampleRate: 44100, Channels: 2}, blocks, "s", 0, 4096, 1024)
	close(blocks)
	if err := e.Run(context.Background(), blocks, func(media.Frame, bool) { t.Error("a frame from mismatched blocks") }); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); !strings.Contains(st.LastError, "44100 Hz 2ch does not match the feed profile 48000 Hz 2ch") || st.DroppedBlocks != 4 {
		t.Errorf("stats %+v", st)
	}

	bad := encoder.New("primary", encoder.Profile{Codec: media.CodecAAC, Bitrate: 64000, Format: f}, "/nonexistent/ffmpeg", testLog(t))
	blocks = make(chan capture.Block, 100)
	feedBlocks(f, blocks, "s", 0, 1024*50, 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := bad.Run(ctx, blocks, func(media.Frame, bool) {}); err != nil {
		t.Fatal(err)
	}
	if st := bad.Stats(); !strings.Contains(st.LastError, "/nonexistent/ffmpeg") {
		t.Errorf("stats %+v", st)
	}

	if _, err := encoder.ProfileOf(capture.KeyFallback, capture.FeedProfile{Codec: "aac", Bitrate: 1, SampleRate: 48000, Channels: 2}); err == nil ||
		!strings.Contains(err.Error(), "feeds.fallback.bitrate") {
		t.Errorf("ProfileOf: %v", err)
	}
	err := encoder.New("x", encoder.Profile{Codec: media.CodecMP3, Format: f}, "ffmpeg", nil).Run(context.Background(), nil, nil)
	if err == nil {
		t.Error("an MP3 profile runs")
	}
}

// With blocks of four frames, the encoder marks the last frame of each
// block's burst (more == false) and the three before it as more to come:
// what lets the sender put a block's frames into as few SRT messages as
// fit. With blocks of one frame every frame is the last.
func TestBurstEnds(t *testing.T) {
	f := capture.Format{SampleRate: 48000, Channels: 2}
	for _, block := range []int{4096, 1024} {
		c := startCaptureBlocks(t, capture.NewTone(f, 440, -12), block)
		e := encoder.New("p", encoder.Profile{Codec: media.CodecAAC, Bitrate: 128000, Format: f}, "", testLog(t))
		s := &sink{}
		stop := runEncoder(t, c, e, s)
		time.Sleep(4 * time.Second)
		stop()
		per := block / 1024
		// Skip the first 2 s: the smallest lag is being learnt then.
		var got []stamped
		for _, fr := range s.get() {
			if fr.at.Sub(s.get()[0].at) > 2*time.Second {
				got = append(got, fr)
			}
		}
		if len(got) < 40 {
			t.Fatalf("blocks of %d: only %d frames after the first 2 s", block, len(got))
		}
		lastPhase := int64(-1)
		lasts := 0
		for _, fr := range got {
			idx := e.Config().FrameIndex(fr.PTS)
			if fr.more {
				continue
			}
			lasts++
			if lastPhase < 0 {
				lastPhase = idx % int64(per)
			} else if idx%int64(per) != lastPhase {
				t.Errorf("blocks of %d: frame %d is marked last, out of phase with the others (%d mod %d)", block, idx, lastPhase, per)
			}
		}
		want := len(got) / per
		if lasts < want-1 || lasts > want+1 {
			t.Errorf("blocks of %d: %d of %d frames marked last, want one per block (~%d)", block, lasts, len(got), want)
		}
	}
}

// An "ffmpeg" whose output is not ADTS is killed and restarted, and the
// error says what was wrong; nothing it wrote goes out as a frame.
func TestOutputNotADTS(t *testing.T) {
	fake := t.TempDir() + "/ffmpeg"
	script := "#!/bin/sh\n# consumes its input and answers with text\nwhile read -r line; do :; done &\nwhile :; do echo 'this is not ADTS'; sleep 0.05; done\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := capture.Format{SampleRate: 48000, Channels: 2}
	e := encoder.New("primary", encoder.Profile{Codec: media.CodecAAC, Bitrate: 128000, Format: f}, fake, testLog(t))
	c := startCapture(t, capture.NewTone(f, 440, -12))
	s := &sink{}
	stop := runEncoder(t, c, e, s)
	waitFor(t, 5*time.Second, "a restart after output that is not ADTS", func() bool { return e.Stats().Restarts >= 1 })
	stop()
	st := e.Stats()
	if !strings.Contains(st.LastError, "not ADTS") {
		t.Errorf("last error %q, want one saying the output is not ADTS", st.LastError)
	}
	if n := len(s.get()); n != 0 {
		t.Errorf("%d frames went out from output that is not ADTS", n)
	}
}
