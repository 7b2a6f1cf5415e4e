package sender

import (
	"testing"
	"time"

	"tandem/uplink/media"
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
