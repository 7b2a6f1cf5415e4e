package capture

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// Tone is a sine generator paced by the wall clock. Sample n of its
// timeline is round(A·sin(2π·f·n/rate)) on every channel, computed from n
// itself (never accumulated), so its phase is exact however long it runs.
type Tone struct {
	f     Format
	freq  float64
	amp   float64
	epoch time.Time // wall time of sample 0; zero until the first Read when not anchored
	// mod reduces the sample index before the sine: when freq has at most
	// three decimals the tone repeats exactly every 1000 s.
	mod int64

	mu      sync.Mutex
	next    int64
	started bool
	closed  chan struct{}
	once    sync.Once
}

var (
	_ Source  = (*Tone)(nil)
	_ Indexed = (*Tone)(nil)
)

// NewTone returns a sine of freqHz at a peak of levelDBFS on every
// channel. Its timeline starts at the first Read: sample 0 is due then, and
// Read returns each buffer once the wall clock has reached its last sample.
func NewTone(f Format, freqHz, levelDBFS float64) Source {
	return NewToneAt(f, freqHz, levelDBFS, time.Time{})
}

// NewToneAt is NewTone with sample 0 anchored at epoch: the first Read
// starts at the sample that is due now, floor((now−epoch)·rate). Tones
// anchored at the same epoch produce the same samples at the same index,
// even in different processes.
func NewToneAt(f Format, freqHz, levelDBFS float64, epoch time.Time) *Tone {
	t := &Tone{f: f, freq: freqHz, amp: math.Pow(10, levelDBFS/20) * 32767,
		epoch: epoch, closed: make(chan struct{})}
	if k := freqHz * 1000; k == math.Trunc(k) && f.SampleRate > 0 {
		t.mod = int64(f.SampleRate) * 1000
	}
	return t
}

// Format is the tone's format.
func (t *Tone) Format() Format { return t.f }

// NextIndex is the index of the next frame Read returns (0 before the
// first Read of an unanchored tone).
func (t *Tone) NextIndex() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started && !t.epoch.IsZero() {
		return t.f.Frames(time.Since(t.epoch))
	}
	return t.next
}

// Sample is the value of sample n of the tone's timeline.
func (t *Tone) Sample(n int64) int16 {
	if t.mod > 0 {
		n %= t.mod
		if n < 0 {
			n += t.mod
		}
	}
	return int16(math.Round(t.amp * math.Sin(2*math.Pi*t.freq*float64(n)/float64(t.f.SampleRate))))
}

// Read fills buf with whole frames and returns when the last of them is
// due by the wall clock.
func (t *Tone) Read(ctx context.Context, buf []int16) (int, error) {
	ch := t.f.Channels
	if ch <= 0 || t.f.SampleRate <= 0 {
		return 0, fmt.Errorf("capture: tone: invalid format %v", t.f)
	}
	frames := len(buf) / ch
	if frames == 0 {
		return 0, fmt.Errorf("capture: tone: buffer of %d samples holds no %d-channel frame", len(buf), ch)
	}
	select {
	case <-t.closed:
		return 0, ErrClosed
	default:
	}
	t.mu.Lock()
	if !t.started {
		t.started = true
		if t.epoch.IsZero() {
			t.epoch = time.Now()
		} else {
			t.next = t.f.Frames(time.Since(t.epoch))
		}
	}
	n := t.next
	due := t.epoch.Add(t.f.Duration(n + int64(frames)))
	t.mu.Unlock()

	if d := time.Until(due); d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return 0, ctx.Err()
		case <-t.closed:
			tm.Stop()
			return 0, ErrClosed
		}
	}
	for i := 0; i < frames; i++ {
		s := t.Sample(n + int64(i))
		for c := 0; c < ch; c++ {
			buf[i*ch+c] = s
		}
	}
	t.mu.Lock()
	t.next = n + int64(frames)
	t.mu.Unlock()
	return frames, nil
}

// Close makes Read return ErrClosed.
func (t *Tone) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}
