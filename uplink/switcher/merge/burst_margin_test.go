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
