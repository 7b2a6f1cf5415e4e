package switcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"tandem/uplink/icy"
	"tandem/uplink/media"
	"tandem/uplink/streamid"
	"tandem/uplink/switcher/audiolevel"
	"tandem/uplink/switcher/merge"
	"tandem/uplink/telemetry"
)

func (s *Server) routes(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/streams", s.handleStreams)
	mux.Handle("GET /api/v1/events", s.eventLog.Handler())
	mux.Handle("GET /api/v1/events/stream", s.eventLog.Handler())
	mux.HandleFunc("POST /api/v1/streams/{app}/{name}/active", s.handleActive)
	mux.HandleFunc("POST /api/v1/streams/{app}/{name}/metadata", s.handleMetadata)
	mux.HandleFunc("GET /admin/metadata", s.handleAdminMetadata)
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /{app}/{file}", func(w http.ResponseWriter, r *http.Request) { s.handleListen(ctx, w, r) })
	mux.HandleFunc("GET /{file}", func(w http.ResponseWriter, r *http.Request) {
		// Icecast-style mount without an app: /<id>.aac is <icecast_app>/<id>.
		r.SetPathValue("app", s.cfg.IcecastApp)
		s.handleListen(ctx, w, r)
	})
	mux.HandleFunc("GET /{app}/{name}/{file}", s.handleHLS)
	mux.HandleFunc("PUT /", s.handleSource)
	mux.HandleFunc("SOURCE /", s.handleSource)
	return mux
}

// handleListen serves a stream's continuous ADTS output the way Icecast
// does: an HTTP/1.0 response without a length, audio until the stream ends,
// with ICY metadata blocks for players that ask for them.
func (s *Server) handleListen(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	app, file := r.PathValue("app"), r.PathValue("file")
	name, ok := strings.CutSuffix(file, ".aac")
	if !ok {
		http.Error(w, "not found: streams are served as /<app>/<name>.aac", http.StatusNotFound)
		return
	}
	if strings.HasSuffix(name, streamid.FallbackSuffix) {
		// The fallback is an input of its stream, never a stream of its own.
		http.Error(w, "not found: a fallback input is not a stream; listen to /"+app+"/"+strings.TrimSuffix(name, streamid.FallbackSuffix)+".aac", http.StatusNotFound)
		return
	}
	st := s.lookup(app + "/" + name)
	var fan *media.Fanout[Packet]
	if st != nil {
		fan = st.output()
	}
	if fan == nil {
		http.Error(w, "stream "+app+"/"+name+" is not on air", http.StatusNotFound)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "listener connections need HTTP/1", http.StatusHTTPVersionNotSupported)
		return
	}
	release, err := s.admitListener(st, false)
	if err != nil {
		st.log.Warn("listener refused", "listener", r.RemoteAddr, "reason", err.Error())
		// Icecast's answer, which players show as "server full".
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	defer release()
	conn, bw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		// Linux grows a socket's send buffer up to 4 MiB: a listener that
		// stops reading would hold that much kernel memory and take minutes
		// to be noticed. The ring (listener_buffer) is the real buffer.
		tc.SetWriteBuffer(listenerSocketBuffer)
	}
	wantMeta := r.Header.Get("Icy-MetaData") == "1"
	if _, err := bw.WriteString(s.listenerHeader(st, app+"/"+name, wantMeta)); err != nil {
		return
	}
	if err := bw.Flush(); err != nil {
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	// Listeners send nothing more: drop the hijacked buffers (its writer
	// is 4 KiB that would live as long as the listener).
	bw = nil
	log := st.log.With("listener", conn.RemoteAddr().String())
	log.Info("listener connected", "icy_metadata", wantMeta)
	st.listeners.Add(1)
	defer st.listeners.Add(-1)
	// A listener that hangs up is noticed by the next write failing, at
	// most listener_write_interval later: no goroutine per listener waits
	// on a read.
	var meta *icy.Interleaver
	if wantMeta {
		meta = icy.NewInterleaver(s.cfg.ICYMetaInt)
	}
	// A batched reader wakes once per listener_write_interval, not per
	// frame: each wake-up costs this listener a writev.
	// The burst is listener_burst audio frames, however much video
	// sits between them in the ring.
	rd := fan.NewBatchedReader(s.cfg.ListenerBurst, func(p Packet) bool { return p.Frame.Kind != media.KindVideo })
	var batch []Packet
	var bufs net.Buffers
	var deadlineSet time.Time
	for {
		batch, err = rd.Read(ctx, batch[:0])
		if len(batch) > 0 {
			// Frames are shared by every listener: only slices of them
			// are queued, and the batch goes out in one writev.
			bufs = bufs[:0]
			cur := st.meta.current.Load()
			for _, p := range batch {
				if meta != nil {
					bufs = meta.Append(bufs, p.ADTS, cur)
				} else {
					bufs = append(bufs, p.ADTS)
				}
			}
			// A write that blocks this long drops the listener. Moving the
			// deadline costs a timer update: once a second is enough.
			if now := time.Now(); now.Sub(deadlineSet) > time.Second {
				conn.SetWriteDeadline(now.Add(listenerWriteTimeout))
				deadlineSet = now
			}
			b := bufs
			if _, werr := b.WriteTo(conn); werr != nil {
				if errors.Is(werr, os.ErrDeadlineExceeded) {
					log.Warn("listener dropped: it stopped reading (a write blocked too long)", "timeout", listenerWriteTimeout)
				} else {
					log.Info("listener gone", "reason", werr.Error())
				}
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, media.ErrReaderTooSlow):
			log.Warn("listener dropped: it fell behind the stream by more than its buffer", "buffer_frames", s.cfg.ListenerBuffer)
			return
		case errors.Is(err, media.ErrFanoutClosed):
			log.Info("listener closed: stream went off air")
			return
		default:
			log.Info("listener gone", "reason", err.Error())
			return
		}
	}
}

// listenerWriteTimeout is how long a write to a listener may block before
// the listener is dropped.
const listenerWriteTimeout = 10 * time.Second

// listenerSocketBuffer bounds a listener socket's kernel send buffer: 8 s
// of 128 kbit/s audio, several write intervals at any bitrate we serve.
const listenerSocketBuffer = 128 << 10

// listenerHeader is the response players expect from Icecast.
func (s *Server) listenerHeader(st *stream, id string, wantMeta bool) string {
	info := st.meta.info()
	var b strings.Builder
	b.WriteString("HTTP/1.0 200 OK\r\nContent-Type: audio/aac\r\n")
	hdr := func(k, v string) {
		// Header values come from sources: no line breaks may pass.
		v = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, v)
		b.WriteString(k + ": " + v + "\r\n")
	}
	name := info.Name
	if name == "" {
		name = id
	}
	hdr("icy-name", name)
	if info.Description != "" {
		hdr("icy-description", info.Description)
	}
	if info.Genre != "" {
		hdr("icy-genre", info.Genre)
	}
	if info.URL != "" {
		hdr("icy-url", info.URL)
	}
	if info.BitrateKbps > 0 {
		hdr("icy-br", strconv.Itoa(info.BitrateKbps))
	}
	pub := "0"
	if info.Public {
		pub = "1"
	}
	hdr("icy-pub", pub)
	if wantMeta {
		hdr("icy-metaint", strconv.Itoa(s.cfg.ICYMetaInt))
	}
	b.WriteString("Cache-Control: no-cache, no-store\r\n" +
		"Pragma: no-cache\r\n" +
		"Access-Control-Allow-Origin: *\r\n" +
		"Server: tandem-switcher\r\n" +
		"Connection: close\r\n\r\n")
	return b.String()
}

// admitListener counts a new listener (an HTTP listener, or an SRT pull
// when pull is set) against the global and the stream's max_listeners,
// which count both kinds; release uncounts it.
func (s *Server) admitListener(st *stream, pull bool) (release func(), err error) {
	mine, all := &st.httpListeners, &s.httpListeners
	if pull {
		mine, all = &st.pullListeners, &s.pullListeners
	}
	mine.Add(1)
	all.Add(1)
	release = func() {
		mine.Add(-1)
		all.Add(-1)
	}
	if err := s.overListenerCap(st, 0); err != nil {
		release()
		st.listenersRefused.Add(1)
		return nil, err
	}
	return release, nil
}

// overListenerCap says which cap the stream's listeners, plus extra more,
// are over, or nil.
func (s *Server) overListenerCap(st *stream, extra int64) error {
	n := st.httpListeners.Load() + st.pullListeners.Load() + extra
	total := s.httpListeners.Load() + s.pullListeners.Load() + extra
	if max := s.cfg.Streams[st.name].MaxListeners; max > 0 && n > int64(max) {
		return fmt.Errorf("max listeners reached: stream %s has its limit of %d (streams.%s.max_listeners)", st.name, max, st.name)
	}
	if max := s.cfg.MaxListeners; max > 0 && total > int64(max) {
		return fmt.Errorf("server listener limit reached: %d listeners (max_listeners)", max)
	}
	return nil
}

// StreamStatus is one stream in GET /api/v1/streams.
type StreamStatus struct {
	ID             string        `json:"id"`
	App            string        `json:"app"`
	Name           string        `json:"name"`
	State          string        `json:"state"` // online, offline, waiting
	Mode           string        `json:"mode,omitempty"`
	Active         string        `json:"active_input,omitempty"`
	Policy         string        `json:"policy,omitempty"`
	Preferred      string        `json:"preferred_input,omitempty"`
	Pinned         bool          `json:"pinned"`
	Audio          *AudioStatus  `json:"audio,omitempty"`
	PlayoutDelayMs float64       `json:"playout_delay_ms"`
	Inputs         []InputStatus `json:"inputs"`
	Output         OutputStatus  `json:"output"`
	Events         []Event       `json:"recent_events"`
}

type AudioStatus struct {
	Codec      string `json:"codec"`
	SampleRate int    `json:"sample_rate"`
	Channels   int    `json:"channels"`
}

type InputStatus struct {
	Role        string       `json:"role"`
	State       string       `json:"state"`
	Protocol    string       `json:"protocol"`
	Remote      string       `json:"remote"`
	Session     string       `json:"session,omitempty"`
	Health      string       `json:"health,omitempty"`
	HealthWhy   string       `json:"health_reason,omitempty"`
	ConnectedAt time.Time    `json:"connected_at"`
	Audio       *AudioStatus `json:"audio,omitempty"`
	BitrateKbps float64      `json:"bitrate_kbps"`
	Frames      struct {
		Received int64 `json:"received"`
		Used     int64 `json:"used"`
		Late     int64 `json:"late"`
	} `json:"frames"`
	SRT any `json:"srt,omitempty"`
	// FrameOffset places the input's timeline on the output's: its frame
	// stamped PTS p leaves as output frame p/frame_duration + frame_offset.
	// With a Tandem appliance's session_started it dates every output
	// frame's capture. Absent until the input is mapped.
	FrameOffset *int64 `json:"frame_offset,omitempty"`
	// Telemetry is the appliance's in-band report (levels, encoder, link),
	// present for Tandem appliances; AgeMs says how old it is.
	Telemetry *TelemetryStatus `json:"telemetry,omitempty"`
	// LastFrameAt is when the input's latest audio frame arrived.
	LastFrameAt time.Time `json:"last_frame_at,omitzero"`
	// Levels says where the input's audio levels come from and what they
	// are; HealthNote says why silence and imbalance cannot be judged.
	Levels     *LevelsStatus `json:"levels,omitempty"`
	HealthNote string        `json:"health_note,omitempty"`
}

// LevelsStatus is an input's audio levels as its health sees them.
type LevelsStatus struct {
	// Source is "telemetry" (the appliance's in-band reports) or
	// "decoder" (the switcher decodes the audio).
	Source string `json:"source"`
	// RMSDBFS and PeakDBFS are per channel, the newest block (-200: none).
	RMSDBFS  []float64 `json:"rms_dbfs,omitempty"`
	PeakDBFS []float64 `json:"peak_dbfs,omitempty"`
	// SilentSince is when the current silence began, as its levels date it.
	SilentSince time.Time `json:"silent_since,omitzero"`
	// Decoder is the decoding process's state and counters.
	Decoder *audiolevel.Stats `json:"decoder,omitempty"`
}

type TelemetryStatus struct {
	telemetry.Report
	AgeMs int64 `json:"age_ms"`
}

type OutputStatus struct {
	FramesEmitted      int64 `json:"frames_emitted"`
	FramesFromFallback int64 `json:"frames_from_fallback"`
	HolesFilled        int64 `json:"holes_filled"`
	Switches           int64 `json:"switches"`
	Listeners          int   `json:"listeners"`
	// HTTPListeners are the Icecast-style listeners among Listeners (the
	// others pull over SRT); MaxListeners is the stream's cap (0: none)
	// and ListenersRefused counts who was turned away by a cap.
	HTTPListeners    int    `json:"http_listeners"`
	MaxListeners     int    `json:"max_listeners"`
	ListenersRefused int64  `json:"listeners_refused"`
	Title            string `json:"title"`
	// Video is the output's video, when the stream has any.
	Video *VideoOutputStatus `json:"video,omitempty"`
}

// VideoOutputStatus describes the output's video track.
type VideoOutputStatus struct {
	Codec  string `json:"codec"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	// Source is the input the video comes from; empty while the output
	// has no decodable video (waiting for a keyframe).
	Source        string `json:"source,omitempty"`
	FramesEmitted int64  `json:"frames_emitted"`
	// Starts counts (re)starts of video after none was sent; Switches
	// counts changes from one input's video to the other's (always at a
	// keyframe); FramesDropped counts frames no output could use (before
	// a keyframe, superseded by the other input, or too late).
	Starts        int64 `json:"starts"`
	Switches      int64 `json:"switches"`
	FramesDropped int64 `json:"frames_dropped"`
}

func audioStatus(a media.AudioConfig) *AudioStatus {
	return &AudioStatus{Codec: a.Codec.String(), SampleRate: a.SampleRate, Channels: a.Channels}
}

// snapshot runs on the stream goroutine.
func (s *stream) snapshot() StreamStatus {
	app, name, _ := strings.Cut(s.name, "/")
	st := StreamStatus{ID: s.name, App: app, Name: name, State: "waiting", Inputs: []InputStatus{},
		PlayoutDelayMs: float64(s.srv.cfg.EffectivePlayoutDelay()) / float64(time.Millisecond),
		Events:         s.events.list()}
	now := time.Now()
	if s.merge != nil {
		st.State = "offline"
		if s.merge.Online() {
			st.State = "online"
		}
		st.Mode = s.merge.Mode().String()
		st.Active = s.merge.Active().String()
		st.Policy = s.merge.Policy().String()
		pref, pinned := s.merge.Preferred()
		st.Preferred, st.Pinned = pref.String(), pinned
		st.Audio = audioStatus(s.audio)
		c := s.merge.Counters()
		st.Output = OutputStatus{FramesEmitted: c.Emitted, FramesFromFallback: c.FromFallback, HolesFilled: c.Holes, Switches: c.Switches}
		if s.hasVideo {
			vc := s.merge.VideoCounters()
			v := &VideoOutputStatus{Codec: s.video.Codec.String(), Width: s.video.Width, Height: s.video.Height,
				FramesEmitted: vc.Emitted, Starts: vc.Starts, Switches: vc.Switches, FramesDropped: vc.Dropped}
			if src, on := s.merge.VideoSource(); on {
				v.Source = src.String()
			}
			st.Output.Video = v
		}
	}
	st.Output.Listeners = int(s.listeners.Load())
	st.Output.HTTPListeners = int(s.httpListeners.Load())
	st.Output.MaxListeners = s.srv.cfg.Streams[s.name].MaxListeners
	st.Output.ListenersRefused = s.listenersRefused.Load()
	st.Output.Title = s.meta.title()
	for _, in := range s.slots {
		if in == nil {
			continue
		}
		is := InputStatus{Role: in.role.String(), State: "connected", Protocol: in.proto, Remote: in.remote,
			Session: in.id.Session, ConnectedAt: in.connectedAt, BitrateKbps: in.rate.kbps(now)}
		if in.refused != "" {
			is.State = "refused: " + in.refused
		}
		if in.hasAudio {
			is.Audio = audioStatus(in.audio)
		}
		if s.merge != nil && in.hasAudio {
			h := s.merge.Health(now, in.role)
			is.Health, is.HealthWhy = h.State.String(), h.Reason
		}
		if s.merge != nil {
			ic := s.merge.InputCounters(in.role)
			is.Frames.Received, is.Frames.Used, is.Frames.Late = ic.Received, ic.Used, ic.Late
			if off, ok := s.merge.FrameOffset(in.role); ok {
				is.FrameOffset = &off
			}
		}
		if in.stats != nil {
			is.SRT = in.stats()
		}
		if in.telemetry != nil {
			is.Telemetry = &TelemetryStatus{Report: *in.telemetry, AgeMs: now.Sub(in.telemetryAt).Milliseconds()}
		}
		is.LastFrameAt = in.lastFrameAt
		is.Levels, is.HealthNote = levelsStatus(in), in.levelNote
		st.Inputs = append(st.Inputs, is)
	}
	return st
}

func levelsStatus(in *input) *LevelsStatus {
	var ls LevelsStatus
	switch {
	case in.telemetry != nil:
		ls.Source = "telemetry"
		for _, l := range in.telemetry.Levels {
			ls.RMSDBFS = append(ls.RMSDBFS, l.RMSDBFS)
			ls.PeakDBFS = append(ls.PeakDBFS, l.PeakDBFS)
		}
	case in.levels != nil:
		st := in.levels.Stats()
		ls.Source, ls.Decoder = "decoder", &st
		for i := range in.lastBlock.RMSDBFS {
			ls.RMSDBFS = append(ls.RMSDBFS, max(in.lastBlock.RMSDBFS[i], telemetry.Floor))
			ls.PeakDBFS = append(ls.PeakDBFS, max(in.lastBlock.PeakDBFS[i], telemetry.Floor))
		}
	default:
		return nil
	}
	if in.monitor != nil {
		if at, ok := in.monitor.SilentSince(); ok {
			ls.SilentSince = at
		}
	}
	return &ls
}

func (s *Server) handleStreams(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Streams []StreamStatus `json:"streams"`
	}{Streams: s.statuses(r.Context().Done())}
	writeJSON(w, out)
}

// statuses asks every stream for its status; cancel (may be nil) stops early.
func (s *Server) statuses(cancel <-chan struct{}) []StreamStatus {
	out := []StreamStatus{}
	for _, st := range s.streamList() {
		reply := make(chan StreamStatus, 1)
		select {
		case st.status <- reply:
			out = append(out, <-reply)
		case <-st.done:
		case <-cancel:
			return out
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// handleActive is the manual switch: {"input":"primary"|"fallback"} pins
// that input (automatic failover stays armed), {"input":"auto"} returns the
// choice to the stream's policy.
func (s *Server) handleActive(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("app") + "/" + r.PathValue("name")
	var req struct {
		Input string `json:"input"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, `body must be {"input":"primary"|"fallback"|"auto"}: `+err.Error(), http.StatusBadRequest)
		return
	}
	var pin *merge.Role
	switch req.Input {
	case "primary":
		p := merge.Primary
		pin = &p
	case "fallback":
		f := merge.Fallback
		pin = &f
	case "auto":
	default:
		http.Error(w, fmt.Sprintf("input %q: want primary, fallback or auto", req.Input), http.StatusBadRequest)
		return
	}
	st := s.lookup(name)
	if st == nil {
		http.Error(w, "no stream "+name, http.StatusNotFound)
		return
	}
	reply := make(chan error, 1)
	select {
	case st.inbox <- message{kind: msgPin, pin: pin, reply: reply}:
	case <-st.done:
		http.Error(w, "stream "+name+" ended", http.StatusNotFound)
		return
	case <-r.Context().Done():
		return
	}
	var err error
	select {
	case err = <-reply:
	case <-st.done:
		err = errors.New("stream ended")
	case <-r.Context().Done():
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	s.log.Info("manual switch", "stream", name, "input", req.Input, "from", r.RemoteAddr)
	status := make(chan StreamStatus, 1)
	select {
	case st.status <- status:
		writeJSON(w, <-status)
	case <-st.done:
		w.WriteHeader(http.StatusNoContent)
	}
}

// handleHLS serves /<app>/<name>/index.m3u8 and its segments.
func (s *Server) handleHLS(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("app") + "/" + r.PathValue("name")
	if strings.HasSuffix(name, streamid.FallbackSuffix) {
		http.Error(w, "not found: a fallback input is not a stream", http.StatusNotFound)
		return
	}
	st := s.lookup(name)
	if st == nil || st.segmenter() == nil {
		http.Error(w, "stream "+name+" is not on air", http.StatusNotFound)
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	st.segmenter().ServeHTTP(w, r)
}
