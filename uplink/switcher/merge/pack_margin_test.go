package merge

import (
	"testing"
	"time"
)

// An appliance that packs frames into shared SRT messages (max_pack_delay)
// delivers the first frames of each message late against the arrival
// envelope, which the last ones (held for nothing) define. On a failover to
// a slower link those late frames need the hold's room too: packing two
// 21.3 ms frames leaves hold − 21.3 ms (≈ 75 ms of 100) for the delay
// difference between the links, where unpacked frames have all of it. The
// envelope never moves later for it (the unheld frames keep arriving in
// time), so past that margin every first frame of a message is a hole
// for as long as the failover lasts.
func TestPackingEatsIntoTheHold(t *testing.T) {
	holes := func(framesPerMessage int, slower time.Duration) int {
		s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
		frames := int64(30 * framesPerSec48k)
		cut := cuts([2]time.Duration{sec(15), sec(20)}) // the fast link fails for 5 s
		s.feed(Primary, path{delay: 20 * time.Millisecond, jitter: 2 * time.Millisecond, down: cut, tag: 'P', burst: framesPerMessage}, "s1", t0, 0, 0, frames, 0)
		s.feed(Fallback, path{delay: 20*time.Millisecond + slower, jitter: 2 * time.Millisecond, tag: 'F', burst: framesPerMessage}, "s1", t0, 0, 0, frames, 0)
		s.run(t0.Add(sec(29)))
		s.checkContinuous()
		return s.holes()
	}
	for _, c := range []struct {
		framesPerMessage int
		slower           time.Duration
		holes            bool
	}{
		{1, 70 * time.Millisecond, false},
		{1, 90 * time.Millisecond, false},
		{2, 70 * time.Millisecond, false},
		{2, 90 * time.Millisecond, true},
		{3, 50 * time.Millisecond, false},
		{3, 70 * time.Millisecond, true},
	} {
		h := holes(c.framesPerMessage, c.slower)
		if (h > 0) != c.holes {
			t.Errorf("%d frames per message, fallback link %v slower, primary cut for 5 s: %d holes, want holes: %v",
				c.framesPerMessage, c.slower, h, c.holes)
		}
		if c.holes && h < int(5*framesPerSec48k)/(2*c.framesPerMessage) {
			t.Errorf("%d frames per message, fallback %v slower: only %d holes in 5 s; the first frame of every message should be late",
				c.framesPerMessage, c.slower, h)
		}
	}
}
