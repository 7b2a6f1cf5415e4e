// Package capture is the appliance's capture clock. A Capture reads PCM
// from a Source, cuts it into blocks numbered by one sample counter (the
// session's timeline) and hands every block to every subscriber: both
// feeds' encoders, the level meters. Timestamps downstream are computed
// from Block.Index, so everything fed from one Capture is aligned sample
// for sample.
//
// The timeline survives a device that disappears: the Capture reports it,
// fills the gap with silence paced by the wall clock, reopens the device
// with a bounded backoff and carries on, so Index keeps matching real time
// and the feeds' timestamps stay continuous. Only a real restart (a new
// Capture, or a device that comes back in another format) starts a new
// session with a new id.
//
// Feed profiles and the rules that make two feeds a matched pair
// (FeedProfile, MatchFeeds) live here too; capture/encoder turns a profile
// into an encoder.
package capture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Block is a run of consecutive frames of the session's timeline.
type Block struct {
	// Index is the session sample index of the first frame in Samples.
	Index int64
	// Samples are interleaved. They are shared by every subscriber:
	// read-only.
	Samples []int16
	Format  Format
	// Levels are this block's levels.
	Levels Levels
	// Captured is the wall time of the block's last sample.
	Captured time.Time
	// Session is the id of the session the block belongs to: it changes
	// only when the timeline restarts (and Index with it).
	Session string
	// Filled marks a block of silence inserted while the device was gone.
	Filled bool
}

// Frames is the number of frames in the block.
func (b Block) Frames() int {
	if b.Format.Channels <= 0 {
		return 0
	}
	return len(b.Samples) / b.Format.Channels
}

// End is the index just after the block's last frame.
func (b Block) End() int64 { return b.Index + int64(b.Frames()) }

// Session is one unbroken capture timeline.
type Session struct {
	// ID is random hex, new for every timeline.
	ID     string
	Format Format
	// Started is the wall time of sample index 0 (zero until the first
	// block of the session).
	Started time.Time
}

// Config tunes a Capture. The zero value works for a source that never
// fails.
type Config struct {
	// BlockFrames is the number of frames per block (default 1024, one
	// AAC frame).
	BlockFrames int
	// Reopen opens the device again after it failed. Nil: a failed source
	// ends Run with its error.
	Reopen func(ctx context.Context) (Source, error)
	// SilenceDBFS is the RMS level under which every channel must be for
	// audio to count as silence (default −50).
	SilenceDBFS float64
	Log         *slog.Logger
	// Session fixes the first session's id (tandem-testpub shares one
	// between processes); empty: random.
	Session string
	// Format is the timeline's format when New is given no source (the
	// device could not be opened at start): silence in this format is
	// published until Reopen succeeds.
	Format Format
	// ReopenBackoff is the first delay between failed reopen attempts
	// (default 100 ms); it doubles up to MaxReopenBackoff (default 5 s).
	ReopenBackoff    time.Duration
	MaxReopenBackoff time.Duration
	// OnSilence, if set, is called from Run's goroutine when every
	// channel falls under SilenceDBFS (silent true) and when sound returns
	// (false), right after the block that shows it is published: telemetry
	// can report the change at once instead of at its next tick. It must
	// not block.
	OnSilence func(silent bool)
}

// States of a Capture.
const (
	StateIdle      = "idle"      // Run not called yet
	StateRunning   = "running"   // reading the source
	StateReopening = "reopening" // the device is gone: filling silence, reopening
	StateFailed    = "failed"    // the device is gone and there is no Reopen
	StateStopped   = "stopped"   // Run returned
)

// Stats is a snapshot of a Capture.
type Stats struct {
	State   string
	Session string
	// Blocks published, silence fills included.
	Blocks int64
	// Index is the index of the next frame of the timeline.
	Index int64
	// Overruns counts frames the source lost between the device and Read
	// (its ring overflowed), over every source this Capture has used.
	Overruns int64
	// Lagged counts blocks dropped from subscribers that fell more than
	// their buffer behind (each such subscriber lost its oldest block).
	Lagged int64
	// Reopens counts successful reopens of the device.
	Reopens int64
	// Failures counts times the source failed.
	Failures int64
	// FilledFrames counts frames of silence inserted while the device was
	// gone.
	FilledFrames int64
	// LastError is the last source failure ("" if none).
	LastError string
	// Levels are over the last second: the highest peak (peak hold) and
	// the RMS of the whole second.
	Levels Levels
	// SilentFor is how long every channel has been under SilenceDBFS
	// (RMS per block), measured on the timeline; 0 while there is sound.
	SilentFor time.Duration
}

type subscriber struct {
	ch chan Block
}

// Capture is one capture clock. Create it with New, subscribe, then Run.
type Capture struct {
	cfg Config
	log *slog.Logger

	closers sync.WaitGroup // sources being closed off the hot path

	mu          sync.Mutex
	src         Source // current source; nil while the device is gone
	session     Session
	subs        map[*subscriber]struct{}
	ran         bool
	done        bool
	stats       Stats
	overrunBase int64
	// level window: one accum per block over the last second
	win        []accum
	winPos     int
	winLen     int
	silent     bool
	silentAt   int64   // index where the current silence started
	silenceThr float64 // linear RMS² threshold in sample units
}

// New makes a Capture reading src. src may be nil if cfg.Reopen and
// cfg.Format are set: the timeline then starts with silence.
func New(src Source, cfg Config) *Capture {
	if cfg.BlockFrames <= 0 {
		cfg.BlockFrames = 1024
	}
	if cfg.SilenceDBFS == 0 {
		cfg.SilenceDBFS = -50
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReopenBackoff <= 0 {
		cfg.ReopenBackoff = 100 * time.Millisecond
	}
	if cfg.MaxReopenBackoff <= 0 {
		cfg.MaxReopenBackoff = 5 * time.Second
	}
	f := cfg.Format
	if src != nil {
		f = src.Format()
	}
	id := cfg.Session
	if id == "" {
		id = newSessionID()
	}
	thr := math.Pow(10, cfg.SilenceDBFS/20) * 32768
	c := &Capture{cfg: cfg, log: cfg.Log, src: src,
		session:    Session{ID: id, Format: f},
		subs:       map[*subscriber]struct{}{},
		silenceThr: thr * thr,
	}
	c.stats.State = StateIdle
	c.resetWindowLocked(f)
	return c
}

func newSessionID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Capture) resetWindowLocked(f Format) {
	n := 1
	if f.SampleRate > 0 {
		n = (f.SampleRate + c.cfg.BlockFrames - 1) / c.cfg.BlockFrames
	}
	c.win = make([]accum, n)
	for i := range c.win {
		c.win[i] = newAccum(max(f.Channels, 1))
	}
	c.winPos, c.winLen = 0, 0
	c.silent = false
}

// Session is the current session.
func (c *Capture) Session() Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Subscribe returns a channel that receives every block from now on. A
// subscriber that falls more than buffer blocks behind loses its oldest
// block (counted in Stats.Lagged and visible as a jump in Index). The
// function unsubscribes and closes the channel; the channel is also closed
// when Run returns. A subscriber must keep reading until either happens.
func (c *Capture) Subscribe(buffer int) (<-chan Block, func()) {
	if buffer < 1 {
		buffer = 1
	}
	s := &subscriber{ch: make(chan Block, buffer)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		close(s.ch)
		return s.ch, func() {}
	}
	c.subs[s] = struct{}{}
	return s.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.subs[s]; ok {
			delete(c.subs, s)
			close(s.ch)
		}
	}
}

// Stats returns a snapshot.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats
	st.Session = c.session.ID
	st.Overruns = c.overrunBase
	if oc, ok := c.src.(OverrunCounter); ok {
		st.Overruns += oc.Overruns()
	}
	ch := max(c.session.Format.Channels, 1)
	a := newAccum(ch)
	for i := 0; i < c.winLen; i++ {
		a.merge(&c.win[i])
	}
	st.Levels = a.levels()
	if c.silent {
		st.SilentFor = c.session.Format.Duration(st.Index - c.silentAt)
	}
	return st
}

func (c *Capture) setState(s string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.State = s
	if err != nil {
		c.stats.LastError = err.Error()
	}
}

// Run captures until ctx ends (returning nil) or the source fails with
// no Reopen configured (returning its error). Subscribers' channels are
// closed when it returns. Run may be called once.
func (c *Capture) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		return errors.New("capture: Run called twice")
	}
	c.ran = true
	src := c.src
	f := c.session.Format
	c.mu.Unlock()
	if err := f.Validate(); err != nil {
		c.finish(nil)
		return err
	}
	if src == nil && c.cfg.Reopen == nil {
		c.finish(nil)
		return errors.New("capture: no source and no Reopen")
	}
	r := &runner{c: c, ctx: ctx, src: src, format: f, bf: c.cfg.BlockFrames}
	r.acc = make([]int16, 0, r.bf*f.Channels)
	err := r.run()
	c.finish(r.src)
	return err
}

// finish closes the subscribers and the last source.
func (c *Capture) finish(src Source) {
	if src != nil {
		c.closeSource(src)
	}
	c.closers.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	for s := range c.subs {
		close(s.ch)
		delete(c.subs, s)
	}
	if c.stats.State != StateFailed {
		c.stats.State = StateStopped
	}
}

// closeSource closes a source off the hot path (a device's Close can take
// seconds); Run waits for it before returning.
func (c *Capture) closeSource(src Source) {
	c.mu.Lock()
	if oc, ok := src.(OverrunCounter); ok {
		c.overrunBase += oc.Overruns()
	}
	if c.src == src {
		c.src = nil
	}
	c.mu.Unlock()
	c.closers.Add(1)
	go func() {
		defer c.closers.Done()
		if err := src.Close(); err != nil {
			c.log.Warn("capture: closing source", "err", err)
		}
	}()
}

// runner is Run's state, owned by Run's goroutine.
type runner struct {
	c      *Capture
	ctx    context.Context
	src    Source
	format Format
	bf     int // frames per block

	started bool    // the session has its first frame
	next    int64   // index of the next frame appended
	acc     []int16 // the block being filled
	accFill bool    // acc holds filled silence only so far

	// anchor: the wall time at which frame anchorIdx−1 ended (the last
	// successful read); the gap is paced from it.
	anchorIdx int64
	anchorT   time.Time
	skip      int64 // frames to drop from the next reads (overlap after a reopen)
	resync    bool  // the next read is the first of a reopened source
}

func (r *runner) run() error {
	c := r.c
	backoff := c.cfg.ReopenBackoff
	if r.src == nil {
		// Start without a device: the timeline starts now, with silence.
		r.started = true
		r.anchorT = time.Now()
		c.mu.Lock()
		c.session.Started = r.anchorT
		c.mu.Unlock()
		if err := r.gap(errors.New("no capture device at start"), 0); err != nil || r.src == nil {
			return err
		}
	} else {
		c.setState(StateRunning, nil)
	}
	buf := make([]int16, r.bf*r.format.Channels)
	healthySince := time.Now()
	for {
		n, err := r.src.Read(r.ctx, buf)
		now := time.Now()
		if r.ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.mu.Lock()
			c.stats.Failures++
			c.mu.Unlock()
			c.log.Warn("capture: source failed", "err", err, "index", r.next, "device_gone", errors.Is(err, ErrDeviceGone))
			c.closeSource(r.src)
			r.src = nil
			// The first reopen is tried at once, unless the source keeps
			// failing soon after being (re)opened: then it backs off.
			wait := time.Duration(0)
			if now.Sub(healthySince) < 10*time.Second {
				wait = backoff
				backoff = min(backoff*2, c.cfg.MaxReopenBackoff)
			} else {
				backoff = c.cfg.ReopenBackoff
			}
			if err := r.gap(err, wait); err != nil || r.src == nil {
				return err
			}
			healthySince = time.Now()
			if len(buf) != r.bf*r.format.Channels {
				buf = make([]int16, r.bf*r.format.Channels)
			}
			continue
		}
		if n <= 0 {
			continue
		}
		r.push(buf[:n*r.format.Channels], n, now)
	}
}

// push appends n frames read at time now.
func (r *runner) push(samples []int16, n int, now time.Time) {
	ch := r.format.Channels
	// Frames still queued in the source were captured after these: the
	// last of them about now.
	var queued int64
	if b, ok := r.src.(Buffered); ok {
		queued = int64(max(b.Buffered(), 0))
	}
	if !r.started {
		r.started = true
		if ix, ok := r.src.(Indexed); ok {
			r.next = ix.NextIndex() - int64(n)
		}
		c := r.c
		c.mu.Lock()
		c.session.Started = now.Add(-r.format.Duration(r.next + int64(n) + queued))
		c.mu.Unlock()
	}
	if r.resync {
		r.resync = false
		var target int64
		if ix, ok := r.src.(Indexed); ok {
			target = ix.NextIndex() - int64(n)
		} else {
			target = r.anchorIdx + r.format.Frames(now.Sub(r.anchorT)) - int64(n) - queued
		}
		switch {
		case target > r.next:
			r.fill(target - r.next)
		case target < r.next:
			r.skip = r.next - target
		}
	}
	if r.skip > 0 {
		d := min(r.skip, int64(n))
		r.skip -= d
		samples = samples[d*int64(ch):]
		n -= int(d)
	}
	end := r.next + int64(n)
	for len(samples) > 0 {
		room := cap(r.acc) - len(r.acc)
		k := min(room, len(samples))
		r.acc = append(r.acc, samples[:k]...)
		samples = samples[k:]
		r.next += int64(k / ch)
		r.accFill = false
		if len(r.acc) == cap(r.acc) {
			r.emit(now.Add(-r.format.Duration(end+queued-r.next)), false)
		}
	}
	r.anchorIdx, r.anchorT = r.next+queued, now
}

// fill appends n frames of silence; their wall times follow the anchor.
func (r *runner) fill(n int64) {
	ch := r.format.Channels
	r.c.mu.Lock()
	r.c.stats.FilledFrames += n
	r.c.mu.Unlock()
	for n > 0 {
		if len(r.acc) == 0 {
			r.accFill = true
		}
		room := int64((cap(r.acc) - len(r.acc)) / ch)
		k := min(room, n)
		r.acc = append(r.acc, make([]int16, k*int64(ch))...)
		r.next += k
		n -= k
		if len(r.acc) == cap(r.acc) {
			r.emit(r.anchorT.Add(r.format.Duration(r.next-r.anchorIdx)), r.accFill)
		}
	}
}

// emit publishes the accumulated block.
func (r *runner) emit(captured time.Time, filled bool) {
	ch := r.format.Channels
	frames := len(r.acc) / ch
	if frames == 0 {
		return
	}
	samples := make([]int16, len(r.acc))
	copy(samples, r.acc)
	r.acc = r.acc[:0]
	b := Block{Index: r.next - int64(frames), Samples: samples, Format: r.format, Captured: captured, Filled: filled}
	c := r.c
	if changed, silent := c.publish(b, r.next); changed && c.cfg.OnSilence != nil {
		c.cfg.OnSilence(silent)
	}
}

// publish measures b, hands it to every subscriber and reports whether
// the silence state changed with it.
func (c *Capture) publish(b Block, next int64) (changed, silent bool) {
	samples := b.Samples
	c.mu.Lock()
	defer c.mu.Unlock()
	b.Session = c.session.ID
	a := &c.win[c.winPos]
	a.reset()
	a.add(samples)
	c.winPos = (c.winPos + 1) % len(c.win)
	c.winLen = min(c.winLen+1, len(c.win))
	b.Levels = a.levels()
	quiet := true
	for i := range a.energy {
		if a.energy[i]/float64(a.frames) >= c.silenceThr {
			quiet = false
		}
	}
	was := c.silent
	switch {
	case quiet && !c.silent:
		c.silent, c.silentAt = true, b.Index
	case !quiet:
		c.silent = false
	}
	c.stats.Blocks++
	c.stats.Index = next
	for s := range c.subs {
		select {
		case s.ch <- b:
			continue
		default:
		}
		select {
		case <-s.ch:
			c.stats.Lagged++
		default:
		}
		select {
		case s.ch <- b:
		default:
		}
	}
	return was != c.silent, c.silent
}

// gap runs the timeline on silence until a reopen succeeds (r.src set)
// or ctx ends (r.src nil, nil returned); the first attempt is made after
// wait. Without Reopen it returns the failure.
func (r *runner) gap(cause error, wait time.Duration) error {
	c := r.c
	if c.cfg.Reopen == nil {
		c.setState(StateFailed, cause)
		c.log.Error("capture: source failed and cannot be reopened", "err", cause)
		return fmt.Errorf("capture: %w", cause)
	}
	c.setState(StateReopening, cause)
	type result struct {
		src Source
		err error
	}
	results := make(chan result, 1)
	attempting := false
	nextAttempt := time.Now().Add(wait)
	backoff := max(wait, c.cfg.ReopenBackoff)
	attempts := 0
	defer func() {
		// An attempt still running when ctx ended: collect and close it.
		if attempting {
			res := <-results
			if res.src != nil {
				c.closeSource(res.src)
			}
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if !attempting && !now.Before(nextAttempt) {
			attempting = true
			attempts++
			go func() {
				s, err := c.cfg.Reopen(r.ctx)
				results <- result{s, err}
			}()
		}
		// The next silence block is due when its last frame would have
		// been captured.
		k := int64(r.bf - len(r.acc)/r.format.Channels)
		due := r.anchorT.Add(r.format.Duration(r.next + k - r.anchorIdx))
		wake := due
		if !attempting && nextAttempt.Before(wake) {
			wake = nextAttempt
		}
		timer.Reset(max(time.Until(wake), 0))
		select {
		case <-r.ctx.Done():
			return nil
		case <-timer.C:
			if !time.Now().Before(due) {
				r.fill(k)
			}
		case res := <-results:
			attempting = false
			if res.err != nil {
				if r.ctx.Err() != nil {
					return nil
				}
				if attempts == 1 || attempts%10 == 0 {
					c.log.Warn("capture: reopen failed", "err", res.err, "attempt", attempts, "retry_in", backoff)
				}
				c.setState(StateReopening, res.err)
				nextAttempt = time.Now().Add(backoff)
				backoff = min(backoff*2, c.cfg.MaxReopenBackoff)
				continue
			}
			r.adopt(res.src)
			c.log.Info("capture: device reopened", "attempts", attempts, "index", r.next, "format", r.format)
			return nil
		}
	}
}

// adopt makes a reopened source current. A source in another format
// restarts the timeline as a new session.
func (r *runner) adopt(src Source) {
	c := r.c
	r.src = src
	f := src.Format()
	c.mu.Lock()
	c.src = src
	c.stats.Reopens++
	c.stats.State = StateRunning
	c.mu.Unlock()
	if f == r.format {
		r.resync = true
		return
	}
	// A new timeline: publish what is pending, then start over.
	r.emit(r.anchorT.Add(r.format.Duration(r.next-r.anchorIdx)), r.accFill)
	c.mu.Lock()
	old := c.session.ID
	c.session = Session{ID: newSessionID(), Format: f}
	c.resetWindowLocked(f)
	c.mu.Unlock()
	c.log.Warn("capture: device came back in another format: new session", "old_format", r.format, "format", f, "old_session", old)
	r.format = f
	r.started = false
	r.next = 0
	r.skip = 0
	r.acc = make([]int16, 0, r.bf*f.Channels)
}
