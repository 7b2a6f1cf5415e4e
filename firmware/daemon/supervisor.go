package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"time"

	"tandem/capture"
	"tandem/capture/encoder"
	"tandem/firmware/api"
	"tandem/firmware/config"
	"tandem/firmware/state"
	"tandem/firmware/version"
	"tandem/hal/audio"
	"tandem/hal/netlink"
	"tandem/uplink/media"
	"tandem/uplink/sender"
	"tandem/uplink/streamid"
	"tandem/uplink/telemetry"
)

// feed is one of the two uplinks: its encoder and its sender.
type feed struct {
	role    string
	cfg     config.Feed
	enc     *encoder.Encoder
	snd     *sender.Sender
	unsub   func()
	blocks  <-chan capture.Block
	lastRst int64
}

// supervisor runs the appliance: one capture clock, an encoder and a
// sender per feed, the policy routing, and the telemetry that rides
// in-band. It owns nothing the API reads except through Status, which only
// reads the components' own thread-safe stats.
type supervisor struct {
	cfg     config.Config
	log     *slog.Logger
	st      *state.Store
	started time.Time

	cap    *capture.Capture
	feeds  []*feed
	router netlink.Router

	// silenceChanged asks watch for a telemetry report now: the input
	// went silent or sound came back (capacity 1).
	silenceChanged chan struct{}

	mu         sync.Mutex
	linkStates map[string]netlink.LinkState
	capFails   int64
	capReopens int64
}

func newSupervisor(ctx context.Context, cfg config.Config, st *state.Store, log *slog.Logger) (*supervisor, error) {
	s := &supervisor{cfg: cfg, log: log, st: st, started: time.Now(), linkStates: map[string]netlink.LinkState{},
		silenceChanged: make(chan struct{}, 1)}
	format := capture.Format{SampleRate: cfg.Feeds.Primary.SampleRate, Channels: cfg.Feeds.Primary.Channels}

	// Feeds first: a config that cannot encode is refused before anything starts.
	profiles := map[string]encoder.Profile{}
	for _, role := range []string{"primary", "fallback"} {
		fc, _ := cfg.Feed(role)
		p, err := encoder.ProfileOf("feeds."+role, capture.FeedProfile{Codec: fc.Codec, Bitrate: fc.Bitrate, SampleRate: fc.SampleRate, Channels: fc.Channels})
		if err != nil {
			return nil, err
		}
		profiles[role] = p
	}

	src, reopen, err := s.openSource(ctx, format)
	if err != nil {
		// A missing device is an event and a retry, never a crash: the
		// timeline runs on silence until the device appears.
		s.record(state.KindCaptureReopen, "source", fmt.Sprintf("capture device unavailable at start, retrying: %v", err))
		src = nil
	}
	s.cap = capture.New(src, capture.Config{BlockFrames: cfg.Source.BlockFrames, Reopen: reopen, Format: format, Log: log.With("component", "capture"),
		OnSilence: func(bool) {
			select {
			case s.silenceChanged <- struct{}{}:
			default:
			}
		}})
	session := s.cap.Session().ID

	if cfg.PolicyRoutingEnabled() {
		var specs []netlink.LinkSpec
		for i, name := range sortedKeys(cfg.Links) {
			l := cfg.Links[name]
			spec := netlink.LinkSpec{Name: name, Interface: l.Interface, Table: l.Table, RulePriority: 1000 + i}
			if l.Gateway != "" {
				spec.Gateway, _ = netip.ParseAddr(l.Gateway)
			}
			specs = append(specs, spec)
		}
		r, err := netlink.New(specs, log.With("component", "netlink"))
		if err != nil {
			return nil, fmt.Errorf("policy routing: %w", err)
		}
		s.router = r
	}

	for _, role := range []string{"primary", "fallback"} {
		fc, _ := cfg.Feed(role)
		enc := encoder.New(role, profiles[role], cfg.FFmpeg, log.With("component", "encoder", "feed", role))
		link := cfg.Links[fc.Link]
		r := streamid.RolePrimary
		if role == "fallback" {
			r = streamid.RoleFallback
		}
		snd, err := sender.New(sender.Config{
			Role: r, App: cfg.App, Name: cfg.DeviceID, Session: session, Key: cfg.Key, Passphrase: cfg.Passphrase,
			Dest: fc.Dest, LocalAddr: link.Address, Latency: cfg.Latency.D(), MaxPackDelay: cfg.MaxPackDelay.D(), Audio: enc.Config(),
			Log:     log.With("component", "sender", "feed", role),
			OnEvent: s.senderEvent(role, fc.Link),
		})
		if err != nil {
			return nil, fmt.Errorf("feeds.%s: %w", role, err)
		}
		blocks, unsub := s.cap.Subscribe(64)
		s.feeds = append(s.feeds, &feed{role: role, cfg: fc, enc: enc, snd: snd, blocks: blocks, unsub: unsub})
	}
	return s, nil
}

// openSource opens the configured source and says how to reopen it.
func (s *supervisor) openSource(ctx context.Context, format capture.Format) (capture.Source, func(context.Context) (capture.Source, error), error) {
	src := s.cfg.Source
	if src.Type == "tone" {
		return capture.NewTone(format, src.Tone.Frequency, src.Tone.LevelDBFS), nil, nil
	}
	dc := audio.DeviceConfig{Backend: audio.Backend(src.Device.Backend), Device: src.Device.Name, Format: format}
	reopen := func(ctx context.Context) (capture.Source, error) {
		return audio.Open(ctx, dc, s.log.With("component", "audio"))
	}
	first, err := reopen(ctx)
	return first, reopen, err
}

func (s *supervisor) senderEvent(role, link string) func(sender.Event) {
	return func(e sender.Event) {
		switch e.Kind {
		case "connected", "disconnected", "ack-stall", "connect-failed":
		default:
			return
		}
		reason := e.Kind
		if e.Detail != "" {
			reason += ": " + e.Detail
		}
		if e.Err != nil {
			reason += ": " + e.Err.Error()
		}
		// Appends are fsynced: keep them off the sender's goroutine.
		go s.record(state.KindReconnect, fmt.Sprintf("feed %s (link %s)", role, link), reason)
	}
}

func (s *supervisor) record(kind, subject, reason string) {
	if _, err := s.st.Append(state.Event{Time: time.Now(), Kind: kind, Subject: subject, Reason: reason}); err != nil {
		s.log.Error("event log append failed", "err", err)
	}
	s.log.Info(kind, "subject", subject, "reason", reason)
}

// run starts everything and waits for ctx; every goroutine ends before it returns.
func (s *supervisor) run(ctx context.Context) {
	var wg sync.WaitGroup
	start := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	if s.router != nil {
		start(func() {
			if err := s.router.Run(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("policy routing stopped", "err", err)
			}
		})
		start(func() { s.watchLinks(ctx) })
	}
	start(func() {
		if err := s.cap.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("capture stopped", "err", err)
		}
	})
	for _, f := range s.feeds {
		start(func() {
			if err := f.snd.Run(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("sender stopped", "feed", f.role, "err", err)
			}
		})
		start(func() {
			defer f.unsub()
			if err := f.enc.Run(ctx, f.blocks, func(fr media.Frame, more bool) {
				// A capture block's frames share SRT messages.
				if more {
					f.snd.SendMore(fr)
				} else {
					f.snd.Send(fr)
				}
			}); err != nil && ctx.Err() == nil {
				s.log.Error("encoder stopped", "feed", f.role, "err", err)
			}
		})
	}
	start(func() { s.watch(ctx) })
	wg.Wait()
}

// watchLinks turns policy-routing changes into events.
func (s *supervisor) watchLinks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ls := <-s.router.Changes():
			s.mu.Lock()
			prev, seen := s.linkStates[ls.Name]
			s.linkStates[ls.Name] = ls
			s.mu.Unlock()
			if seen && prev.Up == ls.Up && prev.Routed == ls.Routed {
				continue
			}
			kind := state.KindLinkDown
			if ls.Up && ls.Routed {
				kind = state.KindLinkUp
			}
			s.record(kind, "link "+ls.Name, fmt.Sprintf("%s up=%v routed=%v %s", ls.Interface, ls.Up, ls.Routed, ls.Detail))
		}
	}
}

// watch samples the components once a second: encoder restarts and
// capture failures become events, and telemetry goes out in-band. A
// change between sound and silence is reported at once: the switcher
// dates a silence's onset from silent_ms, but sees its end only when a
// report says so.
func (s *supervisor) watch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.silenceChanged:
			s.report(s.cap.Stats())
			continue
		}
		cs := s.cap.Stats()
		s.mu.Lock()
		fails, reopens := s.capFails, s.capReopens
		s.capFails, s.capReopens = cs.Failures, cs.Reopens
		s.mu.Unlock()
		if cs.Failures > fails {
			s.record(state.KindCaptureReopen, "source", "capture failed: "+cs.LastError)
		}
		if cs.Reopens > reopens {
			s.record(state.KindCaptureReopen, "source", "capture device reopened; timeline kept")
		}
		for _, f := range s.feeds {
			es := f.enc.Stats()
			if es.Restarts > f.lastRst {
				f.lastRst = es.Restarts
				s.record(state.KindEncoderRestart, "feed "+f.role, fmt.Sprintf("encoder restarted (%d so far): %s", es.Restarts, es.LastError))
			}
		}
		s.report(cs)
	}
}

// report sends each feed's telemetry: levels and silence from cs, the
// feed's encoder and link.
func (s *supervisor) report(cs capture.Stats) {
	for _, f := range s.feeds {
		es, ss := f.enc.Stats(), f.snd.Stats()
		rep := telemetry.Report{Feed: f.role, SilentMs: cs.SilentFor.Milliseconds(), Encoder: es.State,
			EncoderRestarts: es.Restarts, Capture: cs.State,
			Link: telemetry.LinkStatus{Name: f.cfg.Link, Up: ss.State == "connected", RTTms: float64(ss.RTT) / float64(time.Millisecond), Reconnects: ss.Reconnects}}
		for i := range cs.Levels.PeakDBFS {
			rep.Levels = append(rep.Levels, telemetry.ChannelLevel{PeakDBFS: cs.Levels.PeakDBFS[i], RMSDBFS: cs.Levels.RMSDBFS[i]})
		}
		f.snd.SendTelemetry(rep)
	}
}

// Status implements api.Provider from the components' live stats.
func (s *supervisor) Status() api.Status {
	cs := s.cap.Stats()
	sess := s.cap.Session()
	st := api.Status{DeviceID: s.cfg.DeviceID, SessionID: cs.Session, Version: version.String(), Started: s.started}
	if sess.ID == cs.Session {
		st.SessionStarted = sess.Started
	}
	st.Source = api.SourceStatus{Type: s.cfg.Source.Type, State: cs.State, SilentMs: cs.SilentFor.Milliseconds(),
		SampleRate: sess.Format.SampleRate, Channels: sess.Format.Channels}
	if s.cfg.Source.Type == "tone" {
		st.Source.Name = fmt.Sprintf("%g Hz at %g dBFS", s.cfg.Source.Tone.Frequency, s.cfg.Source.Tone.LevelDBFS)
	} else {
		st.Source.Name = s.cfg.Source.Device.Backend + ":" + s.cfg.Source.Device.Name
	}
	for i := range cs.Levels.PeakDBFS {
		st.Source.Levels = append(st.Source.Levels, api.Level{PeakDBFS: finite(cs.Levels.PeakDBFS[i]), RMSDBFS: finite(cs.Levels.RMSDBFS[i])})
	}
	for _, f := range s.feeds {
		es, ss := f.enc.Stats(), f.snd.Stats()
		fs := api.FeedStatus{Role: f.role, State: feedState(ss.State), BitrateKbps: ss.BitrateKbps, Dest: ss.Dest, Link: f.cfg.Link,
			Encoder: api.EncoderStatus{State: es.State, Restarts: es.Restarts, PID: es.PID},
			SRT:     api.SRTStatus{RTTms: float64(ss.RTT) / float64(time.Millisecond), SendLoss: ss.SendLoss, Retrans: ss.Retrans, Messages: ss.Messages},
			Sent:    ss.Sent, Dropped: ss.Dropped, Reconnects: ss.Reconnects, ConnectedSince: ss.ConnectedSince, Error: ss.LastError}
		st.Feeds = append(st.Feeds, fs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range sortedKeys(s.cfg.Links) {
		l := s.cfg.Links[name]
		ls := api.LinkStatus{Name: name, Interface: l.Interface, Address: l.Address, Gateway: l.Gateway, Table: l.Table}
		if st, ok := s.linkStates[name]; ok {
			up := st.Up
			ls.Up, ls.Routed = &up, st.Routed
			if st.Addr.IsValid() {
				ls.Address = st.Addr.String()
			}
			if st.Gateway.IsValid() {
				ls.Gateway = st.Gateway.String()
			}
		}
		st.Links = append(st.Links, ls)
	}
	return st
}

func feedState(senderState string) string {
	switch senderState {
	case "connected":
		return api.StateConnected
	case "backoff":
		return api.StateReconnecting
	case "connecting":
		return api.StateConnecting
	}
	return senderState
}

func finite(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return -200
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
