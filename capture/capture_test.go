package capture_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/capture"
	"tandem/capture/capturetest"
	"tandem/hal/audio"
	"tandem/scripts/testenv"
)

var f48 = capture.Format{SampleRate: 48000, Channels: 2}

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

// ref is the tone's sample n computed independently of the package.
func ref(amp, freq float64, sr int, n int64) int16 {
	return int16(math.Round(amp * math.Sin(2*math.Pi*freq*float64(n)/float64(sr))))
}

func TestToneExact(t *testing.T) {
	for _, f := range []capture.Format{f48, {SampleRate: 44100, Channels: 1}} {
		t.Run(f.String(), func(t *testing.T) {
			const freq, level = 440.0, -12.0
			amp := math.Pow(10, level/20) * 32767
			src := capture.NewTone(f, freq, level)
			defer src.Close()
			ix := src.(capture.Indexed)
			if got := ix.NextIndex(); got != 0 {
				t.Fatalf("NextIndex before the first Read = %d, want 0", got)
			}
			start := time.Now()
			var n int64
			var peak int16
			for _, size := range []int{100, 1024, 7, 4096, 333, 1024} {
				buf := make([]int16, size*f.Channels)
				k, err := src.Read(context.Background(), buf)
				if err != nil || k != size {
					t.Fatalf("Read(%d frames) = %d, %v", size, k, err)
				}
				for i := 0; i < k; i++ {
					want := ref(amp, freq, f.SampleRate, n)
					for c := 0; c < f.Channels; c++ {
						if got := buf[i*f.Channels+c]; got != want {
							t.Fatalf("sample %d channel %d = %d, want %d", n, c, got, want)
						}
					}
					peak = max(peak, buf[i*f.Channels])
					n++
				}
				if got := ix.NextIndex(); got != n {
					t.Fatalf("NextIndex = %d, want %d", got, n)
				}
			}
			// Paced by the wall clock: n frames take n/rate.
			el := time.Since(start)
			want := f.Duration(n)
			if el < want-2*time.Millisecond || el > want+testenv.Slack(t, 60*time.Millisecond) {
				t.Errorf("%d frames took %v, want about %v", n, el, want)
			}
			if got := capture.DBFS(float64(peak) / 32768); math.Abs(got-level) > 0.01 {
				t.Errorf("peak %.3f dBFS, want %.1f", got, level)
			}
			t.Logf("%d frames bit-exact; paced %v for %v of audio; peak %.3f dBFS", n, el.Round(time.Millisecond), want, capture.DBFS(float64(peak)/32768))
		})
	}
}

func TestToneAnchoredAndLongRunning(t *testing.T) {
	const freq, level = 997.0, -6.0
	amp := math.Pow(10, level/20) * 32767
	// Anchored 30 days ago: the first Read starts at the sample due now,
	// and the phase is still exact that far into the timeline.
	epoch := time.Now().Add(-30 * 24 * time.Hour)
	a := capture.NewToneAt(f48, freq, level, epoch)
	b := capture.NewToneAt(f48, freq, level, epoch)
	buf := make([]int16, 480*2)
	if _, err := a.Read(context.Background(), buf); err != nil {
		t.Fatal(err)
	}
	first := a.NextIndex() - 480
	due := f48.Frames(time.Since(epoch))
	if d := due - first; d < 480 || d > 480+48*50 {
		t.Errorf("first index %d is %d frames before the index due now", first, d)
	}
	for i := 0; i < 480; i++ {
		if got, want := buf[2*i], ref(amp, freq, 48000, first+int64(i)); absDiff(got, want) > 1 {
			t.Fatalf("sample %d = %d, want %d", first+int64(i), got, want)
		}
	}
	// Another tone on the same epoch makes the same samples at the same index.
	buf2 := make([]int16, 480*2)
	if _, err := b.Read(context.Background(), buf2); err != nil {
		t.Fatal(err)
	}
	first2 := b.NextIndex() - 480
	for i := 0; i < 480; i++ {
		if got, want := buf2[2*i], a.Sample(first2+int64(i)); got != want {
			t.Fatalf("second tone: sample %d = %d, first tone has %d", first2+int64(i), got, want)
		}
	}
}

func absDiff(a, b int16) int {
	d := int(a) - int(b)
	if d < 0 {
		return -d
	}
	return d
}

func TestToneCloseAndCancel(t *testing.T) {
	src := capture.NewTone(f48, 440, -12)
	buf := make([]int16, 48000*2) // one second
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := src.Read(ctx, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read with an ending ctx: %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		src.Close()
	}()
	if _, err := src.Read(context.Background(), buf); !errors.Is(err, capture.ErrClosed) {
		t.Fatalf("Read across Close: %v", err)
	}
}

func runCapture(t *testing.T, c *capture.Capture) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10 s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// contiguous checks that blocks follow each other without a gap.
func contiguous(t *testing.T, name string, blocks []capture.Block) {
	t.Helper()
	for i := 1; i < len(blocks); i++ {
		if blocks[i].Index != blocks[i-1].End() {
			t.Fatalf("%s: block %d starts at %d, previous ended at %d", name, i, blocks[i].Index, blocks[i-1].End())
		}
	}
}

func TestFanOut(t *testing.T) {
	c := capture.New(capture.NewTone(f48, 440, -12), capture.Config{Log: testLog(t)})
	var subs []*capturetest.Recorder
	for i := 0; i < 3; i++ {
		ch, _ := c.Subscribe(16)
		subs = append(subs, capturetest.Record(ch))
	}
	stop := runCapture(t, c)
	time.Sleep(300 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		<-s.Done() // closed when Run returned
	}
	ref := subs[0].Blocks()
	if len(ref) < 10 {
		t.Fatalf("only %d blocks in 300 ms", len(ref))
	}
	sess := c.Session()
	for i, s := range subs {
		got := s.Blocks()
		if len(got) != len(ref) {
			t.Fatalf("subscriber %d got %d blocks, subscriber 0 got %d", i, len(got), len(ref))
		}
		contiguous(t, fmt.Sprint("subscriber ", i), got)
		for k, b := range got {
			if b.Index != ref[k].Index || &b.Samples[0] != &ref[k].Samples[0] {
				t.Fatalf("subscriber %d block %d differs from subscriber 0's", i, k)
			}
			if b.Session != sess.ID || b.Format != f48 || b.Frames() != 1024 {
				t.Fatalf("block %d: session %q format %v frames %d", k, b.Session, b.Format, b.Frames())
			}
		}
	}
	if ref[0].Index != 0 {
		t.Errorf("first block at index %d, want 0", ref[0].Index)
	}
	if l := ref[3].Levels; math.Abs(l.PeakDBFS[0]+12) > 0.05 || math.Abs(l.RMSDBFS[1]+15.01) > 0.1 {
		t.Errorf("block levels %+v, want peak −12 and RMS −15.01 dBFS", l)
	}
	// Captured is the wall time of the block's last sample.
	for _, b := range ref[1:] {
		want := sess.Started.Add(f48.Duration(b.End()))
		if d := b.Captured.Sub(want); d < -testenv.Slack(t, 5*time.Millisecond) || d > testenv.Slack(t, 30*time.Millisecond) {
			t.Fatalf("block %d captured %v off its timeline time", b.Index, d)
		}
	}
	st := c.Stats()
	if st.State != capture.StateStopped || st.Blocks != int64(len(ref)) || st.Lagged != 0 {
		t.Errorf("stats %+v", st)
	}
}

// burst is a source that returns n blocks at once, then blocks.
func burst(f capture.Format, n int) *audio.Fake {
	var served atomic.Int64
	return &audio.Fake{FakeFormat: f, ReadFunc: func(ctx context.Context, buf []int16) (int, error) {
		if served.Add(1) > int64(n) {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		for i := range buf {
			buf[i] = int16(served.Load())
		}
		return len(buf) / f.Channels, nil
	}}
}

func TestLaggingSubscriberLosesOldest(t *testing.T) {
	c := capture.New(burst(f48, 20), capture.Config{Log: testLog(t)})
	slow, _ := c.Subscribe(4)
	fast := capturetest.Record(func() <-chan capture.Block { ch, _ := c.Subscribe(64); return ch }())
	stop := runCapture(t, c)
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Blocks < 20 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := c.Stats()
	if st.Blocks != 20 || st.Lagged != 16 {
		t.Fatalf("blocks %d lagged %d, want 20 and 16", st.Blocks, st.Lagged)
	}
	// The slow subscriber kept the newest four.
	for want := int64(16 * 1024); want < 20*1024; want += 1024 {
		b := <-slow
		if b.Index != want {
			t.Fatalf("slow subscriber got index %d, want %d", b.Index, want)
		}
	}
	stop()
	<-fast.Done()
	if got := fast.Blocks(); len(got) != 20 {
		t.Fatalf("fast subscriber got %d blocks, want all 20", len(got))
	}
	if _, ok := <-slow; ok {
		t.Fatal("slow subscriber's channel still open after Run returned")
	}
}

func TestUnsubscribe(t *testing.T) {
	c := capture.New(capture.NewTone(f48, 440, -12), capture.Config{})
	ch, cancel := c.Subscribe(1)
	stop := runCapture(t, c)
	<-ch
	cancel()
	cancel() // idempotent
	for range ch {
	}
	time.Sleep(50 * time.Millisecond) // Run keeps publishing to nobody
	if st := c.Stats(); st.Lagged > 1 {
		t.Errorf("an unsubscribed channel is still counted: lagged %d", st.Lagged)
	}
	stop()
	late, _ := c.Subscribe(1)
	if _, ok := <-late; ok {
		t.Fatal("subscribing after Run returned gives an open channel")
	}
}

// flaky wraps a paced tone that fails with ErrDeviceGone once failAfter
// has passed since its first Read.
func flaky(f capture.Format, freq float64, failAfter time.Duration) *audio.Fake {
	tone := capture.NewTone(f, freq, -12)
	var start time.Time
	return &audio.Fake{
		FakeFormat: f,
		ReadFunc: func(ctx context.Context, buf []int16) (int, error) {
			if start.IsZero() {
				start = time.Now()
			}
			if failAfter > 0 && time.Since(start) > failAfter {
				return 0, fmt.Errorf("fake: unplugged: %w", capture.ErrDeviceGone)
			}
			return tone.Read(ctx, buf)
		},
		CloseFunc: tone.Close,
	}
}

func TestDeviceGoneKeepsTimeline(t *testing.T) {
	var opens atomic.Int64
	var reopened atomic.Int64 // unix ns of the successful reopen
	cfg := capture.Config{Log: testLog(t), ReopenBackoff: 50 * time.Millisecond,
		Reopen: func(ctx context.Context) (capture.Source, error) {
			// The device is back on the third attempt.
			if opens.Add(1) < 3 {
				return nil, errors.New("fake: no such device")
			}
			reopened.Store(time.Now().UnixNano())
			return flaky(f48, 440, 0), nil
		}}
	c := capture.New(flaky(f48, 440, 300*time.Millisecond), cfg)
	sess := c.Session()
	sub := capturetest.Record(func() <-chan capture.Block { ch, _ := c.Subscribe(256); return ch }())
	stop := runCapture(t, c)
	// During the gap: reopening, silence, the error reported.
	var sawGap bool
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && reopened.Load() == 0 {
		st := c.Stats()
		if st.State == capture.StateReopening && strings.Contains(st.LastError, "unplugged") {
			sawGap = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawGap || reopened.Load() == 0 {
		t.Fatalf("gap seen %v, reopened %v; stats %+v", sawGap, reopened.Load() != 0, c.Stats())
	}
	time.Sleep(400 * time.Millisecond)
	st := c.Stats()
	stop()
	<-sub.Done()
	blocks := sub.Blocks()
	contiguous(t, "subscriber", blocks)
	var filled, tone int
	for _, b := range blocks {
		if b.Session != sess.ID {
			t.Fatalf("block %d in session %q, want %q (kept across the reopen)", b.Index, b.Session, sess.ID)
		}
		if b.Filled {
			filled++
			if !math.IsInf(b.Levels.PeakDBFS[0], -1) {
				t.Fatalf("filled block %d is not silent", b.Index)
			}
		} else if b.Levels.PeakDBFS[0] > -13 {
			tone++
		}
	}
	if c.Session().ID != sess.ID {
		t.Fatalf("session changed across a reopen")
	}
	// The index kept matching real time: each block's index is where the
	// wall clock says it is, within a few blocks (a Read's worth of
	// latency), before, across and after the gap.
	started := c.Session().Started
	var worst time.Duration
	for _, b := range blocks {
		d := b.Captured.Sub(started) - f48.Duration(b.End())
		worst = max(worst, d.Abs())
	}
	if worst > testenv.Slack(t, 50*time.Millisecond) {
		t.Errorf("block indexes drift from the wall clock by up to %v", worst)
	}
	last := blocks[len(blocks)-1]
	if drift := time.Since(started) - f48.Duration(last.End()); drift < -testenv.Slack(t, 30*time.Millisecond) || drift > testenv.Slack(t, 150*time.Millisecond) {
		t.Errorf("timeline is %v behind the wall clock at the end", drift)
	}
	if st.Reopens != 1 || st.Failures != 1 || st.State != capture.StateRunning || st.FilledFrames == 0 {
		t.Errorf("stats %+v", st)
	}
	if filled == 0 || tone == 0 {
		t.Errorf("%d filled and %d tone blocks", filled, tone)
	}
	t.Logf("%d blocks: %d filled while the device was gone, %d of tone; reopen after %d attempts; wall-clock deviation ≤ %v; %d frames filled",
		len(blocks), filled, tone, opens.Load(), worst.Round(time.Millisecond), st.FilledFrames)
}

func TestSilenceIsPacedWhileDeviceGone(t *testing.T) {
	// The device never comes back: the timeline keeps running on silence,
	// in real time, and SilentFor grows.
	c := capture.New(flaky(f48, 440, 100*time.Millisecond), capture.Config{Log: testLog(t),
		Reopen: func(ctx context.Context) (capture.Source, error) { return nil, errors.New("fake: still gone") }})
	stop := runCapture(t, c)
	time.Sleep(600 * time.Millisecond)
	st := c.Stats()
	stop()
	if st.State != capture.StateReopening {
		t.Fatalf("state %q, want reopening", st.State)
	}
	el := time.Since(c.Session().Started)
	// Started is estimated from the first block's arrival, so scheduling
	// noise can put the index a little ahead of the wall clock too.
	if d := el - f48.Duration(st.Index); d < -testenv.Slack(t, 30*time.Millisecond) || d > testenv.Slack(t, 60*time.Millisecond) {
		t.Errorf("index %d is %v behind the wall clock", st.Index, d)
	}
	if st.SilentFor < 500*time.Millisecond-testenv.Slack(t, 100*time.Millisecond) || st.SilentFor > 550*time.Millisecond {
		t.Errorf("SilentFor %v after ~500 ms of silence", st.SilentFor)
	}
	// The last second still holds the tone's first 100 ms: peak hold.
	if math.Abs(st.Levels.PeakDBFS[0]+12) > 0.1 || st.Levels.RMSDBFS[0] > -20 {
		t.Errorf("levels over the last second %+v, want the tone's −12 dBFS peak held and a low RMS", st.Levels)
	}
}

func TestNoReopenFails(t *testing.T) {
	c := capture.New(flaky(f48, 440, 50*time.Millisecond), capture.Config{Log: testLog(t)})
	ch, _ := c.Subscribe(64)
	sub := capturetest.Record(ch)
	err := c.Run(context.Background())
	if !errors.Is(err, capture.ErrDeviceGone) {
		t.Fatalf("Run = %v, want an error wrapping ErrDeviceGone", err)
	}
	<-sub.Done()
	if st := c.Stats(); st.State != capture.StateFailed || !strings.Contains(st.LastError, "unplugged") {
		t.Errorf("stats %+v", st)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
}

func TestSessions(t *testing.T) {
	a := capture.New(capture.NewTone(f48, 440, -12), capture.Config{})
	b := capture.New(capture.NewTone(f48, 440, -12), capture.Config{})
	if a.Session().ID == b.Session().ID || len(a.Session().ID) != 12 {
		t.Errorf("sessions %q and %q", a.Session().ID, b.Session().ID)
	}
	fixed := capture.New(capture.NewTone(f48, 440, -12), capture.Config{Session: "abc123"})
	if fixed.Session().ID != "abc123" || fixed.Session().Format != f48 {
		t.Errorf("session %+v", fixed.Session())
	}
}

func TestFormatChangeStartsNewSession(t *testing.T) {
	f441 := capture.Format{SampleRate: 44100, Channels: 1}
	c := capture.New(flaky(f48, 440, 200*time.Millisecond), capture.Config{Log: testLog(t),
		Reopen: func(ctx context.Context) (capture.Source, error) { return flaky(f441, 440, 0), nil }})
	first := c.Session()
	sub := capturetest.Record(func() <-chan capture.Block { ch, _ := c.Subscribe(256); return ch }())
	stop := runCapture(t, c)
	time.Sleep(500 * time.Millisecond)
	stop()
	<-sub.Done()
	second := c.Session()
	if second.ID == first.ID || second.Format != f441 {
		t.Fatalf("after a format change: session %+v, was %+v", second, first)
	}
	var switched bool
	blocks := sub.Blocks()
	for i, b := range blocks {
		if b.Session == second.ID {
			if !switched {
				switched = true
				if b.Index != 0 || b.Format != f441 {
					t.Fatalf("first block of the new session: index %d format %v", b.Index, b.Format)
				}
				contiguous(t, "old session", blocks[:i])
				contiguous(t, "new session", blocks[i:])
			}
		} else if switched {
			t.Fatal("a block of the old session after the new one started")
		}
	}
	if !switched {
		t.Fatal("no block of the new session")
	}
}

func TestStartWithoutDevice(t *testing.T) {
	var tries atomic.Int64
	c := capture.New(nil, capture.Config{Format: f48, Log: testLog(t), ReopenBackoff: 20 * time.Millisecond,
		Reopen: func(ctx context.Context) (capture.Source, error) {
			if tries.Add(1) < 5 {
				return nil, errors.New("fake: not plugged in yet")
			}
			return flaky(f48, 440, 0), nil
		}})
	sub := capturetest.Record(func() <-chan capture.Block { ch, _ := c.Subscribe(256); return ch }())
	stop := runCapture(t, c)
	time.Sleep(700 * time.Millisecond)
	st := c.Stats()
	stop()
	<-sub.Done()
	blocks := sub.Blocks()
	contiguous(t, "subscriber", blocks)
	if len(blocks) == 0 || !blocks[0].Filled || blocks[0].Index != 0 || blocks[len(blocks)-1].Filled {
		t.Fatalf("%d blocks; want silence first, then the device", len(blocks))
	}
	if st.Reopens != 1 || st.State != capture.StateRunning {
		t.Errorf("stats %+v", st)
	}
}

func TestStatsLevels(t *testing.T) {
	c := capture.New(capture.NewTone(f48, 1000, -20), capture.Config{})
	stop := runCapture(t, c)
	time.Sleep(300 * time.Millisecond)
	st := c.Stats()
	stop()
	for ch := 0; ch < 2; ch++ {
		if math.Abs(st.Levels.PeakDBFS[ch]+20) > 0.05 || math.Abs(st.Levels.RMSDBFS[ch]+23.01) > 0.1 {
			t.Errorf("channel %d: peak %.2f rms %.2f, want −20 and −23.01", ch, st.Levels.PeakDBFS[ch], st.Levels.RMSDBFS[ch])
		}
	}
	if st.SilentFor != 0 {
		t.Errorf("SilentFor %v with a tone", st.SilentFor)
	}
	// −55 dBFS RMS is under the default −50 threshold; −45 is not.
	for _, tc := range []struct {
		level  float64
		silent bool
	}{{-52, true}, {-42, false}} {
		c := capture.New(capture.NewTone(f48, 1000, tc.level), capture.Config{})
		stop := runCapture(t, c)
		time.Sleep(150 * time.Millisecond)
		st := c.Stats()
		stop()
		if (st.SilentFor > 0) != tc.silent {
			t.Errorf("tone peaking at %v dBFS: SilentFor %v", tc.level, st.SilentFor)
		}
	}
}

func TestFormat(t *testing.T) {
	f := capture.Format{SampleRate: 44100, Channels: 2}
	for _, n := range []int64{0, 1, 44099, 44100, 1 << 40} {
		if got := f.Frames(f.Duration(n)); got != n && got != n-1 {
			t.Errorf("Frames(Duration(%d)) = %d", n, got)
		}
	}
	if d := f.Duration(44100 * 86400 * 30); d != 30*24*time.Hour {
		t.Errorf("30 days of frames = %v", d)
	}
	for _, bad := range []capture.Format{{22050, 2}, {48000, 6}, {}} {
		if bad.Validate() == nil {
			t.Errorf("%v validated", bad)
		}
	}
}

// OnSilence reports each change between sound and silence once, with the
// block that shows it, so telemetry can tell the switcher at once.
func TestOnSilence(t *testing.T) {
	// Blocks 0-9 tone, 10-29 silence, 30-39 tone again, then nothing.
	tone := capture.NewToneAt(f48, 1000, -20, time.Now())
	var block atomic.Int64
	src := &audio.Fake{FakeFormat: f48, ReadFunc: func(ctx context.Context, buf []int16) (int, error) {
		n := block.Add(1) - 1
		if n >= 40 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		frames, err := tone.Read(ctx, buf)
		if n >= 10 && n < 30 {
			clear(buf)
		}
		return frames, err
	}}
	type change struct {
		silent bool
		index  int64 // the capture's index when it was reported
	}
	var mu sync.Mutex
	var changes []change
	var c *capture.Capture
	c = capture.New(src, capture.Config{Log: testLog(t), OnSilence: func(silent bool) {
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, change{silent, c.Stats().Index})
	}})
	stop := runCapture(t, c)
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Blocks < 40 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	want := []change{{true, 11 * 1024}, {false, 31 * 1024}}
	if len(changes) != len(want) {
		t.Fatalf("changes %+v, want %+v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Errorf("change %d: %+v, want %+v (reported with the block that shows it)", i, changes[i], want[i])
		}
	}
}
