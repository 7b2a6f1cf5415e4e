package rtmp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/uplink/flv"
	"tandem/uplink/media"
	"tandem/uplink/rtmp/amf0"
)

// ServerConfig configures a Server. Only the callbacks a caller needs must
// be set: without OnPublish every publisher is refused, without OnPlay
// every player.
type ServerConfig struct {
	// Authorize is called on publish with the application, the stream name
	// without its query, the stream key (key=… from the publish name's
	// query, else from the connect app's query; "" if none) and the peer.
	// A non-nil error refuses the publisher: it gets onStatus
	// NetStream.Publish.Unauthorized with the error text (a *StatusError
	// chooses its own code and description) and the connection is closed.
	Authorize func(app, name, key string, peer net.Addr) error
	// OnPublish is called once the publisher is authorized. The returned
	// Sink receives its media from the connection's goroutine. An error
	// refuses the publisher (onStatus NetStream.Publish.BadName with the
	// error text, or the *StatusError's code).
	OnPublish func(p *Publisher) (Sink, error)
	// OnPlay is called when a client asks to play a stream. The callee
	// feeds p from its own goroutine until p.Done() is closed or a write
	// fails; an error refuses the player (NetStream.Play.StreamNotFound).
	OnPlay func(p *Player) error
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
	// ChunkSize is the outgoing chunk size (default 4096).
	ChunkSize int
	// HandshakeTimeout bounds the handshake (default 10 s); IdleTimeout
	// ends a session that receives nothing for that long (default 30 s;
	// idle peers are pinged at a third of it), and bounds every write.
	HandshakeTimeout, IdleTimeout time.Duration
	// MaxMessageSize refuses messages above it (default and maximum
	// 16 MiB; the 24-bit length field cannot express more).
	MaxMessageSize int
}

const maxStreamsPerConn = 8

// Publisher describes an accepted publisher.
type Publisher struct {
	App  string
	Name string // the publish name without its query
	Key  string // the stream key (key=… query parameter)
	// Query holds the publish name's query parameters, completed by those
	// of the connect app name.
	Query  url.Values
	Remote net.Addr
	// TCURL and FlashVer are the client's connect parameters (FlashVer
	// names the client software, e.g. "FMLE/3.0 (compatible; Lavf59.27.100)").
	TCURL    string
	FlashVer string
	// Metadata is the onMetaData the client sent before publishing, if
	// any (most send it after; a Sink that implements MetadataSink
	// receives those). It is not modified after OnPublish.
	Metadata map[string]any

	sess *session
}

// ErrKicked is the reason a Sink gets when Publisher.Close ended it.
var ErrKicked = errors.New("rtmp: publisher closed by the server")

// Close disconnects the publisher (its whole connection); the Sink gets
// OnClose(ErrKicked). It may be called from any goroutine, also from
// within Sink methods.
func (p *Publisher) Close() error {
	if p.sess == nil {
		return nil
	}
	p.sess.kicked.Store(true)
	return p.sess.nc.Close()
}

func (p *Publisher) String() string { return p.App + "/" + p.Name }

// Sink receives one publisher's media, on the connection's goroutine.
type Sink interface {
	// OnAudioConfig is called with the AAC sequence header's
	// configuration, first before any audio frame and again on change.
	OnAudioConfig(media.AudioConfig)
	// OnVideoConfig is called with the AVC sequence header's
	// configuration, first before any video frame and again on change.
	OnVideoConfig(media.VideoConfig)
	// OnFrame receives AAC raw access units and H.264 Annex-B access
	// units (keyframes always carry SPS and PPS in band). DTS is the RTMP
	// timestamp × 90, unwrapped across the 32-bit ms wrap; PTS = DTS +
	// composition time × 90; Key is set on every audio frame and on
	// access units with an IDR slice.
	OnFrame(media.Frame)
	// OnClose is called once when the publisher ends: nil after a clean
	// unpublish (FCUnpublish, deleteStream or closeStream), else the
	// reason (connection closed or timed out, protocol or media error,
	// ErrServerClosed).
	OnClose(err error)
}

// MetadataSink is an optional interface of a Sink: it receives every
// onMetaData (@setDataFrame) the publisher sends, as plain Go values.
type MetadataSink interface {
	OnMetadata(map[string]any)
}

// ErrServerClosed is the reason given to sinks and players when the
// server is closed, and what Serve returns then.
var ErrServerClosed = errors.New("rtmp: server closed")

// StatusError is an onStatus/_error answer: the server's refusal of a
// client step, or (returned from Authorize, OnPublish or OnPlay) the code
// and description a refusal should carry.
type StatusError struct {
	Step        string // connect, createStream, publish, play
	Level       string
	Code        string
	Description string
}

func (e *StatusError) Error() string {
	msg := e.Code
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.Step == "" {
		return "rtmp: " + msg
	}
	return fmt.Sprintf("rtmp: %s refused by the server: %s", e.Step, msg)
}

// Server accepts RTMP publishers and players.
type Server struct {
	cfg       ServerConfig
	log       *slog.Logger
	hsLimit   limiter
	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	wg        sync.WaitGroup
}

// NewServer returns a Server; defaults fill the zero fields of cfg.
func NewServer(cfg ServerConfig) *Server {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 4096
	}
	cfg.ChunkSize = min(cfg.ChunkSize, 0xFFFFFF)
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.MaxMessageSize <= 0 || cfg.MaxMessageSize > 1<<24 {
		cfg.MaxMessageSize = 1 << 24
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:       cfg,
		log:       log.With("component", "rtmp"),
		hsLimit:   limiter{every: time.Second, burst: 10},
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
	}
}

// Serve accepts connections on ln until Close (then it returns
// ErrServerClosed) or a permanent accept error. It may be called for
// several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("rtmp: accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		sess := newSession(s, nc)
		s.sessions[sess] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go sess.run()
	}
}

// Close closes the listeners and every session (sinks get OnClose with
// ErrServerClosed, players' Done closes) and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.closing.Store(true)
		sess.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// session is one accepted connection; run owns all its state except what
// Player methods touch under the conn's write lock.
type session struct {
	srv     *Server
	nc      net.Conn
	c       *conn
	log     *slog.Logger
	remote  net.Addr
	closing atomic.Bool // Server.Close
	kicked  atomic.Bool // Publisher.Close

	connected   bool
	app         string
	appQuery    url.Values
	tcURL       string
	flashVer    string
	streams     map[uint32]*netStream
	nextID      uint32
	pendingMeta map[string]any
	warn        limiter
}

type netStream struct {
	id    uint32
	pub   *pubState
	play  *Player
	ended bool // a publish or play ended on it: late media is dropped
}

type pubState struct {
	p      *Publisher
	sink   Sink
	md     MetadataSink
	dmx    *flv.Demuxer
	closed bool
}

// refusedError ends a session after a refusal was sent to the client.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

func newSession(srv *Server, nc net.Conn) *session {
	log := srv.log.With("remote", nc.RemoteAddr().String())
	c := newConn(nc, srv.cfg.MaxMessageSize, log)
	return &session{
		srv:     srv,
		nc:      nc,
		c:       c,
		log:     log,
		remote:  nc.RemoteAddr(),
		streams: make(map[uint32]*netStream),
		nextID:  1,
		warn:    limiter{every: 10 * time.Second, burst: 5},
	}
}

func (s *session) run() {
	defer func() {
		s.srv.mu.Lock()
		delete(s.srv.sessions, s)
		s.srv.mu.Unlock()
		s.srv.wg.Done()
	}()
	err := s.serve()
	var refused *refusedError
	switch {
	case s.closing.Load():
		err = ErrServerClosed
	case s.kicked.Load():
		err = ErrKicked
		s.log.Info("rtmp: publisher closed by the server")
	case errors.As(err, &refused):
		s.linger()
	case errors.Is(err, ErrHandshake):
		if ok, n := s.srv.hsLimit.allow(); ok {
			s.log.Warn("rtmp: handshake failed; connection closed", "err", err, "suppressed", n)
		}
	case errors.Is(err, io.EOF):
		err = fmt.Errorf("rtmp: connection closed by the peer: %w", err)
		s.log.Debug("rtmp: connection closed by the peer")
	case errors.Is(err, ErrWrite):
		s.log.Warn("rtmp: session ended: the peer does not take our data", "err", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("rtmp: nothing received for %v: %w", s.srv.cfg.IdleTimeout, err)
		s.log.Warn("rtmp: session timed out", "err", err)
	default:
		s.log.Warn("rtmp: session ended", "err", err)
	}
	s.nc.Close()
	for _, ns := range s.streams {
		s.endStream(ns, err)
	}
}

// linger half-closes the connection and reads until the client closes
// (at most 2 s), so that a refusal reaches it rather than being lost to
// a reset.
func (s *session) linger() {
	s.c.wmu.Lock()
	s.c.werr = fmt.Errorf("%w: connection closing", ErrWrite)
	s.c.wmu.Unlock()
	if cw, ok := s.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	s.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, io.LimitReader(s.nc, 1<<20))
}

func (s *session) serve() error {
	cfg := &s.srv.cfg
	start := time.Now()
	s.nc.SetDeadline(start.Add(cfg.HandshakeTimeout))
	if err := serverHandshake(s.c.br, s.c.bw, start); err != nil {
		return err
	}
	s.nc.SetDeadline(time.Time{})
	s.c.cnt.idle = cfg.IdleTimeout
	s.c.writeTimeout = cfg.IdleTimeout
	stop := s.startPinger(cfg.IdleTimeout / 3)
	defer stop()
	for {
		m, err := s.c.readMessage()
		if err != nil {
			return err
		}
		if err := s.handle(m); err != nil {
			return err
		}
	}
}

// startPinger sends a ping request whenever nothing was received for
// interval, so that quiet peers (players) prove they are alive.
func (s *session) startPinger(interval time.Duration) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if time.Since(time.Unix(0, s.c.cnt.lastRead.Load())) >= interval {
					s.c.write(userControlMsg(eventPingRequest, be32(sinceMs(start))))
				}
			}
		}
	}()
	return func() { close(done); <-exited }
}

func (s *session) handle(m message) error {
	switch m.typ {
	case typeCommandAMF0, typeCommandAMF3:
		name, txn, args, err := decodeCommand(m)
		if err != nil {
			return err
		}
		return s.command(m.streamID, name, txn, args)
	case typeDataAMF0, typeDataAMF3:
		s.data(m)
		return nil
	case typeAudio, typeVideo:
		return s.media(m.streamID, m.typ, m.ts, m.payload)
	case typeAggregate:
		return s.aggregate(m)
	}
	if ok, n := s.warn.allow(); ok {
		s.log.Debug("rtmp: message ignored", "type", typeName(m.typ), "bytes", len(m.payload), "suppressed", n)
	}
	return nil
}

func argString(args []any, i int) string {
	if i < len(args) {
		s, _ := args[i].(string)
		return s
	}
	return ""
}

func (s *session) command(msid uint32, name string, txn float64, args []any) error {
	if !s.connected && name != "connect" {
		return protoErr("command %q before connect", name)
	}
	switch name {
	case "connect":
		return s.connect(txn, args)
	case "createStream":
		if len(s.streams) >= maxStreamsPerConn {
			return s.c.write(commandMsg(csidCommand, 0, "_error", txn, nil,
				status("error", "NetConnection.Call.Failed", fmt.Sprintf("at most %d streams per connection", maxStreamsPerConn))))
		}
		id := s.nextID
		s.nextID++
		s.streams[id] = &netStream{id: id}
		return s.c.write(commandMsg(csidCommand, 0, "_result", txn, nil, float64(id)))
	case "releaseStream":
		if txn != 0 {
			return s.c.write(commandMsg(csidCommand, 0, "_result", txn, nil, amf0.Undefined{}))
		}
		return nil
	case "FCPublish":
		return s.c.write(commandMsg(csidCommand, 0, "onFCPublish", 0.0, nil,
			amf0.Object{{Key: "code", Value: "NetStream.Publish.Start"}, {Key: "description", Value: argString(args, 1)}}))
	case "publish":
		return s.publish(msid, args)
	case "play":
		return s.play(msid, args)
	case "FCUnpublish":
		name, _ := splitQuery(argString(args, 1))
		for _, ns := range s.streams {
			if ns.pub != nil && !ns.pub.closed && ns.pub.p.Name == name {
				s.endStream(ns, nil)
			}
		}
		return nil
	case "deleteStream":
		var id uint32
		if len(args) > 1 {
			if f, ok := args[1].(float64); ok && f >= 0 && f < 1<<32 {
				id = uint32(f)
			}
		}
		if ns := s.streams[id]; ns != nil {
			s.endStream(ns, nil)
			delete(s.streams, id)
		}
		return nil
	case "closeStream":
		if ns := s.streams[msid]; ns != nil {
			s.endStream(ns, nil)
		}
		return nil
	}
	s.log.Debug("rtmp: command ignored", "command", name)
	return nil
}

func (s *session) connect(txn float64, args []any) error {
	if s.connected {
		return protoErr("second connect on one connection")
	}
	var obj amf0.Object
	if len(args) > 0 {
		obj, _ = args[0].(amf0.Object)
	}
	if obj == nil {
		return protoErr("connect without a command object")
	}
	app, q := splitQuery(obj.String("app"))
	s.app = strings.Trim(app, "/")
	s.appQuery = q
	s.tcURL = obj.String("tcUrl")
	s.flashVer = obj.String("flashVer")
	if s.app == "" {
		err := errors.New("connect names no application")
		s.log.Warn("rtmp: connect refused", "reason", err)
		s.c.write(commandMsg(csidCommand, 0, "_error", txn, nil, status("error", "NetConnection.Connect.Rejected", err.Error())))
		return &refusedError{fmt.Errorf("rtmp: connect refused: %w", err)}
	}
	s.connected = true
	s.log = s.log.With("app", s.app)
	tcURL, _, _ := strings.Cut(s.tcURL, "?")
	s.log.Debug("rtmp: connected", "tcUrl", tcURL, "flashVer", s.flashVer)
	return s.c.write(
		controlMsg(typeWindowAckSize, be32(defaultWindow)),
		controlMsg(typeSetPeerBandwidth, append(be32(defaultWindow), 2)), // limit type 2: dynamic
		setChunkSizeMsg(s.srv.cfg.ChunkSize),
		commandMsg(csidCommand, 0, "_result", txn,
			amf0.Object{{Key: "fmsVer", Value: "FMS/3,0,1,123"}, {Key: "capabilities", Value: 31.0}, {Key: "mode", Value: 1.0}},
			amf0.Object{
				{Key: "level", Value: "status"},
				{Key: "code", Value: "NetConnection.Connect.Success"},
				{Key: "description", Value: "Connection succeeded."},
				{Key: "objectEncoding", Value: 0.0},
			}),
	)
}

// stream returns the NetStream for a message stream id, creating it if the
// client skipped createStream.
func (s *session) stream(msid uint32, cmd string) (*netStream, error) {
	if msid == 0 {
		return nil, protoErr("%s on message stream 0 (createStream first)", cmd)
	}
	ns := s.streams[msid]
	if ns == nil {
		if len(s.streams) >= maxStreamsPerConn {
			return nil, protoErr("%s on message stream %d: at most %d streams per connection", cmd, msid, maxStreamsPerConn)
		}
		ns = &netStream{id: msid}
		s.streams[msid] = ns
	}
	return ns, nil
}

// names parses a publish/play name into name, key and query.
func (s *session) names(raw string) (name, key string, q url.Values) {
	name, q = splitQuery(raw)
	for k, v := range s.appQuery {
		if !q.Has(k) {
			q[k] = v
		}
	}
	return name, q.Get("key"), q
}

// refuse sends an error status for a publish or play and returns the
// error that ends the session.
func (s *session) refuse(msid uint32, step, code, target string, err error) error {
	desc := err.Error()
	var se *StatusError
	if errors.As(err, &se) {
		if se.Code != "" {
			code = se.Code
		}
		if se.Description != "" {
			desc = se.Description
		}
	}
	s.log.Warn("rtmp: "+step+" refused", "stream", target, "code", code, "reason", desc)
	s.c.write(onStatusMsg(msid, "error", code, desc))
	return &refusedError{fmt.Errorf("rtmp: %s %s refused: %w", step, target, err)}
}

func (s *session) publish(msid uint32, args []any) error {
	ns, err := s.stream(msid, "publish")
	if err != nil {
		return err
	}
	name, key, q := s.names(argString(args, 1))
	target := s.app + "/" + name
	if (ns.pub != nil && !ns.pub.closed) || ns.play != nil {
		return s.refuse(msid, "publish", "NetStream.Publish.BadName", target, fmt.Errorf("message stream %d is already in use", msid))
	}
	if name == "" {
		return s.refuse(msid, "publish", "NetStream.Publish.BadName", target, errors.New("empty stream name"))
	}
	cfg := &s.srv.cfg
	if cfg.Authorize != nil {
		if err := cfg.Authorize(s.app, name, key, s.remote); err != nil {
			return s.refuse(msid, "publish", "NetStream.Publish.Unauthorized", target, err)
		}
	}
	if cfg.OnPublish == nil {
		return s.refuse(msid, "publish", "NetStream.Publish.BadName", target, errors.New("this server accepts no publishers"))
	}
	p := &Publisher{
		App: s.app, Name: name, Key: key, Query: q, Remote: s.remote,
		TCURL: s.tcURL, FlashVer: s.flashVer, Metadata: s.pendingMeta, sess: s,
	}
	sink, err := cfg.OnPublish(p)
	if err == nil && sink == nil {
		err = errors.New("no sink for this stream")
	}
	if err != nil {
		return s.refuse(msid, "publish", "NetStream.Publish.BadName", target, err)
	}
	ps := &pubState{p: p, sink: sink, dmx: flv.NewDemuxer(sink)}
	ps.md, _ = sink.(MetadataSink)
	ns.pub, ns.ended = ps, false
	s.log.Info("rtmp: publishing", "stream", target, "flashVer", s.flashVer)
	return s.c.write(streamBeginMsg(msid),
		onStatusMsg(msid, "status", "NetStream.Publish.Start", "Publishing "+target+"."))
}

func (s *session) play(msid uint32, args []any) error {
	ns, err := s.stream(msid, "play")
	if err != nil {
		return err
	}
	name, key, q := s.names(argString(args, 1))
	target := s.app + "/" + name
	if (ns.pub != nil && !ns.pub.closed) || ns.play != nil {
		return s.refuse(msid, "play", "NetStream.Play.Failed", target, fmt.Errorf("message stream %d is already in use", msid))
	}
	if s.srv.cfg.OnPlay == nil {
		return s.refuse(msid, "play", "NetStream.Play.StreamNotFound", target, errors.New("this server has no streams to play"))
	}
	p := newPlayer(s.c, msid)
	p.App, p.Name, p.Key, p.Query, p.Remote = s.app, name, key, q, s.remote
	if err := s.srv.cfg.OnPlay(p); err != nil {
		p.finish(err)
		return s.refuse(msid, "play", "NetStream.Play.StreamNotFound", target, err)
	}
	ns.play, ns.ended = p, false
	s.log.Info("rtmp: playing", "stream", target)
	err = s.c.write(streamBeginMsg(msid),
		onStatusMsg(msid, "status", "NetStream.Play.Reset", "Playing and resetting "+target+"."),
		onStatusMsg(msid, "status", "NetStream.Play.Start", "Started playing "+target+"."),
		dataMsg(msid, "|RtmpSampleAccess", true, true))
	close(p.ready)
	return err
}

// endStream ends the publish or play on a NetStream: a nil reason is a
// clean unpublish.
func (s *session) endStream(ns *netStream, reason error) {
	if ps := ns.pub; ps != nil && !ps.closed {
		ps.closed = true
		st := ps.dmx.Stats()
		s.log.Info("rtmp: publish ended", "stream", ps.p.String(), "audio_frames", st.AudioFrames,
			"video_frames", st.VideoFrames, "dropped", st.Dropped, "reason", errString(reason))
		ps.sink.OnClose(reason)
		ns.ended = true
	}
	if p := ns.play; p != nil {
		if reason == nil {
			reason = errors.New("rtmp: play stopped by the client")
		}
		p.finish(reason)
		ns.play = nil
		ns.ended = true
	}
}

func errString(err error) string {
	if err == nil {
		return "unpublished"
	}
	return err.Error()
}

func (s *session) media(msid uint32, typ uint8, ts uint32, payload []byte) error {
	ns := s.streams[msid]
	if ns == nil || ns.pub == nil || ns.pub.closed {
		if ns != nil && ns.ended {
			return nil
		}
		return protoErr("%s message on message stream %d before publish", typeName(typ), msid)
	}
	if len(payload) == 0 {
		return nil
	}
	ps := ns.pub
	var err error
	if typ == typeAudio {
		err = ps.dmx.Audio(ts, payload)
	} else {
		err = ps.dmx.Video(ts, payload)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, flv.ErrNoConfig) {
		if ok, n := s.warn.allow(); ok {
			s.log.Warn("rtmp: frame dropped", "stream", ps.p.String(), "err", err, "suppressed", n)
		}
		return nil
	}
	return fmt.Errorf("rtmp: publisher %s: %w", ps.p, err)
}

// data handles data messages: onMetaData, with or without @setDataFrame.
// Undecodable data messages are logged and ignored.
func (s *session) data(m message) {
	p := m.payload
	if m.typ == typeDataAMF3 && len(p) > 0 && p[0] == 0 {
		p = p[1:]
	}
	vals, err := amf0.DecodeAll(p)
	if err != nil {
		if ok, n := s.warn.allow(); ok {
			s.log.Warn("rtmp: undecodable data message ignored", "err", err, "suppressed", n)
		}
		return
	}
	if len(vals) > 0 && vals[0] == "@setDataFrame" {
		vals = vals[1:]
	}
	if len(vals) < 2 || vals[0] != "onMetaData" {
		return
	}
	md, ok := amf0.ToPlain(vals[1]).(map[string]any)
	if !ok {
		return
	}
	if ns := s.streams[m.streamID]; ns != nil && ns.pub != nil && !ns.pub.closed {
		if ns.pub.md != nil {
			ns.pub.md.OnMetadata(md)
		}
		return
	}
	s.pendingMeta = md
}

// aggregate splits an aggregate message (spec §7.1.6) into its audio,
// video and data sub-messages; their timestamps are shifted so that the
// first equals the aggregate's.
func (s *session) aggregate(m message) error {
	p := m.payload
	var offset uint32
	for first := true; len(p) > 0; first = false {
		if len(p) < 11 {
			return protoErr("aggregate message: %d bytes left, a sub-message header needs 11", len(p))
		}
		typ := p[0]
		size := int(be24(p[1:]))
		ts := be24(p[4:]) | uint32(p[7])<<24
		if len(p) < 11+size {
			return protoErr("aggregate message: sub-message of %d bytes, %d left", size, len(p)-11)
		}
		if first {
			offset = m.ts - ts
		}
		body := p[11 : 11+size]
		switch typ {
		case typeAudio, typeVideo:
			if err := s.media(m.streamID, typ, ts+offset, body); err != nil {
				return err
			}
		case typeDataAMF0:
			s.data(message{typ: typ, streamID: m.streamID, payload: body})
		}
		p = p[11+size:]
		if len(p) >= 4 {
			p = p[4:] // back pointer
		}
	}
	return nil
}

// limiter lets through a burst of events per period and counts the rest.
type limiter struct {
	mu         sync.Mutex
	every      time.Duration
	burst      int
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether to log, and how many were suppressed since the
// last one that was.
func (l *limiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.start) >= l.every {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.suppressed++
		return false, 0
	}
	l.n++
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
