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
	"math"
	"slices"
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
	// waits for it before taking the other input's frame or filling a hole:
	// how much later than the other input an input may deliver and still
	// be heard. The merge adds the inputs' regular burst spread (a sender
	// that delivers frames in bursts, one capture block or one packed
	// message at a time, delivers all but the last of each burst later
	// than its earliest arrivals), so that bursts do not eat into it.
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
	// Policy decides which input the output follows.
	Policy Policy
	// Hysteresis is the score margin the best policy needs before it
	// switches (scores run 0..100). Default 15.
	Hysteresis float64
	// BestHold is how long the other input must keep that margin. Default 3 s.
	BestHold time.Duration
	// BestDwell is the least time between two switches of the best policy.
	// Default 10 s.
	BestDwell time.Duration
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
	if c.Hysteresis <= 0 {
		c.Hysteresis = 15
	}
	if c.BestHold <= 0 {
		c.BestHold = 3 * time.Second
	}
	if c.BestDwell <= 0 {
		c.BestDwell = 10 * time.Second
	}
	return c
}

// Policy decides which input the output follows.
type Policy int

const (
	// PrimaryPreferred fails over when the primary (or the pinned input)
	// is unhealthy and returns once it has been healthy for Config.Stable.
	PrimaryPreferred Policy = iota
	// Equal fails over when the active input is unhealthy and stays on
	// whatever is active after that.
	Equal
	// Best follows the input with the better score, with hysteresis.
	Best
)

func (p Policy) String() string {
	switch p {
	case Equal:
		return "equal"
	case Best:
		return "best"
	}
	return "primary-preferred"
}

// ParsePolicy reads a policy name as written in configuration.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", "primary-preferred":
		return PrimaryPreferred, nil
	case "equal":
		return Equal, nil
	case "best":
		return Best, nil
	}
	return 0, fmt.Errorf("unknown policy %q (want primary-preferred, equal or best)", s)
}

// HealthState orders how usable an input is.
type HealthState int

const (
	Healthy HealthState = iota
	Degraded
	Failed
)

func (h HealthState) String() string {
	switch h {
	case Degraded:
		return "degraded"
	case Failed:
		return "failed"
	}
	return "healthy"
}

// InputHealth is what the health monitor says of an input.
type InputHealth struct {
	State  HealthState
	Reason string
	// Score ranks inputs for the best policy: 0..100, higher is better.
	Score float64
	// Content is set when a reason is about the programme itself (silence,
	// imbalance, frozen or black video) rather than its transport. In
	// aligned mode only content failures make a return wait for the
	// stability window: transport failures are covered frame by frame.
	Content bool
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
	EventManual    EventKind = "manual"
	// EventVideo: the output video starts, or changes source, at a keyframe.
	EventVideo EventKind = "video"
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

	VideoReceived int64 // video frames pushed
	VideoUsed     int64 // video frames emitted
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
	// health is the monitor's last word; okSince is when the input last
	// became healthy (zero while it is not); failed is set once it failed
	// during this online period (so a return waits for the stability window).
	health  InputHealth
	okSince time.Time
	failed  bool
	// zero is this input's own arrival envelope (see Merge.zero), and
	// jitter the most any of its frames arrived after it, this window and
	// the last: a bursty publisher (several frames per PES) needs that much
	// more hold.
	zero    time.Time
	hasZero bool
	jitter  [2]time.Duration
	minLate time.Duration // smallest lateness this window: drift, not jitter
	// lates are this window's latenesses of at most Hold; their 90th
	// percentile is how late the input's frames regularly are because it
	// sends in bursts (a capture block, a packed message), and spread is
	// that of the last window. It is added to the hold; rarer late frames
	// (a link returning) only widen it to their lateness plus a margin.
	lates    []time.Duration
	spread   time.Duration
	slots    []slot
	counters InputCounters

	// video holds the input's frames waiting for the output (timestamps
	// unwrapped, not yet moved by vOffset), oldest first; vOffset moves
	// them to the output timeline along with the audio; videoCfg's
	// parameter sets go in band with its keyframes.
	video    []media.Frame
	vOffset  int64
	videoCfg media.VideoConfig
	// vDelay holds the input's video back by less than a frame after a
	// splice (see releaseVideo); vInterval is its frame interval and
	// vLastDTS its last pushed DTS, to measure it.
	vDelay    int64
	vInterval int64
	vLastDTS  int64
	vHasLast  bool
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
	// pinned is an operator's choice of input: it takes the primary's
	// place as the preferred input, and automatic failover stays armed.
	pinned     bool
	pin        Role
	lastSwitch time.Time
	betterFrom time.Time // best policy: since when the other input leads

	online    bool
	next      int64         // next output index to emit
	zero      time.Time     // wall time of output index 0 (lower envelope of arrivals)
	winMin    time.Duration // lowest lateness seen in the current drift window
	winStart  time.Time
	lastFrame time.Time     // last time any input delivered a frame
	lastTick  time.Time     // the latest Tick: deadlines up to it are done
	hold      time.Duration // cfg.Hold plus the inputs' burst spread, or more for late frames
	inHole    bool

	counters Counters
	events   []Event
	out      []Output

	video         videoOut
	videoCounters VideoCounters
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

// FrameOffset is where input r's timeline sits on the output's: its frame
// with index i (PTS FramePTS(i)) is output frame i + offset. False while
// the input is not mapped (offline, or no frame from it yet). Aligned
// inputs share one offset.
func (m *Merge) FrameOffset(r Role) (int64, bool) {
	in := &m.in[r]
	if !m.online || !in.mapped {
		return 0, false
	}
	return in.shift, true
}

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
	// A new connection may be a new encoder: its video must start at a
	// keyframe.
	m.resetVideo(r)
	in.present = true
	in.session = session
	in.lastSeen = now
	in.health = InputHealth{}
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
	if m.online && !in.lastSeen.IsZero() && m.mode != ModeAligned {
		in.failed = true
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
	m.decide(now)
}

func (m *Merge) switchTo(now time.Time, r Role, reason string) {
	if m.active == r {
		return
	}
	m.emitEvent(Event{Time: now, Kind: EventSwitch, From: m.active, To: r, Reason: reason})
	m.active = r
	m.lastSwitch = now
	m.betterFrom = time.Time{}
	if m.online {
		m.counters.Switches++
	}
}

// SetHealth records the health monitor's view of input r.
func (m *Merge) SetHealth(now time.Time, r Role, h InputHealth) {
	m.in[r].health = h
	m.decide(now)
}

// Health is input r's effective health: the monitor's view, overridden by
// what the merge sees itself (absent, or no frame for the stall threshold).
func (m *Merge) Health(now time.Time, r Role) InputHealth {
	in := &m.in[r]
	switch {
	case !in.present:
		return InputHealth{State: Failed, Reason: "disconnected"}
	case in.lastSeen.IsZero():
		return InputHealth{State: Failed, Reason: "no frame yet"}
	case now.Sub(in.lastSeen) >= m.cfg.Stall:
		return InputHealth{State: Failed, Reason: fmt.Sprintf("stall: no frame for %v", now.Sub(in.lastSeen).Round(time.Millisecond))}
	}
	h := in.health
	if h.State == Healthy && h.Score == 0 {
		h.Score = 100
	}
	return h
}

// Pin makes r the preferred input, as an operator's manual switch. The
// output goes to r now if r is not failed; automatic failover stays armed.
func (m *Merge) Pin(now time.Time, r Role) error {
	if !m.in[r].present {
		return fmt.Errorf("the %s input is not connected", r)
	}
	m.pinned, m.pin = true, r
	m.emitEvent(Event{Time: now, Kind: EventManual, From: m.active, To: r, Reason: fmt.Sprintf("operator chose the %s input", r)})
	if h := m.Health(now, r); h.State != Failed {
		m.switchTo(now, r, "manual switch")
	}
	m.decide(now)
	return nil
}

// Unpin returns the choice of input to the policy.
func (m *Merge) Unpin(now time.Time) {
	if !m.pinned {
		return
	}
	m.pinned = false
	m.emitEvent(Event{Time: now, Kind: EventManual, Reason: "operator returned the choice to the " + m.cfg.Policy.String() + " policy"})
	m.decide(now)
}

// Preferred is the input the policy returns to, and whether an operator chose it.
func (m *Merge) Preferred() (Role, bool) {
	if m.pinned {
		return m.pin, true
	}
	return Primary, false
}

// Policy is the stream's policy.
func (m *Merge) Policy() Policy { return m.cfg.Policy }

// decide applies the policy: which input the output follows now.
func (m *Merge) decide(now time.Time) {
	var hs [2]InputHealth
	for r := range m.in {
		in := &m.in[r]
		hs[r] = m.Health(now, Role(r))
		if hs[r].State == Healthy {
			if in.okSince.IsZero() {
				in.okSince = now
			}
		} else {
			in.okSince = time.Time{}
			// In aligned mode a transport outage (stall, disconnect) is
			// covered frame by frame and the way back is hitless, so only
			// what the health monitor reports (silence, loss, ...) makes
			// the return wait for the stability window.
			transport := !in.health.Content
			if m.online && in.present && hs[r].State == Failed && !in.lastSeen.IsZero() && !(m.mode == ModeAligned && transport) {
				in.failed = true
			}
		}
	}
	a := m.active
	o := a.Other()
	ha, ho := hs[a], hs[o]
	if !m.in[o].present {
		return // nothing to switch to
	}
	if !m.in[a].present {
		m.switchTo(now, o, fmt.Sprintf("%s %s", a, ha.Reason))
		return
	}
	policy := m.cfg.Policy
	if m.pinned {
		policy = PrimaryPreferred
	}
	switch policy {
	case PrimaryPreferred:
		pref, _ := m.Preferred()
		hp := hs[pref]
		if a == pref {
			if ha.State != Healthy && ho.State < ha.State {
				// Leaving the preferred input for any reason arms the
				// stability window for its return, except a transport
				// outage in aligned mode, which frames cover hitlessly.
				if m.mode != ModeAligned || ha.Content {
					m.in[pref].failed = true
				}
				m.switchTo(now, o, fmt.Sprintf("%s %s: %s", a, ha.State, ha.Reason))
			}
			return
		}
		// On the other input: return to the preferred one once it is
		// stable, at once if it never failed (it is only now arriving),
		// or at once if the active input is worse off.
		in := &m.in[pref]
		switch {
		case hp.State == Healthy && !in.failed:
			m.switchTo(now, pref, fmt.Sprintf("%s present and healthy", pref))
		case hp.State == Healthy && now.Sub(in.okSince) >= m.cfg.Stable:
			in.failed = false
			m.switchTo(now, pref, fmt.Sprintf("%s healthy for %v", pref, m.cfg.Stable))
		case ha.State == Failed && hp.State < Failed:
			m.switchTo(now, pref, fmt.Sprintf("%s %s: %s", a, ha.State, ha.Reason))
		}
	case Equal:
		if ha.State != Healthy && ho.State < ha.State {
			m.switchTo(now, o, fmt.Sprintf("%s %s: %s", a, ha.State, ha.Reason))
		}
	case Best:
		if ha.State == Failed && ho.State < Failed {
			m.switchTo(now, o, fmt.Sprintf("%s %s: %s", a, ha.State, ha.Reason))
			return
		}
		sa, so := score(ha), score(ho)
		if so <= sa+m.cfg.Hysteresis {
			m.betterFrom = time.Time{}
			return
		}
		if m.betterFrom.IsZero() {
			m.betterFrom = now
		}
		if now.Sub(m.betterFrom) >= m.cfg.BestHold && (m.lastSwitch.IsZero() || now.Sub(m.lastSwitch) >= m.cfg.BestDwell) {
			m.switchTo(now, o, fmt.Sprintf("%s scores %.0f against %s's %.0f for %v", o, so, a, sa, m.cfg.BestHold))
		}
	}
}

// score ranks an input for the best policy.
func score(h InputHealth) float64 {
	switch h.State {
	case Failed:
		return -1
	case Degraded:
		return min(h.Score, 50)
	}
	return h.Score
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
	dv := m.audio.FramePTS(m.next+k) - m.audio.FramePTS(m.next)
	for i := range m.in {
		m.in[i].shift -= k
		m.in[i].vOffset -= dv
		m.resetVideo(Role(i))
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

// jitterMargin is added to an input's largest lateness when the hold
// widens to cover it.
const jitterMargin = 20 * time.Millisecond

// spreadPercentile is the share of an input's frames whose lateness counts
// as its regular burst spread.
const spreadPercentile = 0.9

// trackJitter updates input r's own envelope with a frame for output index
// n arriving at now, and widens the hold at once when a frame comes later
// than the hold has room for.
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
	if late <= m.cfg.Hold {
		in.lates = append(in.lates, late)
	}
	if late > in.jitter[0] {
		in.jitter[0] = late
		if h := min(late+jitterMargin, maxHold); h > m.hold {
			m.setHold(now, h, fmt.Sprintf("%s delivered a frame %v after its earliest arrivals", r, late.Round(time.Millisecond)))
		}
	}
}

// rollJitter starts a new jitter window. The hold is the configured hold
// plus the inputs' regular spread (so bursts do not eat the margin a
// slower link has), or their largest lateness plus a margin if that is
// more; it narrows again once no input has been late for two windows.
// The spread counts only latenesses within the configured hold, so a
// widened hold cannot feed on the late frames it let in.
func (m *Merge) rollJitter(now time.Time) {
	h := m.cfg.Hold
	for i := range m.in {
		in := &m.in[i]
		// A sender clock slower than ours makes every frame a little later
		// than the envelope: that is drift, so the envelope follows it and
		// it does not count as jitter.
		drift := time.Duration(0)
		if in.hasZero && in.minLate > 0 && in.minLate < time.Duration(1<<62) {
			drift = in.minLate
			in.zero = in.zero.Add(drift)
			in.jitter[0] = max(0, in.jitter[0]-drift)
		}
		in.minLate = time.Duration(1 << 62)
		spread := max(0, percentile(in.lates, spreadPercentile)-drift)
		in.lates = in.lates[:0]
		if j := max(in.jitter[0], in.jitter[1]); j > 0 {
			h = max(h, min(j+jitterMargin, maxHold))
		}
		h = max(h, m.cfg.Hold+max(spread, in.spread))
		in.jitter[1], in.jitter[0] = in.jitter[0], 0
		in.spread = spread
	}
	if d := h - m.hold; d >= time.Millisecond || d <= -time.Millisecond {
		m.setHold(now, h, "jitter measured over the last windows")
	}
}

// percentile is the nearest-rank p-th percentile of xs (0 if empty); it
// sorts xs.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	k := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[min(max(k, 0), len(xs)-1)]
}

func (m *Merge) setHold(now time.Time, h time.Duration, why string) {
	m.emitEvent(Event{Time: now, Kind: EventHold, Reason: fmt.Sprintf("hold %v -> %v: %s", m.hold.Round(time.Millisecond), h.Round(time.Millisecond), why)})
	m.hold = h
}

// Push hands the merge one frame from input r, arriving at now.
func (m *Merge) Push(now time.Time, r Role, f media.Frame) {
	if f.Kind == media.KindVideo {
		m.pushVideo(now, r, f)
		return
	}
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
		m.mapInput(now, r, idx, pts)
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
func (m *Merge) mapInput(now time.Time, r Role, idx, pts int64) {
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
	// The input's video moves with its audio: the offset that puts this
	// audio frame at its output timestamp.
	in.vOffset = m.audio.FramePTS(idx+in.shift) - pts
}

// NextDeadline is when Tick next has work, and false when the stream is
// offline: the next frame's deadline, the grace period's end, or the
// moment an input's frames will have stopped for the stall threshold, so
// a stall is acted on when it is crossed, not at the next frame.
func (m *Merge) NextDeadline() (time.Time, bool) {
	if !m.online {
		return time.Time{}, false
	}
	d := m.deadline(m.next)
	if g := m.lastFrame.Add(m.cfg.Grace); g.Before(d) {
		d = g
	}
	for i := range m.in {
		in := &m.in[i]
		if s := in.lastSeen.Add(m.cfg.Stall); in.present && !in.lastSeen.IsZero() && s.After(m.lastTick) && s.Before(d) {
			d = s
		}
	}
	return d, true
}

// Tick emits every frame due at now and returns them with the events that
// happened since the last call. The returned slices are reused by the next
// call.
func (m *Merge) Tick(now time.Time) ([]Output, []Event) {
	m.out = m.out[:0]
	if now.After(m.lastTick) {
		m.lastTick = now
	}
	if m.online {
		m.decide(now)
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
		// Video that arrived after its instant's audio still goes out
		// while it follows the last frame emitted.
		m.releaseVideo(now, m.audio.FramePTS(m.next-1))
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
	// The video before this instant goes first, so the output is in
	// timestamp order (an HLS segment cut at a keyframe gets no audio of
	// the next one).
	m.releaseVideo(now, m.audio.FramePTS(n))
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
		m.resetVideo(Role(i))
	}
	m.emitEvent(Event{Time: now, Kind: EventOffline, Reason: fmt.Sprintf("no frame from any input for %v", m.cfg.Grace)})
}
