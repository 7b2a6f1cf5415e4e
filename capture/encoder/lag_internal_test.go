package encoder

import (
	"testing"
	"time"
)

// The lag tracker marks the smallest lag of each burst as its last frame,
// and recovers from a stray smaller lag at the next burst.
func TestLagTracker(t *testing.T) {
	var l lagTracker
	now := time.Unix(1000, 0)
	mark := func(lags ...int64) string {
		out := ""
		for _, g := range lags {
			now = now.Add(time.Millisecond)
			if l.isLast(now, g) {
				out += "L"
			} else {
				out += "m"
			}
		}
		return out
	}
	mark(6, 5, 4, 3) // learning
	if got := mark(6, 5, 4, 3, 6, 5, 4, 3); got != "mmmLmmmL" {
		t.Errorf("steady bursts of four: %s, want mmmLmmmL", got)
	}
	// A stray lag of 2 is learnt as the smallest; the next burst's last
	// frame (3) is then marked as more, and the burst after it is right
	// again.
	if got := mark(6, 5, 4, 2); got != "mmmL" {
		t.Errorf("burst ending at a stray 2: %s, want mmmL", got)
	}
	if got := mark(6, 5, 4, 3); got != "mmmm" {
		t.Errorf("first burst after the stray lag: %s, want mmmm (the stray 2 is still the smallest)", got)
	}
	if got := mark(6, 5, 4, 3); got != "mmmL" {
		t.Errorf("second burst after the stray lag: %s, want mmmL", got)
	}
	// Blocks of one frame: every frame is last.
	l = lagTracker{}
	if got := mark(3, 3, 3, 3); got != "LLLL" {
		t.Errorf("bursts of one: %s, want LLLL", got)
	}
}
