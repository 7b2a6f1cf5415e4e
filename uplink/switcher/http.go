package switcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

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
// does: an HTTP/1.0 response without a length, audio until the stream ends.
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
	rd := fan.NewReader(s.cfg.ListenerBurst)
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "listener connections need HTTP/1", http.StatusHTTPVersionNotSupported)
		return
	}
	conn, bw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	hdr := "HTTP/1.0 200 OK\r\n" +
		"Content-Type: audio/aac\r\n" +
		"icy-name: " + app + "/" + name + "\r\n" +
		"icy-pub: 0\r\n" +
		"Cache-Control: no-cache, no-store\r\n" +
		"Pragma: no-cache\r\n" +
		"Access-Control-Allow-Origin: *\r\n" +
		"Server: tandem-switcher\r\n" +
		"Connection: close\r\n\r\n"
	if _, err := bw.WriteString(hdr); err != nil {
		return
	}
	if err := bw.Flush(); err != nil {
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	log := st.log.With("listener", conn.RemoteAddr().String())
	log.Info("listener connected")
	st.listeners.Add(1)
	defer st.listeners.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A client that closes its side is noticed by a read returning.
	go func() {
		var b [1]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				cancel()
				return
			}
		}
	}()
	var batch []Packet
	var bufs net.Buffers
	for {
		batch, err = rd.Read(ctx, batch[:0])
		if len(batch) > 0 {
			bufs = bufs[:0]
			for _, p := range batch {
				bufs = append(bufs, p.ADTS)
			}
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			b := bufs
			if _, werr := b.WriteTo(conn); werr != nil {
				log.Info("listener gone", "reason", werr.Error())
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
	}
	st.Output.Listeners = int(s.listeners.Load())
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
