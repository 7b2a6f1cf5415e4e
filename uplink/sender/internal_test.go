package sender

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/uplink/media"
	"tandem/uplink/streamid"
	"tandem/uplink/telemetry"
)

func TestQueueDropsOldest(t *testing.T) {
	q := newQueue(3)
	for i := range 5 {
		dropped := q.push(media.Frame{PTS: int64(i)})
		if dropped != (i >= 3) {
			t.Errorf("push %d: dropped=%v", i, dropped)
		}
	}
	for _, want := range []int64{2, 3, 4} {
		f, ok := q.pop()
		if !ok || f.PTS != want {
			t.Fatalf("pop: %v %v, want PTS %d", f.PTS, ok, want)
		}
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop from an empty queue")
	}
	q.push(media.Frame{PTS: 7})
	q.push(media.Frame{PTS: 8})
	if n := q.clear(); n != 2 || q.len() != 0 {
		t.Fatalf("clear: %d, len %d", n, q.len())
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		d := b.next()
		if d < w*8/10 || d > min(w*12/10, time.Second) {
			t.Errorf("attempt %d: %v, want %v ±20%% (at most the max)", i, d, w)
		}
	}
	b.reset()
	if d := b.next(); d > 120*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}

func TestRateMeter(t *testing.T) {
	var r rateMeter
	start := time.Unix(1000, 0)
	r.reset(start)
	// 16 kB/s for 8 s, in 20 ms steps: 128 kb/s.
	for ms := 0; ms < 8000; ms += 20 {
		r.add(start.Add(time.Duration(ms)*time.Millisecond), 320)
	}
	if k := r.kbps(start.Add(8 * time.Second)); k < 120 || k > 136 {
		t.Errorf("steady 128 kb/s measured as %.1f", k)
	}
	if k := r.kbps(start.Add(20 * time.Second)); k != 0 {
		t.Errorf("12 s after the last byte: %.1f kb/s", k)
	}
	r.reset(start)
	for ms := 0; ms < 1000; ms += 20 {
		r.add(start.Add(time.Duration(ms)*time.Millisecond), 320)
	}
	if k := r.kbps(start.Add(time.Second)); k < 120 || k > 136 {
		t.Errorf("1 s into a connection: %.1f kb/s", k)
	}
}

// recordingSession is a connection that keeps the PTS of every frame
// written, in order; its telemetry writes take a while, so the connection's
// goroutine holds the connection now and then.
type recordingSession struct {
	mu  sync.Mutex
	pts []int64
}

func (r *recordingSession) idle(time.Time) error { return nil }

func (r *recordingSession) writeFrame(f media.Frame, _ bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pts = append(r.pts, f.PTS)
	return nil
}

func (r *recordingSession) written() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pts)
}

func (r *recordingSession) writeTelemetry([]byte, int64) error {
	time.Sleep(200 * time.Microsecond)
	return nil
}
func (r *recordingSession) check(time.Time) (linkStats, error) { return linkStats{}, nil }
func (r *recordingSession) stats() linkStats                   { return linkStats{} }
func (r *recordingSession) failed() <-chan error               { return nil }
func (r *recordingSession) describe() string                   { return "recording" }
func (r *recordingSession) close()                             {}

func TestSendWritesAtOnceAndKeepsOrder(t *testing.T) {
	s, err := New(Config{Role: streamid.RolePrimary, App: "live", Name: "x", Session: "s1", Dest: "srt://127.0.0.1:9000",
		Audio: media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingSession{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.stream(ctx, rec) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stream: %v", err)
		}
	}()
	for {
		s.liveMu.Lock()
		up := s.live != nil
		s.liveMu.Unlock()
		if up {
			break
		}
		time.Sleep(time.Millisecond)
	}
	frame := func(n int64) media.Frame {
		return media.Frame{Kind: media.KindAudio, PTS: n * 1920, DTS: n * 1920, Key: true, Data: []byte{1, 2, 3}}
	}

	// Nothing queued, nobody else on the connection: written before Send returns.
	s.Send(frame(0))
	if got := rec.written(); len(got) != 1 {
		t.Fatalf("after Send returned the connection has %d frames, want the frame written at once", len(got))
	}

	// Telemetry keeps the connection's goroutine busy: some frames take the
	// queue, the rest go direct, and the order must hold.
	stopTel := make(chan struct{})
	telDone := make(chan struct{})
	go func() {
		defer close(telDone)
		for {
			select {
			case <-stopTel:
				return
			default:
			}
			s.SendTelemetry(telemetry.Report{})
			time.Sleep(100 * time.Microsecond)
		}
	}()
	// Paced (if much faster than real time) so the queue never overflows.
	const n = 1000
	for i := int64(1); i < n; i++ {
		s.Send(frame(i))
		time.Sleep(50 * time.Microsecond)
	}
	close(stopTel)
	<-telDone
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.written()) < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	got := rec.written()
	if len(got) != n {
		t.Fatalf("%d of %d frames written", len(got), n)
	}
	for i, pts := range got {
		if pts != int64(i)*1920 {
			t.Fatalf("frame %d written with PTS %d, want %d: out of order", i, pts, int64(i)*1920)
		}
	}
	if st := s.Stats(); st.Sent != n || st.Dropped != 0 {
		t.Errorf("stats: sent %d dropped %d, want %d and 0", st.Sent, st.Dropped, n)
	}
}
