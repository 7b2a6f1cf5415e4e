// Package merge is the switcher's decision core: it takes the frames of a
// stream's two inputs, their connect/disconnect observations and clock ticks,
// and returns the frames to emit and the events that happened. It does no
// I/O and reads no clock: time is always passed in, so every scenario can be
// replayed exactly in tests.
//
// Timing model. The output runs on its own frame index n with timestamps
// FramePTS(n). Frame n is due at deadline(n) = zero + t(n) + Hold, where zero
// is the lower envelope of the arrival times of the frames mapped to n (the
// earliest any input has delivered that part of the timeline) and Hold is how
// long past that earliest arrival the merge waits for a frame before it falls
// back. Inputs that share a capture session (aligned mode) map by timestamp:
// the same PTS is the same output index for both. An input with another
// session is mapped by arrival time when it connects (spliced), so its frames
// land where they are due; its content then replaces the other input's only
// while it is the active input.
package merge

import (
	"fmt"
	"time"

	"tandem/uplink/media"
)

// Role is an input's place in its stream.
type Role int

const (
	Primary Role = iota
	Fallback
)

func (r Role) String() string {
	if r == Fallback {
		return "fallback"
	}
	return "primary"
}

// Other is the other input of the pair.
func (r Role) Other() Role { return 1 - r }

// Mode says how the stream's inputs relate.
type Mode int

const (
	// ModeSingle: only one input has a timeline.
	ModeSingle Mode = iota
	// ModeAligned: both inputs share a capture session; frames are merged
	// per timestamp.
	ModeAligned
	// ModeSplice: the inputs have independent timelines; the output follows
	// the active input and switches at a frame boundary.
	ModeSplice
)

func (m Mode) String() string {
	switch m {
	case ModeAligned:
		return "aligned"
	case ModeSplice:
		return "splice"
	}
	return "single"
}

// Config tunes the merge. Zero values take the defaults documented on each field.
type Config struct {
	// Hold is how long after a frame's earliest expected arrival the merge
	// waits for it before taking the other input's frame or filling a hole.
	// Default 100 ms.
	Hold time.Duration
	// Grace is how long the stream stays online with no frame from any
	// input; after that it goes offline. Default 10 s.
	Grace time.Duration
	// Stall is how long the active input of a spliced pair may deliver
	// nothing before the merge switches to the other input. Default 500 ms.
	Stall time.Duration
	// Stable is how long a returning primary of a spliced pair must deliver
	// without a stall before the output goes back to it. Default 10 s.
	Stable time.Duration
	// Window is how many frames each input may buffer ahead. Default 512
	// (about 11 s of 48 kHz AAC).
	Window int
}

func (c Config) withDefaults() Config {
	if c.Hold <= 0 {
		c.Hold = 100 * time.Millisecond
	}
	if c.Grace <= 0 {
		c.Grace = 10 * time.Second
	}
	if c.Stall <= 0 {
		c.Stall = 500 * time.Millisecond
	}
	if c.Stable <= 0 {
		c.Stable = 10 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 512
	}
	return c
}

// Output is one frame to emit, on the output timeline.
type Output struct {
	Frame media.Frame
	// Source is the input the frame came from; meaningless when Filled.
	Source Role
	// Filled is set for a silent frame the merge made up because no input
	// had this part of the timeline in time.
	Filled bool
}

// EventKind names what happened.
type EventKind string

const (
	EventOnline    EventKind = "online"
	EventOffline   EventKind = "offline"
	EventSwitch    EventKind = "switch"
	EventMode      EventKind = "mode"
	EventHoleStart EventKind = "hole-start"
	EventHoleEnd   EventKind = "hole-end"
	EventResync    EventKind = "resync"
	EventHold      EventKind = "hold"
)

// maxBehind is how late the output may fall before it restarts its clock.
const maxBehind = 2 * time.Second

// Event is something the merge decided, returned as data.
type Event struct {
	Time   time.Time
	Kind   EventKind
	From   Role
	To     Role
	Reason string
}

func (e Event) String() string {
	switch e.Kind {
	case EventSwitch:
		return fmt.Sprintf("%s %s->%s: %s", e.Kind, e.From, e.To, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Reason)
}

// Counters are the merge's running totals.
type Counters struct {
	Emitted      int64 // frames emitted, filled ones included
	FromFallback int64 // frames taken from the fallback input
	Holes        int64 // silent frames filled in
	Switches     int64 // changes of the active input
}

// InputCounters are one input's running totals.
type InputCounters struct {
	Received int64 // frames pushed
	Used     int64 // frames emitted
	Late     int64 // frames that arrived after their deadline
	Outside  int64 // frames too far ahead of the output to buffer
}

const never = int64(-1 << 62)

type slot struct {
	index int64 // output index held, or never
	frame media.Frame
}

type input struct {
	present  bool // connected and has a config
	session  string
	mapped   bool
	shift    int64 // output index = input index + shift
	refPTS   int64 // last unwrapped PTS, for 33-bit unwrapping
	hasRef   bool
	lastSeen time.Time
	// since is when the input's current run of frames without a stall began.
	since time.Time
	// zero is this input's own arrival envelope (see Merge.zero), and
	// jitter the most any of its frames arrived after it, this window and
	// the last: a bursty publisher (several frames per PES) needs that much
	// more hold.
	zero     time.Time
	hasZero  bool
	jitter   [2]time.Duration
	minLate  time.Duration // smallest lateness this window: drift, not jitter
	slots    []slot
	counters InputCounters
}

// Merge is the state of one stream's merge. It is not safe for concurrent
// use: one goroutine owns it.
type Merge struct {
	cfg   Config
	audio media.AudioConfig
	// silence is a raw AAC access unit that decodes to silence.
	silence []byte

	in     [2]input
	active Role
	mode   Mode

	online    bool
	next      int64     // next output index to emit
	zero      time.Time // wall time of output index 0 (lower envelope of arrivals)
	hasZero   bool
	winMin    time.Duration // lowest lateness seen in the current drift window
	winStart  time.Time
	lastFrame time.Time     // last time any input delivered a frame
	hold      time.Duration // cfg.Hold widened to cover the inputs' own jitter
	inHole    bool

	counters Counters
	events   []Event
	out      []Output
}

// New makes a merge for a stream whose audio is described by audio;
// silence is a raw access unit of that configuration that decodes to silence.
func New(cfg Config, audio media.AudioConfig, silence []byte) *Merge {
	cfg = cfg.withDefaults()
	m := &Merge{cfg: cfg, audio: audio, silence: silence, hold: cfg.Hold}
	for i := range m.in {
		m.in[i].slots = make([]slot, cfg.Window)
		for j := range m.in[i].slots {
			m.in[i].slots[j].index = never
		}
	}
	return m
}

// Audio is the stream's audio configuration.
func (m *Merge) Audio() media.AudioConfig { return m.audio }

// Online says whether the stream is emitting.
func (m *Merge) Online() bool { return m.online }

// Active is the input the output currently follows.
func (m *Merge) Active() Role { return m.active }

// Mode is how the inputs currently relate.
func (m *Merge) Mode() Mode { return m.mode }

// Counters returns the output totals.
func (m *Merge) Counters() Counters { return m.counters }

// InputCounters returns one input's totals.
func (m *Merge) InputCounters(r Role) InputCounters { return m.in[r].counters }

// Connect records that an input is present with the given capture session
// ("" for a publisher that declares none: it never aligns with anything).
// A reconnect with the same session keeps its place on the timeline.
func (m *Merge) Connect(now time.Time, r Role, session string) {
	in := &m.in[r]
	if in.present && in.session == session {
		return
	}
	if in.session != session || session == "" {
		in.mapped = false
		in.hasRef = false
		m.clearSlots(r)
	}
	in.present = true
	in.session = session
	in.lastSeen = now
	m.updateMode(now)
}

// Disconnect records that an input went away. Its buffered frames stay
// usable until their deadlines pass: a frame that arrived is never thrown
// away early.
func (m *Merge) Disconnect(now time.Time, r Role, reason string) {
	in := &m.in[r]
	if !in.present {
		return
	}
	in.present = false
	if m.active == r && m.in[r.Other()].present {
		m.switchTo(now, r.Other(), fmt.Sprintf("%s disconnected: %s", r, reason))
	}
	m.updateMode(now)
}

func (m *Merge) updateMode(now time.Time) {
	p, f := &m.in[Primary], &m.in[Fallback]
	mode := ModeSingle
	if p.present && f.present {
		if p.session != "" && p.session == f.session {
			mode = ModeAligned
		} else {
			mode = ModeSplice
		}
	}
	if mode != m.mode {
		m.mode = mode
		m.emitEvent(Event{Time: now, Kind: EventMode, Reason: mode.String()})
	}
	// The primary is preferred whenever it is there.
	if p.present && m.active != Primary && mode != ModeSplice {
		m.switchTo(now, Primary, "primary present")
	}
	if !p.present && f.present && m.active != Fallback {
		m.switchTo(now, Fallback, "primary absent")
	}
}

func (m *Merge) switchTo(now time.Time, r Role, reason string) {
	if m.active == r {
		return
	}
	m.emitEvent(Event{Time: now, Kind: EventSwitch, From: m.active, To: r, Reason: reason})
	m.active = r
	m.counters.Switches++
}

func (m *Merge) emitEvent(e Event) { m.events = append(m.events, e) }

func (m *Merge) clearSlots(r Role) {
	for j := range m.in[r].slots {
		m.in[r].slots[j] = slot{index: never}
	}
}

// wrap is the period of 33-bit MPEG timestamps.
const wrap = int64(1) << 33

// unwrap returns the value of the 33-bit timestamp pts nearest ref.
func unwrap(pts, ref int64) int64 {
	pts &= wrap - 1
	base := ref - (ref & (wrap - 1))
	v := base + pts
	if v-ref > wrap/2 {
		v -= wrap
	} else if ref-v > wrap/2 {
		v += wrap
	}
	return v
}

// sinceZero is the wall-clock offset of output index n from index 0.
func (m *Merge) sinceZero(n int64) time.Duration {
	samples := n * int64(m.audio.FrameSamples())
	sr := int64(m.audio.SampleRate)
	return time.Duration(samples/sr)*time.Second + time.Duration((samples%sr)*int64(time.Second)/sr)
}

// indexAt is the output index whose nominal time is nearest t.
func (m *Merge) indexAt(t time.Time) int64 {
	d := t.Sub(m.zero)
	fs := int64(m.audio.FrameSamples())
	sr := int64(m.audio.SampleRate)
	// n = d * sr / (fs * 1e9), rounded, computed without overflow.
	sec := int64(d / time.Second)
	rem := int64(d % time.Second)
	num := sec*sr + rem*sr/int64(time.Second)
	return (num + fs/2) / fs
}

// skip moves the output clock k frames later without a gap in output
// timestamps: what was due at next+k is now due at next, and every input's
// mapping moves with it, so arrival lateness is unchanged.
func (m *Merge) skip(k int64) {
	if k <= 0 {
		return
	}
	m.zero = m.zero.Add(m.sinceZero(m.next+k) - m.sinceZero(m.next))
	for i := range m.in {
		m.in[i].shift -= k
		m.in[i].hasZero = false
		m.clearSlots(Role(i))
	}
}

// Deadline is when output index n is due.
func (m *Merge) deadline(n int64) time.Time {
	return m.zero.Add(m.sinceZero(n) + m.hold)
}

// Hold is the current wait past a frame's earliest expected arrival: the
// configured hold, or more while an input delivers in bursts.
func (m *Merge) Hold() time.Duration { return m.hold }

// maxHold bounds how far a bursty input can stretch the hold.
const maxHold = 2 * time.Second

// startupAllowance is extra hold while a new online period learns its
// inputs' jitter.
const startupAllowance = 250 * time.Millisecond

// jitterMargin is added to an input's measured burst spread.
const jitterMargin = 20 * time.Millisecond

// trackJitter updates input r's own envelope with a frame for output index
// n arriving at now, and widens the hold if the input is burstier than the
// hold covers.
func (m *Merge) trackJitter(now time.Time, r Role, n int64) {
	in := &m.in[r]
	implied := now.Add(-m.sinceZero(n))
	if !in.hasZero || implied.Before(in.zero) {
		in.zero, in.hasZero = implied, true
		in.minLate = 0
		return
	}
	late := implied.Sub(in.zero)
	if late < in.minLate {
		in.minLate = late
	}
	if late > in.jitter[0] {
		in.jitter[0] = late
		if h := min(late+jitterMargin, maxHold); h > m.hold {
			m.setHold(now, h, fmt.Sprintf("%s delivered a frame %v after its earliest arrivals", r, late.Round(time.Millisecond)))
		}
	}
}

// rollJitter starts a new jitter window; the hold narrows again once no
// input has been bursty for two windows.
func (m *Merge) rollJitter(now time.Time) {
	h := m.cfg.Hold
	for i := range m.in {
		in := &m.in[i]
		// A sender clock slower than ours makes every frame a little later
		// than the envelope: that is drift, so the envelope follows it and
		// it does not count as jitter.
		if in.hasZero && in.minLate > 0 && in.minLate < time.Duration(1<<62) {
			in.zero = in.zero.Add(in.minLate)
			in.jitter[0] = max(0, in.jitter[0]-in.minLate)
		}
		in.minLate = time.Duration(1 << 62)
		if j := max(in.jitter[0], in.jitter[1]); j > 0 {
			h = max(h, min(j+jitterMargin, maxHold))
		}
		in.jitter[1], in.jitter[0] = in.jitter[0], 0
	}
	if d := h - m.hold; d >= time.Millisecond || d <= -time.Millisecond {
		m.setHold(now, h, "jitter measured over the last windows")
	}
}

func (m *Merge) setHold(now time.Time, h time.Duration, why string) {
	m.emitEvent(Event{Time: now, Kind: EventHold, Reason: fmt.Sprintf("hold %v -> %v: %s", m.hold.Round(time.Millisecond), h.Round(time.Millisecond), why)})
	m.hold = h
}

// Push hands the merge one audio frame from input r, arriving at now.
func (m *Merge) Push(now time.Time, r Role, f media.Frame) {
	in := &m.in[r]
	in.counters.Received++
	if in.lastSeen.IsZero() || now.Sub(in.lastSeen) >= m.cfg.Stall {
		in.since = now
	}
	in.lastSeen = now
	m.lastFrame = now
	if !in.present {
		// A frame without Connect: treat the input as present with no session.
		m.Connect(now, r, "")
	}

	pts := f.PTS
	if in.hasRef {
		pts = unwrap(pts, in.refPTS)
	} else if other := &m.in[r.Other()]; m.mode == ModeAligned && other.hasRef {
		pts = unwrap(pts, other.refPTS)
	}
	in.refPTS, in.hasRef = pts, true
	idx := m.audio.FrameIndex(pts)

	if !m.online {
		m.goOnline(now, r, idx)
	}
	if !in.mapped {
		m.mapInput(now, r, idx)
	}
	n := idx + in.shift

	if n >= m.next {
		// Only frames that made it in time teach the merge an input's
		// jitter: a link that comes back delivers stale frames, and they
		// must not stretch everyone's latency.
		m.trackJitter(now, r, n)
	}
	// Arrival envelope: a frame earlier than expected moves the output's
	// zero earlier; the window minimum lets it drift later (see Tick).
	late := now.Sub(m.zero.Add(m.sinceZero(n)))
	if late < 0 && m.mode != ModeSplice || late < 0 && r == m.active {
		m.zero = m.zero.Add(late)
		late = 0
	}
	if late < m.winMin {
		m.winMin = late
	}

	if n < m.next {
		in.counters.Late++
		return
	}
	if n >= m.next+int64(len(in.slots)) {
		in.counters.Outside++
		return
	}
	s := &in.slots[n%int64(len(in.slots))]
	s.index = n
	s.frame = f
}

// goOnline starts (or restarts) the output timeline with input r's frame idx.
func (m *Merge) goOnline(now time.Time, r Role, idx int64) {
	m.online = true
	m.inHole = false
	// The output timeline continues where it stopped: the first frame due
	// is m.next, and it is due now + Hold.
	m.zero = now.Add(-m.sinceZero(m.next))
	m.hasZero = true
	// Until the inputs' jitter is known, wait longer: a publisher that
	// packs several frames per PES would otherwise lose its first bursts.
	// The first jitter window narrows the hold to what was measured.
	m.hold = m.cfg.Hold + startupAllowance
	m.winMin = 0
	m.winStart = now
	for i := range m.in {
		m.in[i].mapped = false
		m.clearSlots(Role(i))
	}
	m.emitEvent(Event{Time: now, Kind: EventOnline, Reason: fmt.Sprintf("%s delivered a frame", r)})
}

// mapInput places input r's timeline on the output timeline.
func (m *Merge) mapInput(now time.Time, r Role, idx int64) {
	in := &m.in[r]
	other := &m.in[r.Other()]
	if m.mode == ModeAligned && other.mapped {
		in.shift = other.shift
	} else {
		// Map by arrival: the frame arriving now belongs where the output's
		// clock stands now, but never before the next frame to emit.
		n := m.indexAt(now)
		if n < m.next {
			n = m.next
		}
		in.shift = n - idx
	}
	in.mapped = true
	in.hasZero = false
}

// NextDeadline is when Tick next has work, and false when the stream is offline.
func (m *Merge) NextDeadline() (time.Time, bool) {
	if !m.online {
		return time.Time{}, false
	}
	d := m.deadline(m.next)
	if g := m.lastFrame.Add(m.cfg.Grace); g.Before(d) {
		d = g
	}
	return d, true
}

// Tick emits every frame due at now and returns them with the events that
// happened since the last call. The returned slices are reused by the next
// call.
func (m *Merge) Tick(now time.Time) ([]Output, []Event) {
	m.out = m.out[:0]
	if m.online {
		m.checkStall(now)
		m.driftWindow(now)
		if behind := now.Sub(m.deadline(m.next)); behind > maxBehind {
			// The owner was not scheduled for a long time (suspended VM,
			// stopped process): emitting the backlog in a burst would only
			// flood listeners. Restart the clock at the next frame instead.
			m.skip(m.indexAt(now.Add(-m.cfg.Hold)) - m.next)
			m.emitEvent(Event{Time: now, Kind: EventResync, Reason: fmt.Sprintf("output clock was %v behind; restarted it", behind.Round(time.Millisecond))})
		}
		for !m.deadline(m.next).After(now) && now.Sub(m.lastFrame) < m.cfg.Grace {
			m.emitNext(now)
		}
		if now.Sub(m.lastFrame) >= m.cfg.Grace {
			m.goOffline(now)
		}
	}
	ev := m.events
	m.events = m.events[:0:0]
	return m.out, ev
}

// driftWindow lets the output's zero follow a sender clock slower than ours:
// if over a whole window every frame arrived later than the envelope, the
// envelope moves later by the smallest lateness seen.
func (m *Merge) driftWindow(now time.Time) {
	const window = 5 * time.Second
	if now.Sub(m.winStart) < window {
		return
	}
	if m.winMin > 0 && m.winMin < time.Duration(1<<62) {
		m.zero = m.zero.Add(m.winMin)
	}
	m.rollJitter(now)
	m.winMin = time.Duration(1 << 62)
	m.winStart = now
}

func (m *Merge) checkStall(now time.Time) {
	if m.mode != ModeSplice {
		return
	}
	a, o := m.active, m.active.Other()
	if now.Sub(m.in[a].lastSeen) >= m.cfg.Stall && now.Sub(m.in[o].lastSeen) < m.cfg.Stall {
		m.switchTo(now, o, fmt.Sprintf("%s delivered no frame for %v", a, now.Sub(m.in[a].lastSeen).Round(time.Millisecond)))
		return
	}
	p := &m.in[Primary]
	if a == Fallback && p.present && now.Sub(p.lastSeen) < m.cfg.Stall && now.Sub(p.since) >= m.cfg.Stable {
		m.switchTo(now, Primary, fmt.Sprintf("primary stable for %v", m.cfg.Stable))
	}
}

func (m *Merge) take(r Role, n int64) (media.Frame, bool) {
	in := &m.in[r]
	s := &in.slots[n%int64(len(in.slots))]
	if s.index != n {
		return media.Frame{}, false
	}
	f := s.frame
	*s = slot{index: never}
	return f, true
}

func (m *Merge) emitNext(now time.Time) {
	n := m.next
	m.next++
	a, o := m.active, m.active.Other()
	fa, okA := m.take(a, n)
	fo, okO := m.take(o, n)
	var out Output
	switch {
	case okA:
		out = Output{Frame: fa, Source: a}
	case okO && m.mode != ModeSplice:
		// Aligned: the other input's frame of the same instant.
		out = Output{Frame: fo, Source: o}
	default:
		out = Output{Filled: true, Frame: media.Frame{Kind: media.KindAudio, Key: true, Data: m.silence}}
	}
	pts := m.audio.FramePTS(n)
	out.Frame.PTS, out.Frame.DTS = pts, pts
	m.counters.Emitted++
	if out.Filled {
		m.counters.Holes++
		if !m.inHole {
			m.inHole = true
			m.emitEvent(Event{Time: now, Kind: EventHoleStart, Reason: "no input delivered in time; filling with silence"})
		}
	} else {
		m.in[out.Source].counters.Used++
		if out.Source == Fallback {
			m.counters.FromFallback++
		}
		if m.inHole {
			m.inHole = false
			m.emitEvent(Event{Time: now, Kind: EventHoleEnd, Reason: fmt.Sprintf("%s delivering again", out.Source)})
		}
	}
	m.out = append(m.out, out)
}

func (m *Merge) goOffline(now time.Time) {
	m.online = false
	m.inHole = false
	for i := range m.in {
		m.in[i].mapped = false
		m.clearSlots(Role(i))
	}
	m.emitEvent(Event{Time: now, Kind: EventOffline, Reason: fmt.Sprintf("no frame from any input for %v", m.cfg.Grace)})
}
