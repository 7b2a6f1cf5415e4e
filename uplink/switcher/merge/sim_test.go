package merge

import (
	"container/heap"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"tandem/uplink/media"
)

// The simulator drives a Merge the way the switcher's loop does: frames
// arrive over two paths with their own delay, jitter and outages, and Tick
// runs at every deadline. Time is simulated, so scenarios are exact.

var aac48 = media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}

type delivery struct {
	at   time.Time
	role Role
	// connect/disconnect instead of a frame
	connect, disconnect bool
	session             string
	// action, if set, is run instead (health reports, operator commands).
	action func(m *Merge, now time.Time)
	frame  media.Frame
}

type queue []delivery

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q queue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)        { *q = append(*q, x.(delivery)) }
func (q *queue) Pop() any          { o := *q; x := o[len(o)-1]; *q = o[:len(o)-1]; return x }
func (q *queue) add(d delivery)    { heap.Push(q, d) }
func (q queue) peek() (delivery, bool) {
	if len(q) == 0 {
		return delivery{}, false
	}
	return q[0], true
}

// path describes one input's route to the switcher.
type path struct {
	delay  time.Duration
	jitter time.Duration
	// down reports whether a frame sent at t is lost (a cut link).
	down func(t time.Time) bool
	// payload tags frames so the test can tell which input a frame came from.
	tag byte
	// burst delivers frames in groups of this many, all when the last is
	// sent (an encoder that packs several frames per PES).
	burst int
	// extra delays a frame sent at t by that much more (a link that
	// returns delivers its backlog late).
	extra func(t time.Time) time.Duration
}

type emitted struct {
	at  time.Time
	out Output
}

type sim struct {
	t      *testing.T
	m      *Merge
	now    time.Time
	q      queue
	out    []emitted
	events []Event
	rng    *rand.Rand
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func newSim(t *testing.T, cfg Config, audio media.AudioConfig) *sim {
	return &sim{t: t, m: New(cfg, audio, []byte{0xde, 0xad}), now: t0, rng: rand.New(rand.NewSource(1))}
}

// feed schedules the frames of a sender whose capture clock starts at
// sample 0 at wall time start (scaled by ppm drift) for frames [from, to).
func (s *sim) feed(r Role, p path, session string, start time.Time, ptsOrigin int64, from, to int64, ppm float64) {
	s.q.add(delivery{at: start.Add(s.m.sinceZeroFor(from, ppm)), role: r, connect: true, session: session})
	for i := from; i < to; i++ {
		sent := start.Add(s.m.sinceZeroFor(i, ppm))
		if p.down != nil && p.down(sent) {
			continue
		}
		at := sent.Add(p.delay)
		if p.burst > 1 {
			last := (i/int64(p.burst))*int64(p.burst) + int64(p.burst) - 1
			at = start.Add(s.m.sinceZeroFor(last, ppm)).Add(p.delay)
		}
		if p.jitter > 0 {
			at = at.Add(time.Duration(s.rng.Int63n(int64(p.jitter))))
		}
		if p.extra != nil {
			at = at.Add(p.extra(sent))
		}
		pts := (ptsOrigin + s.m.audio.FramePTS(i)) & (wrap - 1)
		s.q.add(delivery{at: at, role: r, frame: media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: []byte{p.tag, byte(i), byte(i >> 8)}}})
	}
}

func (s *sim) at(t time.Duration, f func(m *Merge, now time.Time)) {
	s.q.add(delivery{at: t0.Add(t), action: f})
}

func (s *sim) switches() []Event {
	var sw []Event
	for _, e := range s.events {
		if e.Kind == EventSwitch {
			sw = append(sw, e)
		}
	}
	return sw
}

func (s *sim) disconnectAt(r Role, at time.Time) {
	s.q.add(delivery{at: at, role: r, disconnect: true})
}

// sinceZeroFor is sinceZero on a sender clock running ppm faster (negative: slower).
func (m *Merge) sinceZeroFor(n int64, ppm float64) time.Duration {
	d := m.sinceZero(n)
	return d - time.Duration(float64(d)*ppm/1e6)
}

// run advances simulated time to until, delivering and ticking.
func (s *sim) run(until time.Time) {
	for {
		next := until
		if d, ok := s.q.peek(); ok && d.at.Before(next) {
			next = d.at
		}
		if dl, ok := s.m.NextDeadline(); ok && dl.Before(next) {
			next = dl
		}
		if next.After(until) {
			break
		}
		if next.After(s.now) {
			s.now = next
		}
		for {
			d, ok := s.q.peek()
			if !ok || d.at.After(s.now) {
				break
			}
			heap.Pop(&s.q)
			switch {
			case d.action != nil:
				d.action(s.m, s.now)
			case d.connect:
				s.m.Connect(s.now, d.role, d.session)
			case d.disconnect:
				s.m.Disconnect(s.now, d.role, "test")
			default:
				s.m.Push(s.now, d.role, d.frame)
			}
		}
		outs, evs := s.m.Tick(s.now)
		for _, o := range outs {
			s.out = append(s.out, emitted{s.now, o})
		}
		s.events = append(s.events, evs...)
		if !next.Before(until) && s.q.Len() == 0 {
			break
		}
		if s.now.Equal(until) {
			if d, ok := s.q.peek(); !ok || d.at.After(until) {
				break
			}
		}
	}
	s.now = until
}

// checkContinuous asserts output timestamps are exactly the frame grid.
func (s *sim) checkContinuous() {
	s.t.Helper()
	for i := 1; i < len(s.out); i++ {
		a, b := s.out[i-1].out.Frame.PTS, s.out[i].out.Frame.PTS
		ia, ib := s.m.audio.FrameIndex(a), s.m.audio.FrameIndex(b)
		if ib != ia+1 || s.m.audio.FramePTS(ib) != b {
			s.t.Fatalf("output not continuous at %d: pts %d then %d", i, a, b)
		}
	}
}

func (s *sim) holes() int {
	n := 0
	for _, e := range s.out {
		if e.out.Filled {
			n++
		}
	}
	return n
}

// checkContent asserts that every non-filled output frame carries the
// sender's frame for that instant: the content index advances by one per
// output frame across every switch.
func (s *sim) checkContent() {
	s.t.Helper()
	var prev int
	have := false
	for i, e := range s.out {
		if e.out.Filled {
			have = false
			continue
		}
		d := e.out.Frame.Data
		idx := int(d[1]) | int(d[2])<<8
		if have && idx != (prev+1)&0xffff {
			s.t.Fatalf("output frame %d carries sender frame %d after %d", i, idx, prev)
		}
		prev, have = idx, true
	}
}

func (s *sim) countFrom(tag byte) int {
	n := 0
	for _, e := range s.out {
		if !e.out.Filled && e.out.Frame.Data[0] == tag {
			n++
		}
	}
	return n
}

func (s *sim) hasEvent(k EventKind) bool {
	for _, e := range s.events {
		if e.Kind == k {
			return true
		}
	}
	return false
}

func cuts(spans ...[2]time.Duration) func(time.Time) bool {
	return func(t time.Time) bool {
		d := t.Sub(t0)
		for _, sp := range spans {
			if d >= sp[0] && d < sp[1] {
				return true
			}
		}
		return false
	}
}

func sec(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

var framesPerSec48k = 46.875

func TestAlignedCutsNoHoles(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
	frames := int64(60 * framesPerSec48k)
	// Link A cut five times, then link B five times, never both at once.
	var aCuts, bCuts [][2]time.Duration
	for i := 0; i < 5; i++ {
		aCuts = append(aCuts, [2]time.Duration{sec(2 + 5*float64(i)), sec(4 + 5*float64(i))})
		bCuts = append(bCuts, [2]time.Duration{sec(30 + 5*float64(i)), sec(32.5 + 5*float64(i))})
	}
	s.feed(Primary, path{delay: 30 * time.Millisecond, jitter: 5 * time.Millisecond, down: cuts(aCuts...), tag: 'P'}, "s1", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 70 * time.Millisecond, jitter: 20 * time.Millisecond, down: cuts(bCuts...), tag: 'F'}, "s1", t0, 0, 0, frames, 0)
	s.run(t0.Add(sec(59)))

	if s.m.Mode() != ModeAligned {
		t.Fatalf("mode %v, want aligned", s.m.Mode())
	}
	if h := s.holes(); h != 0 {
		t.Fatalf("%d holes, want 0", h)
	}
	s.checkContinuous()
	s.checkContent()
	want := int(58.8 * framesPerSec48k)
	if n := len(s.out); n < want {
		t.Fatalf("emitted %d frames in 59 s, want at least %d", n, want)
	}
	// Each A cut is 2 s: the fallback covered about 10 s of output.
	if f := s.countFrom('F'); f < int(9.5*framesPerSec48k) || f > int(10.5*framesPerSec48k) {
		t.Fatalf("fallback supplied %d frames, want about %d", f, int(10*framesPerSec48k))
	}
	c := s.m.Counters()
	if c.FromFallback != int64(s.countFrom('F')) || c.Holes != 0 || c.Emitted != int64(len(s.out)) {
		t.Fatalf("counters %+v disagree with the output", c)
	}
}

func TestAlignedLatencyIsHoldPastEarliestArrival(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
	s.feed(Primary, path{delay: 50 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, 500, 0)
	s.feed(Fallback, path{delay: 120 * time.Millisecond, tag: 'F'}, "s1", t0, 0, 0, 500, 0)
	s.run(t0.Add(sec(10)))
	for _, e := range s.out {
		if e.at.Sub(t0) < sec(6) {
			continue // the startup allowance
		}
		idx := int64(e.out.Frame.Data[1]) | int64(e.out.Frame.Data[2])<<8
		lat := e.at.Sub(t0.Add(s.m.sinceZero(idx)))
		if lat < 149*time.Millisecond || lat > 151*time.Millisecond {
			t.Fatalf("frame %d emitted %v after it was sent, want 150ms (path delay 50ms + hold 100ms)", idx, lat)
		}
	}
	if s.countFrom('F') != 0 {
		t.Fatalf("fallback used %d times though the primary was always in time", s.countFrom('F'))
	}
}

func TestBothCutFillsSilenceAndResumes(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond, Grace: 10 * time.Second}, aac48)
	frames := int64(20 * framesPerSec48k)
	both := cuts([2]time.Duration{sec(5), sec(8)})
	s.feed(Primary, path{delay: 30 * time.Millisecond, down: both, tag: 'P'}, "s1", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 40 * time.Millisecond, down: both, tag: 'F'}, "s1", t0, 0, 0, frames, 0)
	s.run(t0.Add(sec(19)))
	s.checkContinuous()
	h := s.holes()
	if want := int(3 * framesPerSec48k); h < want-1 || h > want+1 {
		t.Fatalf("%d holes for a 3 s outage, want %d±1", h, want)
	}
	if s.hasEvent(EventOffline) {
		t.Fatal("stream went offline during a 3 s outage shorter than the grace period")
	}
	if !s.hasEvent(EventHoleStart) || !s.hasEvent(EventHoleEnd) {
		t.Fatalf("hole events missing: %v", s.events)
	}
	// After the outage the primary is used again.
	last := s.out[len(s.out)-1].out
	if last.Filled || last.Source != Primary {
		t.Fatalf("after the outage output comes from %v (filled %v), want primary", last.Source, last.Filled)
	}
}

func TestOfflineAfterGraceAndBackByItself(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond, Grace: 2 * time.Second}, aac48)
	gone := cuts([2]time.Duration{sec(3), sec(10)})
	frames := int64(15 * framesPerSec48k)
	s.feed(Primary, path{delay: 30 * time.Millisecond, down: gone, tag: 'P'}, "s1", t0, 0, 0, frames, 0)
	s.run(t0.Add(sec(6)))
	if s.m.Online() {
		t.Fatal("still online 3 s after the only input stopped with a 2 s grace")
	}
	if !s.hasEvent(EventOffline) {
		t.Fatal("no offline event")
	}
	emittedOffline := len(s.out)
	s.run(t0.Add(sec(9.9)))
	if len(s.out) != emittedOffline {
		t.Fatalf("emitted %d frames while offline", len(s.out)-emittedOffline)
	}
	s.run(t0.Add(sec(14)))
	if !s.m.Online() {
		t.Fatal("did not come back when the input returned")
	}
	s.checkContinuous() // the timeline continues across offline
	// Holes only during the grace period.
	if h := s.holes(); h > int(2*framesPerSec48k)+2 {
		t.Fatalf("%d holes, want at most the grace period's worth", h)
	}
}

func TestFallbackAloneThenPrimaryJoinsAligned(t *testing.T) {
	s := newSim(t, Config{}, aac48)
	frames := int64(20 * framesPerSec48k)
	s.feed(Fallback, path{delay: 40 * time.Millisecond, tag: 'F'}, "s1", t0, 0, 0, frames, 0)
	// The primary's sender starts 5 s later on the same capture timeline.
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "s1", t0, 0, int64(5*framesPerSec48k), frames, 0)
	s.run(t0.Add(sec(19)))
	if h := s.holes(); h != 0 {
		t.Fatalf("%d holes", h)
	}
	s.checkContinuous()
	s.checkContent()
	if s.m.Active() != Primary || s.countFrom('P') < int(13*framesPerSec48k) {
		t.Fatalf("primary not taken over: active %v, %d primary frames", s.m.Active(), s.countFrom('P'))
	}
}

func TestPTSWrapAligned(t *testing.T) {
	s := newSim(t, Config{}, aac48)
	// The capture timeline crosses the 33-bit wrap 2 s in.
	origin := wrap - int64(2*media.ClockRate)
	frames := int64(10 * framesPerSec48k)
	aCut := cuts([2]time.Duration{sec(1), sec(3)})
	s.feed(Primary, path{delay: 20 * time.Millisecond, down: aCut, tag: 'P'}, "s1", t0, origin, 0, frames, 0)
	s.feed(Fallback, path{delay: 40 * time.Millisecond, tag: 'F'}, "s1", t0, origin, 0, frames, 0)
	s.run(t0.Add(sec(9)))
	if h := s.holes(); h != 0 {
		t.Fatalf("%d holes across the PTS wrap", h)
	}
	s.checkContinuous()
	s.checkContent()
}

func TestExactTimestampsAt44100(t *testing.T) {
	a := aac48
	a.SampleRate = 44100
	s := newSim(t, Config{}, a)
	frames := int64(30 * 44100 / 1024)
	s.feed(Primary, path{delay: 20 * time.Millisecond, down: cuts([2]time.Duration{sec(5), sec(7)}), tag: 'P'}, "s1", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 35 * time.Millisecond, tag: 'F'}, "s1", t0, 0, 0, frames, 0)
	s.run(t0.Add(sec(29)))
	if h := s.holes(); h != 0 {
		t.Fatalf("%d holes", h)
	}
	s.checkContinuous()
	s.checkContent()
}

func TestSlowSenderClockDrift(t *testing.T) {
	// A sound card 200 ppm slower than the switcher's clock for 10 minutes
	// (120 ms of drift): the output follows without holes.
	s := newSim(t, Config{}, aac48)
	frames := int64(600 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, jitter: 3 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, frames, -200)
	s.run(t0.Add(sec(599)))
	if h := s.holes(); h != 0 {
		t.Fatalf("%d holes with a drifting sender clock", h)
	}
	s.checkContinuous()
	s.checkContent()
	if s.m.InputCounters(Primary).Late != 0 {
		t.Fatalf("%d late frames", s.m.InputCounters(Primary).Late)
	}
}

func TestFastSenderClockDrift(t *testing.T) {
	s := newSim(t, Config{}, aac48)
	frames := int64(600 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, jitter: 3 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, frames, 200)
	s.run(t0.Add(sec(599)))
	if h := s.holes(); h != 0 {
		t.Fatalf("%d holes with a fast sender clock", h)
	}
	if o := s.m.InputCounters(Primary).Outside; o != 0 {
		t.Fatalf("%d frames outside the buffer window", o)
	}
	s.checkContent()
}

func TestSpliceSwitchesOnStallAndReturnsWhenStable(t *testing.T) {
	s := newSim(t, Config{Stall: 500 * time.Millisecond, Stable: 5 * time.Second}, aac48)
	frames := int64(40 * framesPerSec48k)
	// Two independent encoders: different sessions, unrelated timestamps.
	s.feed(Primary, path{delay: 20 * time.Millisecond, down: cuts([2]time.Duration{sec(10), sec(15)}), tag: 'P'}, "enc-a", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, tag: 'F'}, "enc-b", t0.Add(7*time.Millisecond), 123456789, 0, frames, 0)
	s.run(t0.Add(sec(39)))
	if s.m.Mode() != ModeSplice {
		t.Fatalf("mode %v, want splice", s.m.Mode())
	}
	s.checkContinuous()
	// The hole lasts the stall threshold less the hold (the last primary
	// frames are still played out during the first 100 ms), then the
	// fallback covers: (500-100) ms = 18.75 frames.
	if h := s.holes(); h < 17 || h > 21 {
		t.Fatalf("%d holes, want about 19 (stall threshold 500 ms less hold 100 ms)", h)
	}
	var sw []Event
	for _, e := range s.events {
		if e.Kind == EventSwitch {
			sw = append(sw, e)
		}
	}
	if len(sw) != 2 || sw[0].To != Fallback || sw[1].To != Primary {
		t.Fatalf("switches %v, want one to the fallback and one back", sw)
	}
	back := sw[1].Time.Sub(t0)
	if back < sec(20) || back > sec(20.6) {
		t.Fatalf("returned to the primary at %v, want 5 s after it came back at 15 s", back)
	}
}

func TestLateFramesAreCountedNotEmitted(t *testing.T) {
	s := newSim(t, Config{Hold: 50 * time.Millisecond}, aac48)
	frames := int64(10 * framesPerSec48k)
	s.feed(Primary, path{delay: 10 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, frames, 0)
	// The fallback path is 200 ms slower: always too late, never used.
	s.feed(Fallback, path{delay: 210 * time.Millisecond, tag: 'F'}, "s1", t0, 0, 0, frames, 0)
	s.run(t0.Add(sec(9)))
	if s.countFrom('F') != 0 {
		t.Fatal("late fallback frames were emitted")
	}
	if s.m.InputCounters(Fallback).Late == 0 {
		t.Fatal("late fallback frames not counted")
	}
	s.checkContent()
}

func TestSuspendedOwnerResyncsWithoutBurst(t *testing.T) {
	s := newSim(t, Config{}, aac48)
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, int64(5*framesPerSec48k), 0)
	s.run(t0.Add(sec(2)))
	// Nobody ticks for 3 s, but frames keep coming (then the owner wakes).
	s.now = t0.Add(sec(5))
	outs, evs := s.m.Tick(s.now)
	if len(outs) > 10 {
		t.Fatalf("emitted a burst of %d frames after a 3 s stall", len(outs))
	}
	found := false
	for _, e := range evs {
		found = found || e.Kind == EventResync
	}
	if !found {
		t.Fatalf("no resync event: %v", evs)
	}
}

func TestUnwrap(t *testing.T) {
	for _, c := range []struct{ pts, ref, want int64 }{
		{100, 50, 100},
		{5, wrap - 10, wrap + 5},
		{wrap - 10, wrap + 5, wrap - 10},
		{wrap - 10, 5, -10},
		{1000, 3*wrap + 900, 3*wrap + 1000},
	} {
		if got := unwrap(c.pts, c.ref); got != c.want {
			t.Errorf("unwrap(%d, %d) = %d, want %d", c.pts, c.ref, got, c.want)
		}
	}
}

func ExampleEvent_String() {
	fmt.Println(Event{Kind: EventSwitch, From: Primary, To: Fallback, Reason: "primary disconnected: link down"})
	// Output: switch primary->fallback: primary disconnected: link down
}

func TestBurstyPublisherWidensHold(t *testing.T) {
	s := newSim(t, Config{Hold: 100 * time.Millisecond}, aac48)
	frames := int64(30 * framesPerSec48k)
	// Eight frames per PES: 170 ms bursts, longer than the hold.
	s.feed(Primary, path{delay: 20 * time.Millisecond, burst: 8, tag: 'P'}, "", t0, 0, 0, frames, 0)
	s.run(t0.Add(sec(29)))
	s.checkContinuous()
	// The first bursts teach the merge the input's spread; after that no hole.
	if h := s.holes(); h != 0 {
		t.Fatalf("%d holes with a bursty input: the startup allowance should cover the first bursts", h)
	}
	if h := s.m.Hold(); h < 150*time.Millisecond || h > 200*time.Millisecond {
		t.Fatalf("hold %v, want the burst spread (~150 ms, more than the configured hold) plus margin", h)
	}
}

func TestDriftDoesNotInflateHold(t *testing.T) {
	// A tiny hold, so 120 ms of accumulated drift would show if it were
	// mistaken for jitter.
	s := newSim(t, Config{Hold: 10 * time.Millisecond}, aac48)
	frames := int64(600 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, jitter: 3 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 0, frames, -200)
	s.feed(Fallback, path{delay: 40 * time.Millisecond, jitter: 3 * time.Millisecond, tag: 'F'}, "s1", t0, 0, 0, frames, -200)
	s.run(t0.Add(sec(599)))
	if h := s.m.Hold(); h > 30*time.Millisecond {
		t.Fatalf("hold grew to %v under 200 ppm drift; drift is not jitter", h)
	}
	if s.holes() != 0 {
		t.Fatalf("%d holes", s.holes())
	}
}

func TestStallSwitchesWhenTheThresholdIsCrossed(t *testing.T) {
	s := newSim(t, Config{Stall: 500 * time.Millisecond}, aac48)
	frames := int64(20 * framesPerSec48k)
	s.feed(Primary, path{delay: 20 * time.Millisecond, down: cuts([2]time.Duration{sec(10), sec(30)}), tag: 'P'}, "enc-a", t0, 0, 0, frames, 0)
	s.feed(Fallback, path{delay: 30 * time.Millisecond, tag: 'F'}, "enc-b", t0.Add(7*time.Millisecond), 0, 0, frames, 0)
	s.run(t0.Add(sec(12)))
	sw := s.switches()
	if len(sw) != 1 || sw[0].To != Fallback {
		t.Fatalf("switches %v, want one to the fallback", sw)
	}
	// The last primary frame sent before the cut (frame 468, 9.984 s)
	// arrives 20 ms later; the switch is due exactly 500 ms after that,
	// not at the next frame deadline after it.
	lastArrival := t0.Add(s.m.sinceZero(468) + 20*time.Millisecond)
	if got := sw[0].Time.Sub(lastArrival); got != 500*time.Millisecond {
		t.Fatalf("switched %v after the last primary frame arrived, want the 500 ms stall threshold exactly", got)
	}
}

func TestFrameOffsetMapsInputFramesToOutput(t *testing.T) {
	s := newSim(t, Config{}, aac48)
	if _, ok := s.m.FrameOffset(Primary); ok {
		t.Fatal("an offset before any frame")
	}
	// The capture timeline is far from the output's zero: frames 500-799.
	s.feed(Primary, path{delay: 20 * time.Millisecond, tag: 'P'}, "s1", t0, 0, 500, 800, 0)
	s.feed(Fallback, path{delay: 35 * time.Millisecond, tag: 'F'}, "s1", t0, 0, 500, 800, 0)
	s.run(t0.Add(sec(16))) // frame 500 is sent 10.7 s after sample 0
	op, okP := s.m.FrameOffset(Primary)
	of, okF := s.m.FrameOffset(Fallback)
	if !okP || !okF || op != of {
		t.Fatalf("offsets primary %d (%v), fallback %d (%v): aligned inputs share one", op, okP, of, okF)
	}
	checked := 0
	for _, e := range s.out {
		if e.out.Filled {
			continue
		}
		in := int64(e.out.Frame.Data[1]) | int64(e.out.Frame.Data[2])<<8
		if out := s.m.audio.FrameIndex(e.out.Frame.PTS); out != in+op {
			t.Fatalf("input frame %d left as output frame %d, offset says %d", in, out, in+op)
		}
		checked++
	}
	if checked < 200 {
		t.Fatalf("only %d frames emitted", checked)
	}
}
