// Package sender is one feed's uplink on the appliance: it takes encoded
// frames from the capture side (Send, never blocking), keeps a connection to
// the destination up, and writes the frames to it.
//
// Two destinations are supported. SRT (the native link to a Tandem switcher,
// or any SRT listener): frames are muxed to MPEG-TS (audio on PID 0x100,
// PAT/PMT at least every 500 ms, in-band telemetry as private data on
// telemetry.PID with the "TNDM" registration) and sent as SRT live-mode
// messages. Icecast: an HTTP PUT of ADTS, as Icecast 2.4 accepts from
// ffmpeg or butt.
//
// # Pinning to a link
//
// Config.LocalAddr binds the connection to the link's source address; with
// the appliance's policy routing (hal/netlink) that is what keeps a feed on
// its ISP, and a down link makes the connection fail at once instead of
// leaking to the other ISP.
//
// # Detecting a dead link
//
// libsrt takes about 5 s to declare a connection broken. The sender watches
// the peer's acknowledgements instead: every 50 ms it samples libsrt's
// received-ACK counter (for Icecast, the kernel's time since the last TCP
// ACK); if nothing was acknowledged for StallTimeout (500 ms) while data was
// being sent, it closes the connection ("ack-stall" event) and redials.
// For Icecast, data the kernel could not even send (a local drop) counts as
// unacknowledged too. Measured in the two-ISP lab (lab.Cut, an nft drop of
// link a, StallTimeout 500 ms): SRT 484-549 ms from the cut to the event,
// Icecast 472-533 ms; reconnected 50-190 ms (SRT) and ~800 ms (TCP SYN
// retry) after the link came back.
//
// A Tandem switcher keeps the old connection's input slot until it notices
// the dead connection itself (~5 s); until then it refuses the redialled
// feed ("slot taken"), which the sender sees as a connection that breaks at
// once, and retries with backoff (measured: primary back on the switcher
// ~6.5 s after the link returned; the fallback covered the gap).
//
// # Queue and reconnects
//
// Over a live SRT connection with nothing queued, Send writes the frame at
// once from the caller's goroutine (libsrt does not block in live mode);
// otherwise it puts the frame in a bounded queue (Queue frames, oldest
// dropped when full) that the connection's goroutine drains. When a
// connection comes up, whatever queued while disconnected is stale and
// dropped: the feed resumes with the present, since a burst of old frames
// would confuse the switcher's arrival model (in aligned mode the other
// feed covered that time anyway). Reconnect attempts back off from
// MinBackoff to MaxBackoff with jitter; a connection that lasted more than
// 10 s resets the backoff.
package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"tandem/uplink/media"
	"tandem/uplink/telemetry"
)

// States reported in Stats.State.
const (
	StateStopped    = "stopped" // Run is not running
	StateConnecting = "connecting"
	StateConnected  = "connected"
	StateBackoff    = "backoff" // waiting before the next attempt
)

// Event kinds.
const (
	EventConnected     = "connected"
	EventDisconnected  = "disconnected"   // Err says why
	EventConnectFailed = "connect-failed" // Err says why
	EventStall         = "ack-stall"      // followed by disconnected
	EventDropped       = "dropped"        // Count frames dropped; Detail says why
)

// Event is something that happened to the uplink, for the daemon's event
// log.
type Event struct {
	Time   time.Time
	Kind   string
	Detail string
	Err    error
	// Count is the number of frames, for EventDropped.
	Count int64
}

func (e Event) String() string {
	s := e.Kind
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// ErrAckStall matches the error of a connection closed because the peer
// stopped acknowledging (see StallError).
var ErrAckStall = errors.New("ack stall")

// StallError is a connection closed for lack of acknowledgements.
type StallError struct {
	Proto   string
	Silence time.Duration // how long nothing was acknowledged while sending
	Timeout time.Duration // Config.StallTimeout
}

func (e *StallError) Error() string {
	return fmt.Sprintf("%s: ack stall: nothing acknowledged for %v while sending (limit %v)",
		e.Proto, e.Silence.Round(time.Millisecond), e.Timeout)
}

// Is makes errors.Is(err, ErrAckStall) true.
func (e *StallError) Is(target error) bool { return target == ErrAckStall }

// errFrameLost marks a write error that lost a frame but left the
// connection usable (SRT send buffer full).
var errFrameLost = errors.New("frame lost")

// Stats is a snapshot of the uplink.
type Stats struct {
	State    string
	Protocol string // "srt" or "icecast"
	Dest     string // without credentials
	// Connects counts connections made; Reconnects those after the first.
	Connects, Reconnects int64
	// Sent counts frames written to a connection.
	Sent int64
	// Dropped counts every frame that was not sent:
	// DroppedStale + DroppedOverflow + DroppedFailed.
	Dropped int64
	// DroppedStale: queued while disconnected, dropped on connect.
	// DroppedOverflow: pushed out of a full queue by newer frames.
	// DroppedFailed: a write lost them (SRT send buffer full, broken
	// connection) or they were not audio.
	DroppedStale, DroppedOverflow, DroppedFailed int64
	// Stalls counts connections closed by ACK-stall detection.
	Stalls int64
	// TelemetrySent counts telemetry reports written (SRT).
	TelemetrySent int64
	// Queued is the number of frames waiting now.
	Queued int
	// BitrateKbps is the audio payload rate over the last ~5 s.
	BitrateKbps float64
	// RTT is the last round-trip time seen by the transport.
	RTT time.Duration
	// SendLoss (SRT packets reported lost by the receiver) and Retrans
	// (packets retransmitted), summed over all connections.
	SendLoss, Retrans int64
	// Messages counts SRT messages sent (one UDP packet each, first
	// transmissions), summed over all connections; Sent/Messages is the
	// frames per message MaxPackDelay achieves. 0 for Icecast.
	Messages  int64
	LastError string
	// ConnectedSince is when the current connection came up (zero if none).
	ConnectedSince time.Time
}

// Sender is one feed's uplink. Send and SendTelemetry may be called from
// any goroutine, before or while Run runs.
type Sender struct {
	cfg    Config
	target target
	log    *slog.Logger
	q      *queue

	telMu      sync.Mutex
	telPending []byte
	telNotify  chan struct{}

	liveMu  sync.Mutex
	live    *live         // the connection while it is up (see sendDirect)
	liveErr chan struct{} // capacity 1: the direct path ended the connection

	evMu sync.Mutex // OnEvent calls one at a time

	running atomic.Bool

	overflow atomic.Int64 // DroppedOverflow, written by Send

	mu         sync.Mutex // guards st and the fields below
	st         Stats
	base       linkStats // SendLoss/Retrans of closed connections
	rate       rateMeter
	lastLogged string // last connect error logged at Warn
}

// New checks cfg (errors wrap ErrConfig and name the field) and returns a
// Sender; nothing is dialled until Run.
func New(cfg Config) (*Sender, error) {
	t, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &Sender{
		cfg:       cfg,
		target:    t,
		log:       cfg.Log.With("feed", string(cfg.Role), "dest", t.display),
		q:         newQueue(cfg.Queue),
		telNotify: make(chan struct{}, 1),
		liveErr:   make(chan struct{}, 1),
	}
	s.st.State = StateStopped
	s.st.Protocol = t.proto
	s.st.Dest = t.display
	return s, nil
}

// Send hands a frame to the connection: over an SRT connection that is up
// with nothing queued it is written at once (see sendDirect), else queued.
// It never waits for the network. It returns false if a frame was
// dropped: the oldest one, because the queue was full (the new frame is
// queued), or f itself if it is not audio.
func (s *Sender) Send(f media.Frame) bool { return s.send(f, false) }

// SendMore is Send for a frame that more frames of the same burst follow
// at once (the encoder made them from one capture block): over SRT it
// waits for them, so that they share messages. The burst's last frame
// goes with Send, which sends what waits; a burst whose end never comes is
// sent once it has waited BurstWait, by the next write or check.
func (s *Sender) SendMore(f media.Frame) bool { return s.send(f, true) }

func (s *Sender) send(f media.Frame, more bool) bool {
	if f.Kind != media.KindAudio || len(f.Data) == 0 {
		s.mu.Lock()
		s.st.DroppedFailed++
		s.mu.Unlock()
		return false
	}
	if s.sendDirect(f, more) {
		return true
	}
	if s.q.push(f) {
		s.overflow.Add(1)
		return false
	}
	return true
}

// SendTelemetry sends a report with the next audio frame (or at once,
// stamped with the last audio frame's PTS). Only the latest report is kept;
// Feed is filled in if empty. Icecast has no place for it: it is ignored.
func (s *Sender) SendTelemetry(r telemetry.Report) {
	if s.target.proto != ProtoSRT {
		return
	}
	if r.Feed == "" {
		r.Feed = string(s.cfg.Role)
	}
	b, err := telemetry.Marshal(r)
	if err != nil {
		s.log.Warn("telemetry report dropped", "err", err)
		return
	}
	s.telMu.Lock()
	s.telPending = b
	s.telMu.Unlock()
	select {
	case s.telNotify <- struct{}{}:
	default:
	}
}

func (s *Sender) takeTelemetry() []byte {
	s.telMu.Lock()
	defer s.telMu.Unlock()
	b := s.telPending
	s.telPending = nil
	return b
}

// Stats returns a snapshot.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.DroppedOverflow = s.overflow.Load()
	st.Dropped = st.DroppedStale + st.DroppedOverflow + st.DroppedFailed
	st.Queued = s.q.len()
	st.BitrateKbps = s.rate.kbps(time.Now())
	return st
}

func (s *Sender) update(fn func(st *Stats)) {
	s.mu.Lock()
	fn(&s.st)
	s.mu.Unlock()
}

func (s *Sender) setState(state string) { s.update(func(st *Stats) { st.State = state }) }

func (s *Sender) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if s.cfg.OnEvent == nil {
		return
	}
	s.evMu.Lock()
	defer s.evMu.Unlock()
	s.cfg.OnEvent(e)
}

// backoff is the pause between connection attempts.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	// ±20 % jitter, so two feeds that failed together do not retry in step.
	d := time.Duration(float64(b.cur) * (0.8 + 0.4*rand.Float64()))
	return min(d, b.max)
}

func (b *backoff) reset() { b.cur = 0 }

// checkInterval is how often a connection's acknowledgements are sampled.
// While frames flow (one every ~21 ms) the check rides on a write, so it
// costs no wake-up of its own; idleCheckInterval is the backstop when
// nothing is written (stats stay fresh; no stall is declared then, since a
// stall needs data being sent).
const (
	checkInterval     = 50 * time.Millisecond
	idleCheckInterval = 250 * time.Millisecond
)

// freezeThreshold: checks further apart than this mean the process was not
// running (or was blocked in libsrt), not that the link stalled.
const freezeThreshold = 4 * checkInterval

// Run keeps the connection up and sends queued frames until ctx ends; then
// it returns nil. Connection failures are retried forever (events and
// Stats.LastError say why). Run may not be called twice at once.
func (s *Sender) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("sender: Run is already running")
	}
	defer s.running.Store(false)
	defer s.setState(StateStopped)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.reportOverflow(ctx)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()

	bo := backoff{min: s.cfg.MinBackoff, max: s.cfg.MaxBackoff}
	for {
		s.setState(StateConnecting)
		sess, err := s.connect(ctx)
		if ctx.Err() != nil {
			if sess != nil {
				sess.close()
			}
			return nil
		}
		if err != nil {
			s.connectFailed(err)
			if !s.pause(ctx, bo.next()) {
				return nil
			}
			continue
		}
		since := s.connected(sess)
		err = s.stream(ctx, sess)
		sess.close()
		s.disconnected(sess)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("connection ended")
		}
		lasted := time.Since(since)
		s.log.Warn("disconnected", "after", lasted.Round(time.Millisecond), "err", err)
		s.update(func(st *Stats) { st.LastError = err.Error() })
		s.emit(Event{Kind: EventDisconnected, Detail: fmt.Sprintf("after %v", lasted.Round(time.Millisecond)), Err: err})
		if lasted > StableAfter {
			bo.reset()
		}
		if !s.pause(ctx, bo.next()) {
			return nil
		}
	}
}

func (s *Sender) pause(ctx context.Context, d time.Duration) bool {
	s.setState(StateBackoff)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Sender) connectFailed(err error) {
	msg := err.Error()
	s.mu.Lock()
	s.st.LastError = msg
	repeat := msg == s.lastLogged
	s.lastLogged = msg
	s.mu.Unlock()
	if repeat {
		s.log.Debug("connect failed again", "err", err)
	} else {
		s.log.Warn("connect failed", "err", err)
	}
	s.emit(Event{Kind: EventConnectFailed, Err: err})
}

// connected starts a connection's life: stale frames go, stats reset.
func (s *Sender) connected(sess session) time.Time {
	now := time.Now()
	stale := int64(s.q.clear())
	s.takeTelemetry() // describes the time before the outage
	s.mu.Lock()
	s.st.State = StateConnected
	s.st.Connects++
	if s.st.Connects > 1 {
		s.st.Reconnects++
	}
	s.st.ConnectedSince = now
	s.st.DroppedStale += stale
	s.lastLogged = ""
	s.rate.reset(now)
	s.mu.Unlock()
	s.log.Info("connected", "via", sess.describe())
	s.emit(Event{Time: now, Kind: EventConnected, Detail: sess.describe()})
	if stale > 0 {
		s.emit(Event{Kind: EventDropped, Count: stale, Detail: fmt.Sprintf("%d stale frames queued while disconnected", stale)})
	}
	return now
}

func (s *Sender) disconnected(sess session) {
	ls := sess.stats()
	s.mu.Lock()
	s.base.sendLoss += ls.sendLoss
	s.base.retrans += ls.retrans
	s.base.messages += ls.messages
	s.st.SendLoss, s.st.Retrans, s.st.Messages = s.base.sendLoss, s.base.retrans, s.base.messages
	s.st.ConnectedSince = time.Time{}
	s.mu.Unlock()
}

// reportOverflow turns queue overflows into at most one event and log
// line per second.
func (s *Sender) reportOverflow(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var reported int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := s.overflow.Load()
		if d := n - reported; d > 0 {
			reported = n
			s.log.Warn("frames dropped: queue full", "frames", d, "queue", s.cfg.Queue)
			s.emit(Event{Kind: EventDropped, Count: d, Detail: fmt.Sprintf("%d frames pushed out of the full queue (%d frames)", d, s.cfg.Queue)})
		}
	}
}

// stream writes frames and telemetry to sess and watches it until it fails
// or ctx ends (then it returns nil).
func (s *Sender) stream(ctx context.Context, sess session) error {
	tick := time.NewTicker(idleCheckInterval)
	defer tick.Stop()
	l := &live{sess: sess}
	select {
	case <-s.liveErr: // a token left by the previous connection
	default:
	}
	s.liveMu.Lock()
	s.live = l
	s.liveMu.Unlock()
	defer func() {
		s.liveMu.Lock()
		s.live = nil
		s.liveMu.Unlock()
	}()
	locked := func(f func() error) error {
		s.liveMu.Lock()
		defer s.liveMu.Unlock()
		if l.err != nil {
			return l.err
		}
		return f()
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case err = <-sess.failed():
		case <-s.liveErr:
			err = locked(func() error { return nil })
		case <-s.q.notify:
			err = locked(func() error {
				for {
					f, ok := s.q.pop()
					if !ok {
						return nil
					}
					// A backlog shares messages; its last frame sends them.
					if err := s.writeLocked(l, f, s.q.len() > 0); err != nil {
						return err
					}
				}
			})
		case <-s.telNotify:
			err = locked(func() error { return s.telemetryLocked(l) })
		case now := <-tick.C:
			err = locked(func() error {
				if now.Sub(l.lastCheck) < checkInterval {
					return l.sess.idle(now)
				}
				return s.checkLocked(l, now)
			})
		}
		if err != nil {
			return err
		}
	}
}

// live is the connection frames are written to while it is up. The stream
// goroutine and Send's direct path share it under Sender.liveMu; every
// call on sess happens under that lock.
type live struct {
	sess      session
	lastPTS   int64
	havePTS   bool
	lastCheck time.Time
	// err is a failure Send's direct path met; the stream goroutine ends
	// the connection with it.
	err error
}

// sendDirect writes f from the caller's goroutine when an SRT connection
// is up and nothing is queued ahead of f. Handing each frame to the stream
// goroutine cost a thread wake-up per frame. libsrt's send does not block
// in live mode (a full send buffer loses the frame), so neither does this;
// if the stream goroutine holds the connection at that moment, f takes the
// queue, and so does every later frame until the queue is empty: order is
// kept.
func (s *Sender) sendDirect(f media.Frame, more bool) bool {
	if s.target.proto != ProtoSRT || !s.liveMu.TryLock() {
		return false
	}
	defer s.liveMu.Unlock()
	l := s.live
	if l == nil || l.err != nil || s.q.len() > 0 {
		return false
	}
	if err := s.writeLocked(l, f, more); err != nil {
		s.failLocked(l, err)
	}
	return true
}

// failLocked records a failure met outside the stream goroutine (Send's
// direct path, the packing timer) and wakes that goroutine to end the
// connection with it.
func (s *Sender) failLocked(l *live, err error) {
	l.err = err
	select {
	case s.liveErr <- struct{}{}:
	default:
	}
}

// writeLocked writes one frame, the pending telemetry after it, and checks
// the link when a check is due. An error ends the connection.
func (s *Sender) writeLocked(l *live, f media.Frame, more bool) error {
	if err := l.sess.writeFrame(f, more); err != nil {
		s.update(func(st *Stats) { st.DroppedFailed++ })
		if errors.Is(err, errFrameLost) {
			return nil
		}
		return err
	}
	now := time.Now()
	s.mu.Lock()
	s.st.Sent++
	s.rate.add(now, len(f.Data))
	s.mu.Unlock()
	l.lastPTS, l.havePTS = f.PTS, true
	if err := s.telemetryLocked(l); err != nil {
		return err
	}
	if now.Sub(l.lastCheck) >= checkInterval {
		return s.checkLocked(l, now)
	}
	return nil
}

// telemetryLocked sends the pending report, stamped with the last frame's
// PTS.
func (s *Sender) telemetryLocked(l *live) error {
	if !l.havePTS {
		return nil
	}
	b := s.takeTelemetry()
	if b == nil {
		return nil
	}
	if err := l.sess.writeTelemetry(b, l.lastPTS); err != nil {
		if errors.Is(err, errFrameLost) {
			return nil
		}
		return err
	}
	s.update(func(st *Stats) { st.TelemetrySent++ })
	return nil
}

// checkLocked samples the connection: stats, and ACK-stall detection.
func (s *Sender) checkLocked(l *live, now time.Time) error {
	l.lastCheck = now
	ls, err := l.sess.check(now)
	s.mu.Lock()
	s.st.RTT = ls.rtt
	s.st.SendLoss = s.base.sendLoss + ls.sendLoss
	s.st.Retrans = s.base.retrans + ls.retrans
	s.st.Messages = s.base.messages + ls.messages
	s.mu.Unlock()
	if err != nil {
		var se *StallError
		if errors.As(err, &se) {
			s.update(func(st *Stats) { st.Stalls++ })
			s.log.Warn("ack stall: closing and reconnecting", "silence", se.Silence.Round(time.Millisecond))
			s.emit(Event{Time: now, Kind: EventStall, Detail: fmt.Sprintf("nothing acknowledged for %v while sending", se.Silence.Round(time.Millisecond)), Err: err})
		}
		return err
	}
	return nil
}

// linkStats is what a transport reports about its connection.
type linkStats struct {
	rtt               time.Duration
	sendLoss, retrans int64
	messages          int64
}

// session is one connection of a transport.
type session interface {
	// writeFrame sends one audio frame; an error wrapping errFrameLost
	// lost the frame but not the connection.
	writeFrame(f media.Frame, more bool) error
	// idle is the stream goroutine's backstop tick when no check is due:
	// it sends what waited too long.
	idle(now time.Time) error
	// writeTelemetry sends a report stamped with pts.
	writeTelemetry(b []byte, pts int64) error
	// check samples the connection (every checkInterval): stall detection
	// and stats.
	check(now time.Time) (linkStats, error)
	// stats is the last sample.
	stats() linkStats
	// failed delivers an asynchronous failure (nil channel: none).
	failed() <-chan error
	describe() string
	close()
}

// connect resolves the destination and dials it.
func (s *Sender) connect(ctx context.Context) (session, error) {
	addr, err := s.resolve(ctx)
	if err != nil {
		return nil, err
	}
	switch s.target.proto {
	case ProtoSRT:
		return s.dialSRT(ctx, addr)
	default:
		return s.dialIcecast(ctx, addr)
	}
}

// resolve turns the destination host into an address, preferring the
// local address's family (IPv4 without one). Resolution happens outside
// Config.Netns.
func (s *Sender) resolve(ctx context.Context) (netip.AddrPort, error) {
	port := uint16(s.target.port)
	if ip, err := netip.ParseAddr(s.target.host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), port), nil
	}
	want4 := true
	if s.cfg.LocalAddr != "" {
		la, _ := parseLocal(s.cfg.LocalAddr)
		want4 = la.Addr().Is4()
	}
	network := "ip6"
	if want4 {
		network = "ip4"
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, network, s.target.host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", s.target.host, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: no %s address", s.target.host, network)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), port), nil
}

// rateMeter sums payload bytes per second over the last few seconds.
type rateMeter struct {
	start time.Time // the connection's start: a younger window is shorter
	secs  [6]int64
	bytes [6]int64
}

func (r *rateMeter) reset(now time.Time) { *r = rateMeter{start: now} }

func (r *rateMeter) add(now time.Time, n int) {
	sec := now.Unix()
	i := sec % int64(len(r.secs))
	if r.secs[i] != sec {
		r.secs[i], r.bytes[i] = sec, 0
	}
	r.bytes[i] += int64(n)
}

// kbps is the rate over the last 5 whole seconds and the current one, or
// since the connection started if that is shorter.
func (r *rateMeter) kbps(now time.Time) float64 {
	sec := now.Unix()
	var sum int64
	for i := range r.secs {
		if r.secs[i] > sec-int64(len(r.secs)) && r.secs[i] <= sec {
			sum += r.bytes[i]
		}
	}
	window := float64(len(r.secs)-1) + float64(now.Nanosecond())/1e9
	if age := now.Sub(r.start).Seconds(); age < window {
		window = age
	}
	if window < 0.25 {
		return 0
	}
	return float64(sum) * 8 / window / 1000
}
