// Package switcher is the cloud end of Tandem: it ingests the two feeds of
// every stream, merges them so the output never has a hole, and serves the
// result. The merge decisions live in the I/O-free package merge; this
// package owns the sockets, the per-stream loops and the HTTP surface.
package switcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"tandem/uplink/rtmp"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
	"tandem/uplink/switcher/audiolevel"
	"tandem/uplink/switcher/eventlog"
	"tandem/uplink/switcher/notify"
)

// ErrSlotTaken refuses a publisher whose stream already has that input.
var ErrSlotTaken = errors.New("input slot taken")

// Server is a running switcher.
type Server struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	streams map[string]*stream

	eventLog *eventlog.Log
	notifier *notify.Notifier
	eventq   chan Event
	// eventsDone is closed when the writer has drained eventq.
	eventsDone chan struct{}
	// emitMu guards eventq against sends after shutdown closed it.
	emitMu       sync.RWMutex
	eventsClosed bool
	lostEvts     atomic.Int64
	// httpListeners and pullListeners count every stream's HTTP
	// listeners and SRT pulls, for max_listeners.
	httpListeners, pullListeners atomic.Int64

	// ctx is the server's lifetime: streams run on it, never on the
	// context of the connection that happened to create them.
	ctx   context.Context
	srtLn *srt.Listener
	// srtMore are the extra SRT ports (srt_extra_addrs), each with its own
	// libsrt receive thread.
	srtMore []*srt.Listener
	rtmpLn  net.Listener
	rtmpSrv *rtmp.Server
	httpLn  net.Listener
	httpSrv *http.Server
	wg      sync.WaitGroup

	// levelDecoder is the resolved LevelDecoder binary, "" when decoding
	// is off or the binary is missing; levelNote then says why.
	levelDecoder string
	levelNote    string
}

// findLevelDecoder resolves the decoder of telemetry-less inputs' audio;
// a missing one is a warning, never a reason not to start.
func (s *Server) findLevelDecoder() {
	if s.cfg.LevelDecoder == "" {
		s.levelNote = "audio level decoding is off (level_decoder is empty)"
		return
	}
	p, err := audiolevel.LookPath(s.cfg.LevelDecoder)
	if err != nil {
		s.levelNote = fmt.Sprintf("no audio levels: level_decoder %q not found", s.cfg.LevelDecoder)
		s.log.Warn("silence and imbalance of inputs without in-band telemetry will not be detected", "level_decoder", s.cfg.LevelDecoder, "err", err)
		return
	}
	s.levelDecoder = p
}

// New checks the configuration and makes a server; Start opens its sockets.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, streams: map[string]*stream{}, eventq: make(chan Event, 4096)}, nil
}

// Start opens the SRT and HTTP listeners and serves until ctx ends or
// Close is called.
func (s *Server) Start(ctx context.Context) error {
	s.ctx = ctx
	if err := s.startEvents(ctx); err != nil {
		return fmt.Errorf("start switcher: %w", err)
	}
	if len(s.cfg.Streams) == 0 {
		s.log.Warn("publishing is open: no streams configured, any stream id with m=publish is accepted")
	}
	s.findLevelDecoder()
	s.checkUDPBuffer()
	ln, err := s.listenSRT(s.cfg.SRTAddr)
	if err != nil {
		s.stopEvents()
		return fmt.Errorf("start switcher: %w", err)
	}
	for _, addr := range s.cfg.SRTExtraAddrs {
		more, err := s.listenSRT(addr)
		if err != nil {
			ln.Close()
			s.closeExtraSRT()
			s.stopEvents()
			return fmt.Errorf("start switcher: srt_extra_addrs: %w", err)
		}
		s.srtMore = append(s.srtMore, more)
	}
	hl, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		ln.Close()
		s.closeExtraSRT()
		s.stopEvents()
		return fmt.Errorf("start switcher: listen http %s: %w", s.cfg.HTTPAddr, err)
	}
	s.srtLn, s.httpLn = ln, hl
	if err := s.startRTMP(ctx); err != nil {
		ln.Close()
		s.closeExtraSRT()
		hl.Close()
		s.stopEvents()
		return fmt.Errorf("start switcher: %w", err)
	}
	s.httpSrv = &http.Server{Handler: s.routes(ctx), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: maxIcecastHeaders}
	if s.cfg.DebugAddr != "" {
		if err := s.startDebug(ctx); err != nil {
			ln.Close()
			s.closeExtraSRT()
			hl.Close()
			return fmt.Errorf("start switcher: %w", err)
		}
	}
	for _, l := range append([]*srt.Listener{ln}, s.srtMore...) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.acceptSRT(ctx, l)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	s.log.Info("switcher started", "srt", ln.Addr().String(), "srt_extra", len(s.srtMore), "http", hl.Addr().String(),
		"latency", time.Duration(s.cfg.Latency), "playout_delay", s.cfg.EffectivePlayoutDelay())
	return nil
}

// SRTAddr and HTTPAddr are the bound addresses (useful with port 0).
func (s *Server) SRTAddr() net.Addr { return s.srtLn.Addr() }

// SRTExtraAddrs are the bound addresses of srt_extra_addrs, in order.
func (s *Server) SRTExtraAddrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.srtMore {
		out = append(out, l.Addr())
	}
	return out
}

// listenSRT opens one SRT port. Every port accepts the same publishers
// and pullers; each has its own libsrt receive thread and UDP socket, so
// spreading publishers over ports spreads that thread's work.
func (s *Server) listenSRT(addr string) (*srt.Listener, error) {
	return srt.Listen(addr, srt.ListenConfig{
		Options:   srt.Options{Latency: time.Duration(s.cfg.Latency), UDPBuffer: s.cfg.SRTUDPBuffer},
		Authorize: s.authorize,
		Logger:    s.log.With("component", "srt", "port", addr),
	})
}

func (s *Server) closeExtraSRT() {
	for _, l := range s.srtMore {
		l.Close()
	}
}
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// Close stops the listeners and waits for every goroutine.
func (s *Server) Close() error {
	if s.srtLn != nil {
		s.srtLn.Close()
	}
	s.closeExtraSRT()
	if s.rtmpSrv != nil {
		s.rtmpSrv.Close()
	}
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.httpSrv.Shutdown(ctx)
		cancel()
		s.httpSrv.Close()
	}
	s.wg.Wait()
	s.stopEvents()
	return nil
}

// authorize runs during the SRT handshake: a refusal here reaches the
// publisher as an SRT reject code, and is logged with its reason.
func (s *Server) authorize(sid string, peer net.Addr) (string, error) {
	id, err := streamid.Parse(sid)
	if err != nil {
		s.refused("", peer, err.Error())
		return "", &srt.RejectError{Code: srt.RejectBadRequest, Reason: err.Error()}
	}
	if id.Mode == streamid.ModeRequest {
		// A pull: the stream must be on air; its fallback is not a stream.
		if id.Role == streamid.RoleFallback {
			msg := fmt.Sprintf("%s_fallback is an input of %s, not a stream", id.Stream(), id.Stream())
			s.refused(id.Stream(), peer, msg)
			return "", &srt.RejectError{Code: srt.RejectNotFound, Reason: msg}
		}
		st := s.lookup(id.Stream())
		if st == nil || st.output() == nil {
			msg := fmt.Sprintf("stream %s is not on air", id.Stream())
			s.refused(id.Stream(), peer, msg)
			return "", &srt.RejectError{Code: srt.RejectNotFound, Reason: msg}
		}
		// Refused in the handshake, so the puller is told why (SRT's
		// "overload"); serveSRTPull counts it once connected.
		if err := s.overListenerCap(st, 1); err != nil {
			st.listenersRefused.Add(1)
			s.refused(id.Stream(), peer, err.Error())
			return "", &srt.RejectError{Code: srt.RejectOverload, Reason: err.Error()}
		}
		return "", nil
	}
	passphrase := ""
	if len(s.cfg.Streams) > 0 {
		sc, ok := s.cfg.Streams[id.Stream()]
		if !ok {
			msg := fmt.Sprintf("stream %s is not configured on this switcher", id.Stream())
			s.refused(id.Stream(), peer, msg)
			return "", &srt.RejectError{Code: srt.RejectForbidden, Reason: msg}
		}
		if sc.Key != "" && id.Key == "" {
			msg := fmt.Sprintf("stream %s needs a key (k=...) in the stream id", id.Stream())
			s.refused(id.Stream(), peer, msg)
			return "", &srt.RejectError{Code: srt.RejectUnauthorized, Reason: msg}
		}
		if sc.Key != "" && id.Key != sc.Key {
			msg := fmt.Sprintf("wrong key for stream %s", id.Stream())
			s.refused(id.Stream(), peer, msg)
			return "", &srt.RejectError{Code: srt.RejectUnauthorized, Reason: msg}
		}
		passphrase = sc.Passphrase
	}
	return passphrase, nil
}

func (s *Server) refused(stream string, peer net.Addr, reason string) {
	s.emit(Event{Time: time.Now(), Stream: stream, Kind: "publish-refused", Reason: fmt.Sprintf("from %v: %s", peer, reason)})
	s.log.Warn("publish refused", "stream", stream, "peer", fmt.Sprint(peer), "reason", reason)
}

func (s *Server) acceptSRT(ctx context.Context, ln *srt.Listener) {
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, srt.ErrClosed) {
				s.log.Error("srt accept failed", "err", err)
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveSRT(ctx, c)
		}()
	}
}

// attach hands an input to its stream, creating the stream if needed.
func (s *Server) attach(ctx context.Context, in *input) (*stream, error) {
	s.mu.Lock()
	st := s.streams[in.id.Stream()]
	if st == nil {
		st = newStream(s, in.id.Stream())
		s.streams[st.name] = st
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			st.run(s.ctx)
		}()
	}
	st.attached++
	s.mu.Unlock()

	reply := make(chan error, 1)
	select {
	case st.inbox <- message{kind: msgAttach, in: in, reply: reply}:
	case <-ctx.Done():
		s.detached(st)
		return nil, ctx.Err()
	}
	select {
	case err := <-reply:
		if err != nil {
			s.detached(st)
			return nil, err
		}
		return st, nil
	case <-ctx.Done():
		s.detached(st)
		return nil, ctx.Err()
	}
}

func (s *Server) detached(st *stream) {
	s.mu.Lock()
	st.attached--
	s.mu.Unlock()
}

// removeStream drops a stream that has no inputs; false if one is arriving.
func (s *Server) removeStream(st *stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.attached > 0 {
		return false
	}
	st.dead = true
	delete(s.streams, st.name)
	st.log.Info("stream removed: offline with no inputs")
	return true
}

func (s *Server) lookup(name string) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[name]
}

func (s *Server) streamList() []*stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*stream, 0, len(s.streams))
	for _, st := range s.streams {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Event is something that happened to a stream or an input; it is the
// event log's record.
type Event = eventlog.Event

// eventRing keeps the most recent events in memory.
type eventRing struct {
	mu     sync.Mutex
	max    int
	events []Event
}

func (r *eventRing) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	if len(r.events) > r.max {
		r.events = append(r.events[:0], r.events[len(r.events)-r.max:]...)
	}
}

func (r *eventRing) list() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// RTMPAddr is the RTMP listener's address, nil when RTMP is off.
func (s *Server) RTMPAddr() net.Addr {
	if s.rtmpLn == nil {
		return nil
	}
	return s.rtmpLn.Addr()
}

// checkUDPBuffer warns when the kernel grants the SRT port less buffer
// than configured: past it, a burst from many publishers is dropped by
// the kernel before libsrt sees it, and shows up as holes.
func (s *Server) checkUDPBuffer() {
	limit, err := srt.KernelBufferCap()
	if err != nil {
		s.log.Warn("cannot check the SRT port's UDP buffer", "err", err)
		return
	}
	if limit < s.cfg.SRTUDPBuffer {
		s.log.Warn("the kernel caps the SRT port's UDP buffer below srt_udp_buffer; raise net.core.rmem_max for many publishers",
			"srt_udp_buffer", s.cfg.SRTUDPBuffer, "net.core.rmem_max", limit)
	}
}
