package merge

import (
	"testing"
	"time"
)

// An appliance delivers its frames in bursts: one capture block at a time
// (source.block_frames) or several frames per SRT message (max_pack_delay).
// All but the last frame of a burst then arrive late against the arrival
// envelope, which the last ones define. The merge adds that measured
// lateness to the hold, so that on a failover the other link may still be
// up to the configured hold slower, whatever the burst size; past it, the
// failover has holes.
func TestBurstsDoNotEatTheHold(t *testing.T) {
	holes := func(framesPerBurst int, slower time.Duration) int {
		s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
		frames := int64(30 * framesPerSec48k)
		cut := cuts([2]time.Duration{sec(15), sec(20)}) // the fast link fails for 5 s
		s.feed(Primary, path{delay: 20 * time.Millisecond, jitter: 2 * time.Millisecond, down: cut, tag: 'P', burst: framesPerBurst}, "s1", t0, 0, 0, frames, 0)
		s.feed(Fallback, path{delay: 20*time.Millisecond + slower, jitter: 2 * time.Millisecond, tag: 'F', burst: framesPerBurst}, "s1", t0, 0, 0, frames, 0)
		s.run(t0.Add(sec(29)))
		s.checkContinuous()
		return s.holes()
	}
	for _, c := range []struct {
		framesPerBurst int
		slower         time.Duration
		holes          bool
	}{
		{1, 90 * time.Millisecond, false},
		{2, 90 * time.Millisecond, false},
		{4, 90 * time.Millisecond, false},
		{1, 110 * time.Millisecond, true},
		{2, 110 * time.Millisecond, true},
		{4, 110 * time.Millisecond, true},
	} {
		h := holes(c.framesPerBurst, c.slower)
		if (h > 0) != c.holes {
			t.Errorf("%d frames per burst, fallback link %v slower, primary cut for 5 s: %d holes, want holes: %v",
				c.framesPerBurst, c.slower, h, c.holes)
		}
	}
}

// A link that keeps coming back delivers, each time, a second of frames
// late by up to 95 ms: within the hold, so they are used. The hold may
// widen for them, but it must not feed on them: a hold widened by late
// frames lets later frames in, which must not widen it further (an
// additive rule once grew it by ~100 ms per cut in the lab).
func TestReturningLinkDoesNotRatchetTheHold(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
	frames := int64(60 * framesPerSec48k)
	// Every 3 s the primary's link is down for 1 s, then its next second
	// of frames arrives late: 95 ms at first, shrinking to nothing.
	down := func(at time.Time) bool { return at.Sub(t0)%(3*time.Second) < time.Second }
	extra := func(at time.Time) time.Duration {
		since := at.Sub(t0)%(3*time.Second) - time.Second
		if since < 0 || since >= time.Second {
			return 0
		}
		return 95 * time.Millisecond * (time.Second - since) / time.Second
	}
	s.feed(Primary, path{delay: 20 * time.Millisecond, jitter: 2 * time.Millisecond, down: down, extra: extra, tag: 'P', burst: 4}, "s1", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, jitter: 2 * time.Millisecond, tag: 'F', burst: 4}, "s1", t0, 0, 0, frames, 0)
	var most time.Duration
	for at := t0.Add(sec(10)); at.Before(t0.Add(sec(59))); at = at.Add(time.Second) {
		s.run(at)
		most = max(most, s.m.Hold())
	}
	s.checkContinuous()
	if h := s.holes(); h != 0 {
		t.Errorf("%d holes", h)
	}
	// 4-frame bursts spread 64 ms: hold 100 + 64; the late frames may widen
	// it to their lateness plus the margin, ~95 + 64 + 20.
	if most > 200*time.Millisecond {
		t.Errorf("the hold grew to %v over 50 s of a returning link; it should stay near 180 ms", most)
	}
	t.Logf("largest hold %v", most)
}
