package merge

import (
	"fmt"
	"time"

	"tandem/uplink/h264"
	"tandem/uplink/media"
)

// Video. The output timeline is the audio's: an input's video frames are
// moved by the same offset as its audio (vOffset, fixed when its audio is
// mapped), so lip sync survives every switch. A video frame is decided
// when the first output audio frame after its DTS is due: by then it has
// had the same hold to arrive as the audio of that instant.
//
// The output video follows one source at a time and changes source only
// at a keyframe of the new source, so a decoder never receives P-frames
// of one encoder after an IDR of another:
//   - the source it wants is the active input (the audio decision); in
//     aligned mode also the other input while the current source has
//     nothing for an instant the other has delivered (a video stall);
//   - it switches at the wanted source's first keyframe past the last
//     emitted frame: the old source runs up to that keyframe's DTS, the
//     new one from it (frame-exact when the GOPs are aligned);
//   - until that keyframe, the old source's video continues if it flows;
//     otherwise the output has a video gap (audio goes on).
//
// Every keyframe is emitted with its source's SPS and PPS in band (added
// when the access unit lacks them), so a decoder keeps going across a
// switch and a player joining at any keyframe (an HLS segment, an SRT
// puller) can start there.

// maxVideoQueue bounds the frames an input may have waiting (about 10 s at
// 25 frames per second); the oldest go first.
const maxVideoQueue = 256

// videoOut is the output's video state.
type videoOut struct {
	source  Role
	on      bool  // the output carries source's video from one of its keyframes on
	lastDTS int64 // output DTS of the last video frame emitted
	started bool  // lastDTS is set
}

// VideoCounters are the output's video totals.
type VideoCounters struct {
	Emitted  int64 // video frames emitted
	Starts   int64 // video (re)starts at a keyframe after none was sent
	Switches int64 // changes from one input's video to the other's (at keyframes)
	Dropped  int64 // frames no output could use (before a keyframe, superseded, too late)
}

// SetVideo records input r's video configuration; its SPS and PPS are
// sent in band with its keyframes. The caller checks that the inputs'
// configurations match.
func (m *Merge) SetVideo(r Role, cfg media.VideoConfig) {
	m.in[r].videoCfg = cfg
}

// VideoCounters returns the output's video totals.
func (m *Merge) VideoCounters() VideoCounters { return m.videoCounters }

// VideoSource is the input the output video comes from, and false while
// the output has no decodable video.
func (m *Merge) VideoSource() (Role, bool) { return m.video.source, m.video.on }

// pushVideo queues one video frame of input r. Its timestamps are
// unwrapped against the input's audio.
func (m *Merge) pushVideo(now time.Time, r Role, f media.Frame) {
	in := &m.in[r]
	in.counters.VideoReceived++
	if !in.present {
		m.Connect(now, r, "")
	}
	pts := f.PTS
	if in.hasRef {
		pts = unwrap(pts, in.refPTS)
	}
	dts := unwrap(f.DTS, pts)
	if dts > pts {
		// PTS ≥ DTS always; a muxer that wrote them the other way round
		// meant no reordering.
		dts = pts
	}
	f.PTS, f.DTS = pts, dts
	if in.vHasLast && dts > in.vLastDTS && dts-in.vLastDTS < media.ClockRate {
		in.vInterval = dts - in.vLastDTS
	}
	in.vLastDTS, in.vHasLast = dts, true
	if len(in.video) >= maxVideoQueue {
		in.video = in.video[1:]
		m.videoCounters.Dropped++
	}
	in.video = append(in.video, f)
}

// outDTS is the output DTS of input r's queued frame i.
func (m *Merge) outDTS(r Role, i int) int64 {
	in := &m.in[r]
	return in.video[i].DTS + in.vOffset + in.vDelay
}

// releaseVideo emits the video frames whose output DTS is before h (the
// audio emitted so far), switching source where the rules above allow.
func (m *Merge) releaseVideo(now time.Time, h int64) {
	v := &m.video
	target := m.videoTarget(h)
	if !v.on || v.source != target {
		if k, ok := m.keyframe(target, h); ok {
			in := &m.in[target]
			in.vDelay = 0
			dk := m.outDTS(target, k)
			if v.on {
				m.emitVideo(v.source, dk) // the old source up to the switch
				if v.source != target {
					m.in[v.source].vDelay = 0
				}
			}
			// Spliced encoders' frames fall at different instants: a
			// keyframe less than a frame after the last frame sent would
			// make players see two frames at once, so the new source's
			// video is held back by that fraction of a frame (lip sync
			// stays within one frame). Aligned feeds share instants.
			if v.started && in.vInterval > 0 && dk-v.lastDTS < in.vInterval {
				in.vDelay = v.lastDTS + in.vInterval - dk
				dk += in.vDelay
			}
			m.dropVideo(target, k)
			from, was := v.source, v.on
			v.source, v.on = target, true
			reason := fmt.Sprintf("%s video from its keyframe at %d", target, dk)
			if !was {
				m.videoCounters.Starts++
			}
			if was && from != target {
				m.videoCounters.Switches++
				reason = fmt.Sprintf("%s video replaces %s's at %s's keyframe at %d", target, from, target, dk)
			}
			m.emitEvent(Event{Time: now, Kind: EventVideo, From: from, To: target, Reason: reason})
		}
	}
	if v.on {
		m.emitVideo(v.source, h)
	}
	for r := range m.in {
		m.pruneVideo(Role(r), h)
	}
}

// videoTarget is the input the output video should come from.
func (m *Merge) videoTarget(h int64) Role {
	v := &m.video
	t := m.active
	if m.mode != ModeAligned {
		return t
	}
	o := t.Other()
	if v.on && v.source == t && !m.hasVideo(t, h) && m.hasVideo(o, h) {
		return o // the source stalled where the other delivered
	}
	if !v.on {
		if _, ok := m.keyframe(t, h); !ok {
			if _, ok := m.keyframe(o, h); ok {
				return o
			}
		}
	}
	return t
}

// hasVideo says whether input r has a frame after the last emitted one and before h.
func (m *Merge) hasVideo(r Role, h int64) bool {
	in := &m.in[r]
	if !in.mapped {
		return false
	}
	for i := range in.video {
		d := m.outDTS(r, i)
		if d >= h {
			return false
		}
		if !m.video.started || d > m.video.lastDTS {
			return true
		}
	}
	return false
}

// keyframe finds input r's first keyframe after the last emitted frame and before h.
func (m *Merge) keyframe(r Role, h int64) (int, bool) {
	in := &m.in[r]
	if !in.mapped {
		return 0, false
	}
	for i := range in.video {
		d := m.outDTS(r, i)
		if d >= h {
			break
		}
		if in.video[i].Key && (!m.video.started || d > m.video.lastDTS) {
			return i, true
		}
	}
	return 0, false
}

// emitVideo emits input r's queued frames with output DTS before limit.
func (m *Merge) emitVideo(r Role, limit int64) {
	in := &m.in[r]
	v := &m.video
	for len(in.video) > 0 && m.outDTS(r, 0) < limit {
		f := in.video[0]
		in.video[0] = media.Frame{}
		in.video = in.video[1:]
		f.PTS += in.vOffset + in.vDelay
		f.DTS += in.vOffset + in.vDelay
		if v.started && f.DTS <= v.lastDTS {
			m.videoCounters.Dropped++
			continue
		}
		if f.Key && len(in.videoCfg.SPS) > 0 && len(in.videoCfg.PPS) > 0 && !h264.HasParameterSets(f.Data) {
			f.Data = h264.WithParameterSets(f.Data, in.videoCfg.SPS, in.videoCfg.PPS)
		}
		v.lastDTS, v.started = f.DTS, true
		m.videoCounters.Emitted++
		in.counters.VideoUsed++
		m.out = append(m.out, Output{Frame: f, Source: r})
	}
}

// dropVideo discards input r's first n queued frames.
func (m *Merge) dropVideo(r Role, n int) {
	in := &m.in[r]
	m.videoCounters.Dropped += int64(n)
	clear(in.video[:n])
	in.video = in.video[n:]
}

// pruneVideo discards input r's frames before h that can never be
// emitted. The source's frames before h were emitted or come after a later
// one. Another input's frames are kept from its first keyframe after the
// last frame sent: when a source stalls, the audio switches only after the
// stall threshold, and the other input's keyframe that came just after
// the stall must still be there to switch at (its frames then go out at
// once, late against the audio, but in DTS order). Before that keyframe
// nothing of it can be used.
func (m *Merge) pruneVideo(r Role, h int64) {
	in := &m.in[r]
	if !in.mapped {
		return
	}
	v := &m.video
	keep := !v.on || v.source != r
	n := 0
	for n < len(in.video) && m.outDTS(r, n) < h {
		if keep && in.video[n].Key && (!v.started || m.outDTS(r, n) > v.lastDTS) {
			break
		}
		n++
	}
	if n > 0 {
		m.dropVideo(r, n)
	}
}

// resetVideo forgets input r's queued video; if the output follows it,
// the output needs a new keyframe (its encoder may have restarted).
func (m *Merge) resetVideo(r Role) {
	in := &m.in[r]
	clear(in.video)
	in.video = in.video[:0]
	in.vDelay, in.vHasLast = 0, false
	if m.video.source == r {
		m.video.on = false
	}
}
