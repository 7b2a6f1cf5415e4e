package merge

import (
	"strings"
	"testing"
	"time"
)

// Policy scenarios from the seed platforms, with injected time.

func silence(m *Merge, now time.Time, r Role) {
	m.SetHealth(now, r, InputHealth{State: Failed, Reason: "silence: every channel below -50 dBFS for 2s", Content: true})
}

func healthy(m *Merge, now time.Time, r Role) { m.SetHealth(now, r, InputHealth{}) }

func TestSilenceOnPrimaryOnlyAligned(t *testing.T) {
	s := newSim(t, Config{Stable: 10 * time.Second}, aac48)
	frames := int64(40 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, tag: 'F'}, "s1", t0, 0, 0, frames, 0)
	s.at(sec(5), func(m *Merge, now time.Time) { silence(m, now, Primary) })
	s.at(sec(15), func(m *Merge, now time.Time) { healthy(m, now, Primary) })
	s.run(t0.Add(sec(39)))
	sw := s.switches()
	if len(sw) != 2 || sw[0].To != Fallback || !strings.Contains(sw[0].Reason, "silence") || sw[1].To != Primary {
		t.Fatalf("switches %v, want to the fallback for silence and back", sw)
	}
	if back := sw[1].Time.Sub(t0); back < sec(25) || back > sec(25.1) {
		t.Fatalf("back to the primary at %v, want 10 s after the sound returned at 15 s", back)
	}
	// The fallback's frames carried the output while the primary was silent.
	if f := s.countFrom('F'); f < int(19.5*framesPerSec48k) || f > int(20.5*framesPerSec48k) {
		t.Fatalf("fallback supplied %d frames, want the 20 s from silence to return", f)
	}
	if s.holes() != 0 {
		t.Fatalf("%d holes", s.holes())
	}
	s.checkContent()
}

func TestSilenceOnPrimaryOnlySplice(t *testing.T) {
	s := newSim(t, Config{Stable: 5 * time.Second}, aac48)
	frames := int64(30 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "enc-a", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, tag: 'F'}, "enc-b", t0, 999, 0, frames, 0)
	s.at(sec(5), func(m *Merge, now time.Time) { silence(m, now, Primary) })
	s.at(sec(12), func(m *Merge, now time.Time) { healthy(m, now, Primary) })
	s.run(t0.Add(sec(29)))
	sw := s.switches()
	if len(sw) != 2 || sw[0].To != Fallback || sw[1].To != Primary || sw[1].Time.Sub(t0) < sec(17) {
		t.Fatalf("switches %v, want to the fallback at 5 s and back at 17 s", sw)
	}
	if s.holes() != 0 {
		t.Fatalf("%d holes: a content switch between two live inputs needs none", s.holes())
	}
}

func TestFlappingPrimaryBoundedSwitches(t *testing.T) {
	s := newSim(t, Config{Stall: 500 * time.Millisecond, Stable: 10 * time.Second}, aac48)
	frames := int64(70 * framesPerSec48k)
	// The primary drops out for 1 s every 3 s for 45 s, then is steady.
	var spans [][2]time.Duration
	for t := 5.0; t < 50; t += 3 {
		spans = append(spans, [2]time.Duration{sec(t), sec(t + 1)})
	}
	s.feed(Primary, path{delay: 20 * time.Millisecond, down: cuts(spans...), tag: 'P'}, "enc-a", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, tag: 'F'}, "enc-b", t0, 5555, 0, frames, 0)
	s.run(t0.Add(sec(65)))
	sw := s.switches()
	if len(sw) != 2 {
		t.Fatalf("%d switches for a flapping primary, want 2 (away once, back once it is stable): %v", len(sw), sw)
	}
	if back := sw[1].Time.Sub(t0); back < sec(58) {
		t.Fatalf("returned at %v, before the primary had been stable for 10 s", back)
	}
}

func TestManualSwitchStaysArmed(t *testing.T) {
	s := newSim(t, Config{Stable: 5 * time.Second}, aac48)
	frames := int64(40 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, down: cuts([2]time.Duration{sec(10), sec(20)}), tag: 'F'}, "s1", t0, 0, 0, frames, 0)
	s.at(sec(5), func(m *Merge, now time.Time) {
		if err := m.Pin(now, Fallback); err != nil {
			t.Errorf("pin: %v", err)
		}
	})
	s.run(t0.Add(sec(39)))
	sw := s.switches()
	// To the fallback by hand; to the primary when the fallback fails;
	// back to the chosen fallback once it has been stable again.
	if len(sw) != 3 || sw[0].To != Fallback || sw[0].Reason != "manual switch" ||
		sw[1].To != Primary || !strings.Contains(sw[1].Reason, "fallback") || sw[2].To != Fallback {
		t.Fatalf("switches %v", sw)
	}
	if pref, pinned := s.m.Preferred(); pref != Fallback || !pinned {
		t.Fatalf("the operator's choice did not stick: preferred %v pinned %v", pref, pinned)
	}
	if s.holes() != 0 {
		t.Fatalf("%d holes", s.holes())
	}
	if !s.hasEvent(EventManual) {
		t.Fatal("no manual event")
	}
}

func TestEqualStaysPut(t *testing.T) {
	s := newSim(t, Config{Policy: Equal, Stable: 2 * time.Second}, aac48)
	frames := int64(30 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, down: cuts([2]time.Duration{sec(5), sec(8)}), tag: 'P'}, "enc-a", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, tag: 'F'}, "enc-b", t0, 77, 0, frames, 0)
	s.run(t0.Add(sec(29)))
	sw := s.switches()
	if len(sw) != 1 || sw[0].To != Fallback || s.m.Active() != Fallback {
		t.Fatalf("equal policy: switches %v, active %v; want one failover and to stay", sw, s.m.Active())
	}
}

func TestBestPolicyHysteresis(t *testing.T) {
	s := newSim(t, Config{Policy: Best, BestHold: 3 * time.Second, BestDwell: 10 * time.Second}, aac48)
	frames := int64(60 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, tag: 'F'}, "s1", t0, 0, 0, frames, 0)
	score := func(r Role, v float64) func(*Merge, time.Time) {
		return func(m *Merge, now time.Time) { m.SetHealth(now, r, InputHealth{Score: v}) }
	}
	// Scores wobble within the hysteresis: no switch.
	for i := 0; i < 10; i++ {
		s.at(sec(2+float64(i)), score(Fallback, 90+float64(i%2)*20))
		s.at(sec(2.5+float64(i)), score(Primary, 95))
	}
	// Then the primary degrades clearly for good: one switch after the hold.
	s.at(sec(20), score(Primary, 40))
	s.at(sec(20), score(Fallback, 95))
	s.run(t0.Add(sec(59)))
	sw := s.switches()
	if len(sw) != 1 || sw[0].To != Fallback {
		t.Fatalf("best policy switches %v, want exactly one, to the fallback", sw)
	}
	if at := sw[0].Time.Sub(t0); at < sec(23) || at > sec(23.1) {
		t.Fatalf("switched at %v, want after the 3 s hold at 23 s", at)
	}
}

func TestPinRequiresConnectedInput(t *testing.T) {
	s := newSim(t, Config{}, aac48)
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, 100, 0)
	s.run(t0.Add(sec(1)))
	if err := s.m.Pin(s.now, Fallback); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Fatalf("pin to an absent input: %v", err)
	}
}

func TestDegradedPrimaryReturnsOnlyAfterStability(t *testing.T) {
	s := newSim(t, Config{Stable: 5 * time.Second}, aac48)
	frames := int64(40 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "enc-a", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, tag: 'F'}, "enc-b", t0, 42, 0, frames, 0)
	lossy := func(m *Merge, now time.Time) {
		m.SetHealth(now, Primary, InputHealth{State: Degraded, Reason: "loss: 30% of packets lost", Score: 40})
	}
	s.at(sec(5), lossy)
	s.at(sec(10), func(m *Merge, now time.Time) { healthy(m, now, Primary) })
	s.run(t0.Add(sec(39)))
	sw := s.switches()
	if len(sw) != 2 || sw[0].To != Fallback || sw[1].To != Primary {
		t.Fatalf("switches %v", sw)
	}
	if back := sw[1].Time.Sub(t0); back < sec(15) {
		t.Fatalf("a degraded primary returned at %v, before 5 s of health from 10 s", back)
	}
}
