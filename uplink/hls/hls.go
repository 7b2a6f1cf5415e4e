// Package hls serves a stream's continuous output as HTTP Live Streaming
// (RFC 8216): a sliding-window media playlist of MPEG-TS segments, kept in
// memory and served by the Segmenter itself.
//
// Segmentation. A segment begins with the first frame after the previous
// one was cut. An audio frame is cut from the segment (and starts the next
// one) when it would make the segment last longer than the target: every
// segment then lasts at most TargetDuration and, while the timeline is
// continuous, more than TargetDuration minus one frame (1.984 s for a 2 s
// target at 48 kHz). So the playlist's EXT-X-TARGETDURATION is the ceiling
// of the target and never changes, as RFC 8216 requires. A segment is
// published when it is complete: a player never sees a growing segment.
//
// Durations come from timestamps, exactly: a segment lasts from its first
// frame's PTS to the PTS of the frame after its last one (the next
// segment's first), or, where there is no next frame on the same timeline
// (Discontinuity, Close), to the end of its last frame by the sample
// counter (media.AudioConfig.FramePTS).
//
// Video. With Config.Video set, H.264 frames go into the segments too and
// segments are cut at keyframes: at a keyframe when the next keyframe (one
// GOP later, as measured between the last two) would end the segment past
// the target, or when the segment already lasts the target. A segment then
// starts with a keyframe carrying SPS/PPS (the switcher's merge puts them
// in every keyframe) and lasts at most the target while the GOP is no
// longer than it. Where the keyframe due at the target is missing (a video
// gap at a splice) the first audio frame from the target on cuts, so such a
// segment lasts at most one audio frame more than the target (rounded, as
// EXT-X-TARGETDURATION counts, still the target); the next segment starts
// with audio and is cut again at the first keyframe, so that video
// segments start with one. Audio and video of one
// instant stay in one segment: the writer hands frames in timestamp order,
// and the audio gathered for a PES is written before each video frame.
//
// Segments. Each segment is a standalone transport stream from
// mpegts.Muxer: PAT and PMT first (only there: HLS players read them at the
// start of every segment, so repeating them every 100 ms would cost 30 kb/s
// for nothing), PCR on the audio PID. Several consecutive AAC frames
// share one PES (up to pesPayload bytes, ffmpeg's default of 2930): a
// segment is only published whole, so there is no latency to save by
// sending frames one by one, while one PES per frame costs a PES header, a
// PCR and a part-filled TS packet per frame. Measured on a 128 kb/s
// ffmpeg AAC tone: 11 % over the raw AAC bytes (ADTS headers included)
// against 39 % with one frame per PES. A PES never spans two segments,
// nor a hole in the timeline. Continuity counters restart in every
// segment (each segment has its own Muxer); timestamps are the stream's
// own, never reset.
package hls

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"tandem/uplink/media"
	"tandem/uplink/mpegts"
)

// Defaults of Config.
const (
	DefaultTargetDuration = 2 * time.Second
	DefaultWindow         = 6
)

const (
	audioPID = 0x100
	videoPID = 0x101
	// pesPayload bounds the AAC bytes gathered in one PES.
	pesPayload = 2930
	// retained is how many segments beyond the playlist window stay
	// available, for players that read an older playlist.
	retained = 2
)

// Config configures a Segmenter.
type Config struct {
	// TargetDuration is the longest a segment lasts (default 2 s); audio
	// segments are cut at the first frame that would end past it.
	TargetDuration time.Duration
	// Window is the number of segments in the playlist (default 6).
	// Window+2 segments are kept, so that a player that loaded an older
	// playlist still finds the segments it lists.
	Window int
	// Audio is the stream's audio configuration (AAC): it fills the ADTS
	// headers and gives the frame duration.
	Audio media.AudioConfig
	// Video, when its Codec is H.264, adds a video track: segments carry
	// the stream's video and start at keyframes. Otherwise video frames
	// are ignored.
	Video media.VideoConfig
}

type segment struct {
	seq      uint64
	data     []byte
	duration int64 // 90 kHz ticks
	disc     bool  // preceded by EXT-X-DISCONTINUITY
	discSeq  uint64
}

// Segmenter cuts a stream's frames into HLS segments and serves them with
// their playlist. WriteFrame, Discontinuity and Close are for one writer;
// ServeHTTP may be called from any number of goroutines at once.
type Segmenter struct {
	cfg    Config
	target int64 // ticks

	mu       sync.Mutex
	segs     []*segment // completed, oldest first, at most Window+retained
	playlist []byte     // rendered on every change
	nextSeq  uint64
	discSeq  uint64 // discontinuities so far, i.e. the last segment's number
	anyDisc  bool
	maxDur   int64
	closed   bool
	writeErr error // the first muxer error, reported in 404s and the playlist comment

	// The segment being built, owned by the writer (under mu as well, so
	// that a Close racing a write is safe).
	cur      *bytes.Buffer
	mux      *mpegts.Muxer
	curFirst int64
	curLast  int64
	curDisc  bool
	frames   int
	pend     []media.Frame // frames of the next PES
	pendSize int
	needDisc bool
	// audioLast is the segment's last audio PTS (audioIn: it has audio);
	// curVideo: it has video. lastKey is the last keyframe's PTS and gop
	// the interval between the last two keyframes (0 until known).
	audioLast int64
	audioIn   bool
	curVideo  bool
	lastKey   int64
	hasKey    bool
	gop       int64
}

// New returns a Segmenter with cfg's zero fields set to their defaults.
func New(cfg Config) *Segmenter {
	if cfg.TargetDuration <= 0 {
		cfg.TargetDuration = DefaultTargetDuration
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	s := &Segmenter{
		cfg:    cfg,
		target: int64(cfg.TargetDuration) * media.ClockRate / int64(time.Second),
	}
	s.render()
	return s
}

// frameEnd is the timestamp at which the frame starting at pts ends.
func (s *Segmenter) frameEnd(pts int64) int64 {
	a := s.cfg.Audio
	if a.SampleRate <= 0 {
		return pts
	}
	if end := a.FramePTS(a.FrameIndex(pts) + 1); end > pts {
		return end
	}
	return pts + a.FrameDuration()
}

// WriteFrame adds one frame. Frames must follow each other on the
// stream's output timeline, in timestamp order; an audio timestamp that
// does not increase, or jumps by more than the target duration, is taken
// as a timeline break and treated as if Discontinuity had been called
// before the frame. Video frames of a Segmenter without video, and frames
// written after Close, are ignored; a frame of no kind is taken as audio.
func (s *Segmenter) WriteFrame(f media.Frame) {
	if f.Kind == media.KindVideo {
		s.writeVideo(f)
		return
	}
	if f.Kind != media.KindAudio && f.Kind != 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.cur != nil && s.audioIn && (f.PTS <= s.audioLast || f.PTS-s.audioLast > s.target) {
		s.finish(s.frameEnd(s.curLast))
		s.needDisc = true
	}
	// Audio-only segments end before the target; with video the keyframe
	// due at the target comes after the audio frame that spans it, so
	// audio cuts only from the target on.
	if s.cur != nil && (!s.withVideo() && s.frameEnd(f.PTS)-s.curFirst > s.target || s.withVideo() && f.PTS-s.curFirst >= s.target) {
		s.finish(f.PTS)
	}
	if s.cur == nil {
		s.start(f.PTS)
	} else if s.audioIn && f.PTS != s.frameEnd(s.audioLast) {
		s.flushPES() // a hole: frames of one PES must be consecutive
	}
	s.audioLast, s.audioIn = f.PTS, true
	s.curLast = max(s.curLast, f.PTS)
	s.frames++
	if s.pendSize+len(f.Data) > pesPayload {
		s.flushPES()
	}
	s.pend = append(s.pend, f)
	s.pendSize += len(f.Data)
}

func (s *Segmenter) withVideo() bool { return s.cfg.Video.Codec == media.CodecH264 }

// SetVideo adds (or updates) the video track, for a stream whose video
// became known after its output started. Before the first segment is
// published the segment being built is dropped and started again with
// both tracks; after, the next segment starts with video behind an
// EXT-X-DISCONTINUITY (its tracks change).
func (s *Segmenter) SetVideo(v media.VideoConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	had := s.withVideo()
	s.cfg.Video = v
	if had || !s.withVideo() || s.closed || s.cur == nil {
		return
	}
	if s.nextSeq == 0 {
		clear(s.pend)
		s.pend, s.pendSize = s.pend[:0], 0
		s.cur, s.mux = nil, nil
		return
	}
	s.finish(s.frameEnd(s.curLast))
	s.needDisc = true
}

// writeVideo adds one H.264 access unit, cutting the segment before it if
// it is the keyframe to cut at.
func (s *Segmenter) writeVideo(f media.Frame) {
	if !s.withVideo() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if f.Key {
		if s.hasKey && f.PTS > s.lastKey {
			s.gop = f.PTS - s.lastKey
		}
		s.lastKey, s.hasKey = f.PTS, true
		if s.cur != nil && f.PTS > s.curFirst {
			d := f.PTS - s.curFirst
			// A segment with audio but no video yet ends at the first
			// keyframe, so that video segments start with one.
			if d >= s.target || d+s.gop > s.target || !s.curVideo {
				s.finish(f.PTS)
			}
		}
	}
	if s.cur == nil {
		s.start(f.PTS)
	}
	s.flushPES() // audio before this frame goes first
	if err := s.mux.WriteFrame(videoPID, f); err != nil && s.writeErr == nil {
		s.writeErr = err
	}
	s.curVideo = true
	s.curLast = max(s.curLast, f.PTS)
	s.frames++
}

// Discontinuity marks a timeline break: the segment being built is
// published as it is, and the next one starts with EXT-X-DISCONTINUITY.
func (s *Segmenter) Discontinuity() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.cur != nil {
		s.finish(s.frameEnd(s.curLast))
	}
	s.needDisc = true
}

// Close publishes the segment being built and ends the playlist with
// EXT-X-ENDLIST. The segments stay available.
func (s *Segmenter) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.cur != nil {
		s.finish(s.frameEnd(s.curLast))
	}
	s.closed = true
	s.render()
}

func (s *Segmenter) start(pts int64) {
	s.cur = new(bytes.Buffer)
	cur := s.cur
	tracks := []mpegts.Track{{PID: audioPID, Kind: media.KindAudio, Audio: s.cfg.Audio}}
	if s.withVideo() {
		tracks = append(tracks, mpegts.Track{PID: videoPID, Kind: media.KindVideo, Video: s.cfg.Video})
	}
	s.mux = mpegts.NewMuxer(tracks, func(b []byte) error { cur.Write(b); return nil })
	// PAT/PMT once, at the start of the segment.
	s.mux.PSIInterval = math.MaxInt64 / 2
	s.curFirst, s.curLast = pts, pts
	s.curDisc = s.needDisc
	s.needDisc = false
	s.frames = 0
	s.audioIn, s.curVideo = false, false
}

func (s *Segmenter) flushPES() {
	if len(s.pend) == 0 {
		return
	}
	if err := s.mux.WriteFrames(audioPID, s.pend); err != nil && s.writeErr == nil {
		s.writeErr = err
	}
	clear(s.pend)
	s.pend = s.pend[:0]
	s.pendSize = 0
}

// finish publishes the segment being built, which ends at end.
func (s *Segmenter) finish(end int64) {
	s.flushPES()
	seg := &segment{
		seq:      s.nextSeq,
		data:     s.cur.Bytes(),
		duration: end - s.curFirst,
		disc:     s.curDisc,
	}
	s.cur, s.mux = nil, nil
	if seg.disc {
		s.discSeq++
		s.anyDisc = true
	}
	seg.discSeq = s.discSeq
	s.nextSeq++
	s.maxDur = max(s.maxDur, seg.duration)
	s.segs = append(s.segs, seg)
	if n := len(s.segs) - (s.cfg.Window + retained); n > 0 {
		clear(s.segs[:n])
		s.segs = s.segs[n:]
	}
	s.render()
}

// targetSeconds is EXT-X-TARGETDURATION: the ceiling of the target, or
// more if a segment rounded to the nearest second (RFC 8216 4.3.3.1) is
// longer, so that it does not change as segments come.
func (s *Segmenter) targetSeconds() int64 {
	return max((s.target+media.ClockRate-1)/media.ClockRate, (s.maxDur+media.ClockRate/2)/media.ClockRate)
}

// window returns the segments the playlist lists.
func (s *Segmenter) window() []*segment {
	if n := len(s.segs) - s.cfg.Window; n > 0 {
		return s.segs[n:]
	}
	return s.segs
}

func (s *Segmenter) render() {
	var b bytes.Buffer
	win := s.window()
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n")
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", s.targetSeconds())
	var first uint64
	if len(win) > 0 {
		first = win[0].seq
	} else {
		first = s.nextSeq
	}
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", first)
	if s.anyDisc && len(win) > 0 {
		// The first listed segment's discontinuity number, less its own
		// tag, which is counted again below it.
		d := win[0].discSeq
		if win[0].disc {
			d--
		}
		fmt.Fprintf(&b, "#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", d)
	}
	for _, seg := range win {
		if seg.disc {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		ms := (seg.duration*1000 + media.ClockRate/2) / media.ClockRate
		fmt.Fprintf(&b, "#EXTINF:%d.%03d,\nseg-%d.ts\n", ms/1000, ms%1000, seg.seq)
	}
	if s.closed {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	s.playlist = b.Bytes()
}

// ServeHTTP answers "index.m3u8" and "seg-<n>.ts", taken as the last
// element of the request path, so the Segmenter works with or without
// http.StripPrefix. Before the first segment is complete the playlist
// answers 503 with Retry-After; a segment that is not (or no longer)
// available answers 404.
func (s *Segmenter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "hls: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	name := p[strings.LastIndexByte(p, '/')+1:]
	switch {
	case name == "index.m3u8":
		s.servePlaylist(w, r)
	case strings.HasPrefix(name, "seg-") && strings.HasSuffix(name, ".ts"):
		n, err := strconv.ParseUint(name[len("seg-"):len(name)-len(".ts")], 10, 64)
		if err != nil {
			http.Error(w, fmt.Sprintf("hls: %q is not a segment name (seg-<number>.ts)", name), http.StatusNotFound)
			return
		}
		s.serveSegment(w, r, n)
	default:
		http.Error(w, fmt.Sprintf("hls: no such resource %q: this stream serves index.m3u8 and seg-<n>.ts", name), http.StatusNotFound)
	}
}

func (s *Segmenter) servePlaylist(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	pl, ready, werr, closed := s.playlist, len(s.segs) > 0, s.writeErr, s.closed
	target := s.targetSeconds()
	s.mu.Unlock()
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	if !ready && closed {
		http.Error(w, "hls: the stream ended before its first segment was complete", http.StatusNotFound)
		return
	}
	if !ready {
		h.Set("Retry-After", strconv.FormatInt(target, 10))
		msg := "hls: no segment is complete yet, retry shortly"
		if werr != nil {
			msg = "hls: segmenting failed: " + werr.Error()
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	h.Set("Content-Type", "application/vnd.apple.mpegurl")
	h.Set("Content-Length", strconv.Itoa(len(pl)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(pl)
}

func (s *Segmenter) serveSegment(w http.ResponseWriter, r *http.Request, n uint64) {
	s.mu.Lock()
	var seg *segment
	if len(s.segs) > 0 && n >= s.segs[0].seq {
		if i := n - s.segs[0].seq; i < uint64(len(s.segs)) {
			seg = s.segs[i]
		}
	}
	var oldest, next uint64
	if len(s.segs) > 0 {
		oldest = s.segs[0].seq
	}
	next = s.nextSeq
	keep := time.Duration(s.cfg.Window+retained) * s.cfg.TargetDuration
	s.mu.Unlock()
	if seg == nil {
		var msg string
		switch {
		case n >= next:
			msg = fmt.Sprintf("hls: segment %d does not exist yet (next is %d)", n, next)
		default:
			msg = fmt.Sprintf("hls: segment %d has expired (segments %d to %d are available)", n, oldest, next-1)
		}
		http.Error(w, msg, http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "video/mp2t")
	h.Set("Cache-Control", fmt.Sprintf("max-age=%d", int64(keep/time.Second)))
	h.Set("Content-Length", strconv.Itoa(len(seg.data)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(seg.data) // immutable once published: written outside the lock
}
