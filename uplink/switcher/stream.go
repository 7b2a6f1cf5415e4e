package switcher

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/uplink/adts"
	"tandem/uplink/hls"
	"tandem/uplink/media"
	"tandem/uplink/streamid"
	"tandem/uplink/switcher/audiolevel"
	"tandem/uplink/switcher/health"
	"tandem/uplink/switcher/merge"
	"tandem/uplink/telemetry"
)

// Packet is one emitted frame (audio or video) as the outputs see it.
type Packet struct {
	Frame  media.Frame
	ADTS   []byte // an audio frame with its ADTS header, ready for HTTP listeners; nil for video
	Source merge.Role
	Filled bool
}

// input is one publisher connection as a stream sees it. The ingest
// goroutine owns the connection; the stream owns the fields below the line.
type input struct {
	id          streamid.ID
	proto       string
	remote      string
	connectedAt time.Time
	// stats reads the transport's statistics (nil when there are none).
	stats func() any
	// refuse closes the connection; the ingest loop then detaches.
	refuse func(reason string)

	// Owned by the stream goroutine.
	role     merge.Role
	audio    media.AudioConfig
	hasAudio bool
	video    media.VideoConfig
	hasVideo bool
	rate     rateMeter
	refused  string
	// telemetry is the appliance's last in-band report, if it sends any.
	telemetry   *telemetry.Report
	telemetryAt time.Time
	// monitor judges the input's health from what it delivers.
	monitor    *health.Input
	health     health.Health
	srtSampled time.Time
	// lastFrameAt is when the input's latest frame arrived.
	lastFrameAt time.Time
	// levels decodes the audio of an input that sends no in-band
	// telemetry (nil otherwise); levelNote says why an input has no
	// levels at all; lastBlock is the newest decoded block.
	levels    *audiolevel.Meter
	levelNote string
	lastBlock audiolevel.Block
	blocks    []audiolevel.Block
}

// message is what ingest sends a stream.
type message struct {
	in        *input
	kind      messageKind
	frame     media.Frame
	audio     media.AudioConfig
	video     media.VideoConfig
	reason    string
	telemetry telemetry.Report
	// inband says, with msgTrack, that the input declared in-band
	// telemetry (a Tandem appliance): its audio is not decoded.
	inband bool
	// attach and pin reply with nil, or an error refusing the request.
	reply chan error
	// pin is the input an operator chose; nil returns the choice to the policy.
	pin *merge.Role
}

type messageKind int

const (
	msgAttach messageKind = iota
	msgTrack
	msgVideoTrack
	msgFrame
	msgDetach
	msgTelemetry
	msgPin
)

// stream is one logical stream: its inputs, its merge and its output.
// Everything below mu is owned by the run goroutine.
type stream struct {
	name string // "<app>/<name>"
	srv  *Server
	log  *slog.Logger

	inbox  chan message
	status chan chan StreamStatus
	done   chan struct{} // closed when run returns

	// attached counts inputs the server handed to this stream; guarded by
	// the server's mutex, so a stream is never removed while one arrives.
	attached int
	dead     bool
	// listeners counts HTTP listeners and SRT pulls; written by their handlers.
	listeners atomic.Int64
	// httpListeners and pullListeners count HTTP listeners and SRT pulls
	// for the caps; listenersRefused counts who a cap turned away.
	httpListeners, pullListeners, listenersRefused atomic.Int64
	// meta is the title and source information ICY listeners get.
	meta streamMeta

	// fan is the current online period's output; listeners take it under mu.
	mu  sync.Mutex
	fan *media.Fanout[Packet]
	// fanBatch is fan's batch size (frames per listener wake-up); owned by
	// the stream goroutine.
	fanBatch int
	// fanAudio is the audio configuration of fan's frames; fanVideo the
	// stream's video configuration, if it has video.
	fanAudio    media.AudioConfig
	fanVideo    media.VideoConfig
	fanHasVideo bool
	// hls segments the output; it outlives an online period (ending its
	// playlist) until the next one starts.
	hls *hls.Segmenter

	slots [2]*input
	merge *merge.Merge
	audio media.AudioConfig
	// video is the stream's video configuration, fixed by the first input
	// that declares one, like the audio.
	video    media.VideoConfig
	hasVideo bool
	adtsBuf  []byte
	events   eventRing
	started  time.Time
	// stopping waits for level decoders being shut down off the stream
	// goroutine (reaping a process can take a while).
	stopping sync.WaitGroup
}

func newStream(srv *Server, name string) *stream {
	return &stream{
		name:    name,
		srv:     srv,
		log:     srv.log.With("stream", name),
		inbox:   make(chan message, 512),
		status:  make(chan chan StreamStatus),
		done:    make(chan struct{}),
		events:  eventRing{max: 50},
		started: time.Now(),
	}
}

// output returns the fan-out listeners read while the stream is online.
func (s *stream) output() *media.Fanout[Packet] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fan
}

func (s *stream) record(kind, detail string, role *merge.Role) {
	e := Event{Time: time.Now(), Stream: s.name, Kind: kind, Reason: detail}
	if role != nil {
		e.Input = role.String()
	}
	s.recordEvent(e)
}

func (s *stream) recordEvent(e Event) {
	s.events.add(e)
	s.srv.emit(e)
	s.log.Info(e.Kind, "input", e.Input, "from", e.From, "to", e.To, "detail", e.Reason)
}

// run owns the stream until it is offline with no inputs, or ctx ends.
func (s *stream) run(ctx context.Context) {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// Health is judged a few times a second, apart from the frame clock.
	healthTick := time.NewTicker(healthInterval)
	defer healthTick.Stop()
	defer s.closeOutput()
	defer func() {
		for _, in := range s.slots {
			if in != nil {
				s.stopLevels(in)
			}
		}
		s.stopping.Wait()
	}()
	for {
		// Wake for the merge's next frame, or for the moment an input's
		// pending signal crosses its threshold, whichever comes first.
		wake := time.Now().Add(time.Hour)
		if s.merge != nil {
			if dl, ok := s.merge.NextDeadline(); ok {
				wake = dl
			}
		}
		healthDue, hasHealthDue := s.nextHealthDeadline()
		if hasHealthDue && healthDue.Before(wake) {
			wake = healthDue
		}
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
			return
		case m := <-s.inbox:
			s.handle(m)
			// Drain what else is queued before ticking: frames that arrived
			// together are merged together.
			for more := true; more; {
				select {
				case m := <-s.inbox:
					s.handle(m)
				default:
					more = false
				}
			}
		case reply := <-s.status:
			reply <- s.snapshot()
			continue
		case now := <-timer.C:
			if hasHealthDue && !now.Before(healthDue) {
				s.judgeHealth(now)
			}
		case now := <-healthTick.C:
			s.judgeHealth(now)
		}
		s.tick(time.Now())
		if s.slots[0] == nil && s.slots[1] == nil && (s.merge == nil || !s.merge.Online()) {
			if s.srv.removeStream(s) {
				return
			}
		}
	}
}

func (s *stream) handle(m message) {
	now := time.Now()
	in := m.in
	switch m.kind {
	case msgAttach:
		m.reply <- s.attach(now, in)
	case msgTrack:
		s.track(now, in, m.audio)
		if s.slots[in.role] == in && in.hasAudio && in.refused == "" && !m.inband {
			s.startLevels(in)
		}
	case msgVideoTrack:
		s.trackVideo(in, m.video)
	case msgFrame:
		if in.refused != "" || !in.hasAudio || s.slots[in.role] != in {
			return
		}
		if m.frame.Kind == media.KindVideo && !in.hasVideo {
			return
		}
		in.rate.add(now, len(m.frame.Data))
		in.monitor.Frame(now, len(m.frame.Data))
		in.lastFrameAt = now
		if in.levels != nil && m.frame.Kind == media.KindAudio {
			in.levels.Write(now, m.frame.PTS, m.frame.Data)
		}
		s.merge.Push(now, in.role, m.frame)
	case msgPin:
		m.reply <- s.pinInput(now, m.pin)
	case msgTelemetry:
		if s.slots[in.role] == in {
			r := m.telemetry
			in.telemetry, in.telemetryAt = &r, now
			s.stopLevels(in)
			rms := make([]float64, len(r.Levels))
			for i, l := range r.Levels {
				rms[i] = l.RMSDBFS
			}
			in.monitor.Levels(now, rms, time.Duration(r.SilentMs)*time.Millisecond)
			if v := r.Video; v != nil {
				in.monitor.Video(now, health.VideoState{Frozen: v.FrozenMs > 0, Black: v.BlackMs > 0,
					FrozenFor: time.Duration(v.FrozenMs) * time.Millisecond, BlackFor: time.Duration(v.BlackMs) * time.Millisecond})
			}
		}
	case msgDetach:
		s.stopLevels(in)
		if s.slots[in.role] != in {
			return
		}
		s.slots[in.role] = nil
		if s.merge != nil && in.hasAudio {
			s.merge.Disconnect(now, in.role, m.reason)
		}
		r := in.role
		s.record("input-disconnected", fmt.Sprintf("%s %s from %s: %s", in.proto, r, in.remote, m.reason), &r)
	}
}

// attach gives the input a slot: the role its stream id asks for, or for a
// publisher that did not say, the primary slot if free, else the fallback.
func (s *stream) attach(now time.Time, in *input) error {
	var role merge.Role
	switch in.id.Role {
	case streamid.RolePrimary:
		role = merge.Primary
	case streamid.RoleFallback:
		role = merge.Fallback
	default:
		role = merge.Primary
		if s.slots[merge.Primary] != nil {
			role = merge.Fallback
		}
	}
	if old := s.slots[role]; old != nil {
		// The same feed redialling (same role, same capture session) after
		// its sender gave up on a stalled connection takes over at once:
		// libsrt would take ~5 s to notice the old one is dead. Publishers
		// that declare no session cannot take a slot over.
		sameFeed := in.id.Role != streamid.RoleAny && old.id.Session != "" && old.id.Session == in.id.Session
		if !sameFeed {
			return fmt.Errorf("%w: %s already has a %s input (%s from %s)", ErrSlotTaken, s.name, role, old.proto, old.remote)
		}
		r := role
		s.record("input-replaced", fmt.Sprintf("%s %s from %s replaced by a reconnect of the same feed from %s", old.proto, role, old.remote, in.remote), &r)
		old.refused = "replaced by a reconnect of the same feed"
		s.stopLevels(old)
		s.slots[role] = nil
		old.refuse(old.refused)
	}
	in.role = role
	in.monitor = health.New(s.srv.cfg.healthThresholds())
	in.monitor.Connected(now, true)
	s.slots[role] = in
	r := role
	session := in.id.Session
	if session == "" {
		session = "none"
	}
	s.record("input-connected", fmt.Sprintf("%s %s from %s, session %s", in.proto, role, in.remote, session), &r)
	return nil
}

// track takes an input's audio configuration. The first input to declare
// one fixes the stream's; an input that differs is refused with an event
// naming the mismatch, and the stream goes on undisturbed.
func (s *stream) track(now time.Time, in *input, cfg media.AudioConfig) {
	if s.slots[in.role] != in || in.refused != "" {
		return
	}
	r := in.role
	if in.hasAudio {
		if err := in.audio.Match(cfg); err != nil {
			s.refuse(in, fmt.Sprintf("audio changed mid-stream: %v", err))
		}
		return
	}
	if s.merge == nil || (!s.merge.Online() && s.otherHasNoAudio(in)) {
		silence, err := adts.SilentFrame(cfg)
		if err != nil {
			s.refuse(in, fmt.Sprintf("unsupported audio %s: %v", cfg, err))
			return
		}
		s.audio = cfg
		s.merge = merge.New(merge.Config{
			Hold:   s.srv.cfg.Hold(),
			Grace:  time.Duration(s.srv.cfg.Grace),
			Stall:  time.Duration(s.srv.cfg.SpliceStall),
			Stable: time.Duration(s.srv.cfg.Stable),
			Policy: s.srv.cfg.policyFor(s.name),
		}, cfg, silence)
		s.record("format", fmt.Sprintf("%s set the stream's audio: %s", r, cfg), &r)
	} else if err := s.audio.Match(cfg); err != nil {
		s.refuse(in, fmt.Sprintf("%s refused: %v", r, err))
		return
	}
	in.audio, in.hasAudio = cfg, true
	s.merge.Connect(now, in.role, in.id.Session)
	if in.hasVideo {
		s.merge.SetVideo(in.role, in.video)
	}
}

// trackVideo takes an input's video configuration, checked like the
// audio: the first input to declare one fixes the stream's, an input whose
// codec or resolution differs is refused with an event naming the
// mismatch. New parameter sets with the same resolution are fine (an
// encoder may resend them); the merge sends them in band at keyframes.
func (s *stream) trackVideo(in *input, cfg media.VideoConfig) {
	if s.slots[in.role] != in || in.refused != "" {
		return
	}
	r := in.role
	switch {
	case in.hasVideo:
		if err := in.video.Match(cfg); err != nil {
			s.refuse(in, fmt.Sprintf("video changed mid-stream: %v", err))
			return
		}
	case !s.hasVideo || (s.merge == nil || !s.merge.Online()) && s.otherHasNoVideo(in):
		s.video, s.hasVideo = cfg, true
		s.record("format", fmt.Sprintf("%s set the stream's video: %s %dx%d", r, cfg.Codec, cfg.Width, cfg.Height), &r)
	default:
		if err := s.video.Match(cfg); err != nil {
			s.refuse(in, fmt.Sprintf("%s refused: %v", r, err))
			return
		}
	}
	in.video, in.hasVideo = cfg, true
	s.mu.Lock()
	s.fanVideo, s.fanHasVideo = s.video, true
	if s.hls != nil {
		s.hls.SetVideo(s.video)
	}
	s.mu.Unlock()
	if s.merge != nil && in.hasAudio {
		s.merge.SetVideo(in.role, cfg)
	}
}

func (s *stream) otherHasNoVideo(in *input) bool {
	o := s.slots[in.role.Other()]
	return o == nil || !o.hasVideo
}

func (s *stream) otherHasNoAudio(in *input) bool {
	o := s.slots[in.role.Other()]
	return o == nil || !o.hasAudio
}

func (s *stream) refuse(in *input, reason string) {
	in.refused = reason
	s.stopLevels(in)
	r := in.role
	s.record("input-refused", reason, &r)
	in.refuse(reason)
}

func (s *stream) tick(now time.Time) {
	if s.merge == nil {
		return
	}
	outs, evs := s.merge.Tick(now)
	for _, e := range evs {
		switch e.Kind {
		case merge.EventOnline:
			s.openOutput()
		case merge.EventOffline:
			s.closeOutput()
		}
		s.recordMerge(e)
	}
	if len(evs) > 0 {
		s.meta.follow(s.merge.Active())
	}
	if len(outs) == 0 {
		return
	}
	fan := s.output()
	s.mu.Lock()
	seg := s.hls
	s.mu.Unlock()
	if fan != nil {
		s.batchListeners(fan)
	}
	for _, o := range outs {
		if seg != nil {
			seg.WriteFrame(o.Frame)
		}
		p := Packet{Frame: o.Frame, Source: o.Source, Filled: o.Filled}
		if o.Frame.Kind != media.KindVideo {
			p.ADTS = s.frameADTS(o.Frame.Data)
		}
		if fan != nil {
			fan.Write(p)
		}
	}
}

// batchListeners wakes HTTP listeners once per listener_write_interval
// while the server has more than listener_batch_above of them, and per
// frame otherwise: a few listeners get each frame at once (lowest
// latency), thousands get fewer, larger writes (a syscall and a wake-up
// per listener per frame were ~6× icecast2's CPU at 1000 listeners).
func (s *stream) batchListeners(fan *media.Fanout[Packet]) {
	want := 1
	if s.srv.httpListeners.Load() > int64(s.srv.cfg.ListenerBatchAbove) {
		want = s.srv.cfg.listenerBatch(s.audio)
	}
	if want != s.fanBatch {
		fan.SetBatch(want)
		s.fanBatch = want
	}
}

// frameADTS builds header+payload in a shared arena so each frame costs
// one small allocation amortised over many frames.
func (s *stream) frameADTS(payload []byte) []byte {
	need := 7 + len(payload)
	if cap(s.adtsBuf)-len(s.adtsBuf) < need {
		s.adtsBuf = make([]byte, 0, max(64<<10, need))
	}
	start := len(s.adtsBuf)
	out, err := adts.AppendFrame(s.adtsBuf, s.audio, payload)
	if err != nil {
		s.log.Error("cannot frame AAC as ADTS", "err", err)
		return nil
	}
	s.adtsBuf = out
	return out[start:len(out):len(out)]
}

func (s *stream) recordMerge(e merge.Event) {
	switch e.Kind {
	case merge.EventSwitch:
		s.recordEvent(Event{Time: e.Time, Stream: s.name, Kind: "switch", Input: e.To.String(), From: e.From.String(), To: e.To.String(), Reason: e.Reason})
	case merge.EventManual:
		ev := Event{Time: e.Time, Stream: s.name, Kind: "manual", Reason: e.Reason}
		if strings.Contains(e.Reason, "chose") {
			ev.From, ev.To = e.From.String(), e.To.String()
		}
		s.recordEvent(ev)
	case merge.EventOnline:
		// The logical stream is published: the fallback never is on its own.
		s.record("publish", e.Reason, nil)
	case merge.EventOffline:
		s.record("unpublish", e.Reason, nil)
	default:
		s.record(string(e.Kind), e.Reason, nil)
	}
}

func (s *stream) openOutput() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fan == nil {
		s.fan = media.NewFanout[Packet](s.srv.cfg.outputRing(s.hasVideo))
		s.fanBatch = 1
		s.fanAudio = s.audio
		// The output timeline is continuous across switches, splices and
		// reconnects, so the playlist never needs a discontinuity (only
		// when video appears after the first segment: SetVideo).
		cfg := hls.Config{TargetDuration: time.Duration(s.srv.cfg.HLSTarget), Window: s.srv.cfg.HLSWindow, Audio: s.audio}
		if s.hasVideo {
			cfg.Video = s.video
		}
		s.hls = hls.New(cfg)
	}
}

func (s *stream) closeOutput() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fan != nil {
		s.fan.Close()
		s.fan = nil
	}
	if s.hls != nil {
		s.hls.Close()
	}
}

// rateMeter measures an input's payload bitrate over the last few seconds.
type rateMeter struct {
	buckets [5]struct {
		sec   int64
		bytes int
	}
}

func (r *rateMeter) add(now time.Time, n int) {
	sec := now.Unix()
	b := &r.buckets[sec%int64(len(r.buckets))]
	if b.sec != sec {
		b.sec, b.bytes = sec, 0
	}
	b.bytes += n
}

// kbps is the mean over the last full seconds.
func (r *rateMeter) kbps(now time.Time) float64 {
	sec := now.Unix()
	total, secs := 0, 0
	for _, b := range r.buckets {
		if b.sec < sec && b.sec >= sec-int64(len(r.buckets)-1) {
			total += b.bytes
			secs++
		}
	}
	if secs == 0 {
		return 0
	}
	return float64(total) * 8 / 1000 / float64(secs)
}

// pinInput is an operator's manual switch.
func (s *stream) pinInput(now time.Time, r *merge.Role) error {
	if s.merge == nil {
		return fmt.Errorf("stream %s has no audio yet", s.name)
	}
	if r == nil {
		s.merge.Unpin(now)
	} else if err := s.merge.Pin(now, *r); err != nil {
		return err
	}
	s.tick(now)
	return nil
}

// audioConfig is the audio configuration of the current output.
func (s *stream) audioConfig() media.AudioConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fanAudio
}

// videoConfig is the stream's video configuration, and false while no
// input has declared video.
func (s *stream) videoConfig() (media.VideoConfig, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fanVideo, s.fanHasVideo
}

// healthInterval is how often inputs' health is evaluated.
const healthInterval = 50 * time.Millisecond

// startLevels starts decoding the audio of an input that sends no in-band
// telemetry, so its silence and imbalance are judged like an appliance's.
func (s *stream) startLevels(in *input) {
	if in.levels != nil || in.telemetry != nil {
		return
	}
	if s.srv.levelDecoder == "" {
		in.levelNote = s.srv.levelNote
		return
	}
	m, err := audiolevel.Start(audiolevel.Config{FFmpeg: s.srv.levelDecoder, Audio: in.audio,
		Log: s.log.With("component", "audiolevel", "input", in.role.String(), "remote", in.remote)})
	if err != nil {
		in.levelNote = "no audio levels: " + err.Error()
		s.log.Warn("cannot decode an input's audio levels", "input", in.role.String(), "err", err)
		return
	}
	in.levels, in.levelNote = m, ""
}

// stopLevels stops an input's decoder (it detached, was refused, or
// sends telemetry after all). The process is reaped off the stream
// goroutine, which is on the media path; run waits for it before it returns.
func (s *stream) stopLevels(in *input) {
	if in.levels == nil {
		return
	}
	s.stopping.Go(in.levels.Close)
	in.levels = nil
}

// takeLevels hands the blocks decoded since the last call to the
// input's monitor, dated by their media time on the input's arrivals.
func (s *stream) takeLevels(in *input) {
	if in.levels == nil {
		return
	}
	in.blocks = in.levels.Take(in.blocks[:0])
	for _, b := range in.blocks {
		in.monitor.Levels(b.At, b.RMSDBFS, 0)
	}
	if n := len(in.blocks); n > 0 {
		in.lastBlock = in.blocks[n-1]
	}
	clear(in.blocks)
}

// nextHealthDeadline is the earliest moment an input's pending signal
// crosses its threshold.
func (s *stream) nextHealthDeadline() (time.Time, bool) {
	var next time.Time
	for _, in := range s.slots {
		if in == nil || in.monitor == nil || in.refused != "" {
			continue
		}
		if d, ok := in.monitor.NextDeadline(); ok && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	return next, !next.IsZero()
}

// judgeHealth feeds each input's monitor its SRT statistics (once a
// second) and hands changes of health to the merge's policy.
func (s *stream) judgeHealth(now time.Time) {
	for _, in := range s.slots {
		if in == nil || in.monitor == nil || in.refused != "" {
			continue
		}
		s.takeLevels(in)
		var rttMs, lossPct float64
		if in.stats != nil && now.Sub(in.srtSampled) >= time.Second {
			in.srtSampled = now
			if st, ok := in.stats().(SRTStats); ok {
				in.monitor.SRT(now, st.PktRecv, st.RecvLoss, st.Retransmitted, time.Duration(st.RTTms*float64(time.Millisecond)))
				rttMs = st.RTTms
				if st.PktRecv > 0 {
					lossPct = 100 * float64(st.RecvLoss) / float64(st.PktRecv+st.RecvLoss)
				}
			}
		}
		h, changed := in.monitor.Evaluate(now)
		if !changed {
			continue
		}
		prev := in.health
		in.health = h
		if s.merge != nil && in.hasAudio {
			s.merge.SetHealth(now, in.role, merge.InputHealth{
				State: mergeState(h.State), Reason: strings.Join(h.Reasons, "; "),
				Score: health.Score(h, rttMs, lossPct) / 2, Content: contentReason(h.Reasons),
			})
		}
		if prev.State == h.State && len(h.Reasons) == 0 {
			continue
		}
		r := in.role
		reason := h.State.String()
		if len(h.Reasons) > 0 {
			reason += ": " + strings.Join(h.Reasons, "; ")
		}
		s.recordEvent(Event{Time: now, Stream: s.name, Input: r.String(), Kind: "health", From: prev.State.String(), To: h.State.String(), Reason: reason})
	}
	s.tick(now)
}

func mergeState(h health.State) merge.HealthState {
	switch h {
	case health.Degraded:
		return merge.Degraded
	case health.Failed:
		return merge.Failed
	}
	return merge.Healthy
}

// contentReason says whether a health reason concerns the programme, not
// its transport (the health package names the signal first).
func contentReason(reasons []string) bool {
	for _, r := range reasons {
		for _, p := range []string{"silence", "imbalance", "video"} {
			if strings.HasPrefix(r, p) {
				return true
			}
		}
	}
	return false
}

// segmenter is the stream's HLS output, nil before it first went online.
func (s *stream) segmenter() *hls.Segmenter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hls
}
