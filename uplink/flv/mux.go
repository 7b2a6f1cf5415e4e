package flv

import (
	"errors"
	"fmt"

	"tandem/uplink/adts"
	"tandem/uplink/h264"
	"tandem/uplink/media"
	"tandem/uplink/rtmp/amf0"
)

// Tag is one FLV tag: its type (TagAudio, TagVideo, TagScript), its
// timestamp in milliseconds (32 bits, wrapping) and its body.
type Tag struct {
	Type      uint8
	Timestamp uint32
	Body      []byte
}

// MuxStats counts what a Muxer did.
type MuxStats struct {
	AudioFrames int64
	VideoFrames int64
	// WaitingForKey counts video frames dropped before the first
	// keyframe (nothing could decode them).
	WaitingForKey int64
	// Clamped counts frames whose DTS was before the first frame's and
	// were sent at timestamp 0.
	Clamped int64
}

// Muxer turns media configs and frames into FLV tags (for RTMP messages or
// an FLV file): sequence headers before the first frame of each track
// (and again after a config change), then legacy AAC and AVC tags.
//
// Timestamps are milliseconds relative to the first frame written:
// ms = ⌊(DTS − DTS₀) / 90⌋, and the composition time is
// ⌊(PTS − DTS₀) / 90⌋ − ms, so a frame's PTS in ms is rounded the same way
// as its DTS. Frames that arrive with a DTS before the first frame's are
// sent at 0.
//
// Video frames before the first keyframe are dropped. Without a video
// config, the first keyframe's in-band SPS and PPS give it; a keyframe
// whose in-band SPS or PPS differs from the current config replaces it
// (and a new sequence header is sent). For HE-AAC (object type 5 or 29)
// the AudioSpecificConfig is written as AAC-LC at the core rate (implicit
// SBR/PS signalling), which every HE-AAC decoder handles.
type Muxer struct {
	audio, video *Tag // pending or sent sequence headers
	sentA, sentV bool
	videoCfg     *media.VideoConfig
	audioCfg     *media.AudioConfig
	keySeen      bool
	started      bool
	base         int64
	stats        MuxStats
}

// NewMuxer returns a Muxer for the given tracks; either may be nil (a
// video config can come from the first keyframe).
func NewMuxer(audio *media.AudioConfig, video *media.VideoConfig) (*Muxer, error) {
	m := &Muxer{}
	if audio != nil {
		if err := m.SetAudioConfig(*audio); err != nil {
			return nil, err
		}
	}
	if video != nil {
		if err := m.SetVideoConfig(*video); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Stats returns the counters so far.
func (m *Muxer) Stats() MuxStats { return m.stats }

// SetAudioConfig sets the audio configuration; its sequence header goes
// out before the next audio frame.
func (m *Muxer) SetAudioConfig(cfg media.AudioConfig) error {
	if cfg.Codec != media.CodecAAC {
		return fmt.Errorf("%w: audio codec %s; only AAC can be sent", ErrUnsupported, cfg.Codec)
	}
	if _, ok := adts.SampleRateIndex(cfg.SampleRate); !ok && (cfg.SampleRate <= 0 || cfg.SampleRate >= 1<<24) {
		return fmt.Errorf("%w: AAC sample rate %d Hz", ErrInvalid, cfg.SampleRate)
	}
	if _, ok := adts.ChannelConfig(cfg.Channels); !ok {
		return fmt.Errorf("%w: AAC with %d channels has no channel configuration", ErrUnsupported, cfg.Channels)
	}
	asc := cfg
	if asc.ObjectType == 5 || asc.ObjectType == 29 {
		asc.ObjectType = 2
	}
	m.audio = &Tag{Type: TagAudio, Body: AppendAACTag(nil, AACSequenceHeader, adts.AppendASC(nil, asc))}
	m.audioCfg = &cfg
	m.sentA = false
	return nil
}

// SetVideoConfig sets the video configuration; its sequence header goes
// out before the next video frame.
func (m *Muxer) SetVideoConfig(cfg media.VideoConfig) error {
	if cfg.Codec != media.CodecH264 {
		return fmt.Errorf("%w: video codec %s; only H.264 can be sent", ErrUnsupported, cfg.Codec)
	}
	rec, err := h264.AppendAVCDecoderConfig(nil, cfg)
	if err != nil {
		return fmt.Errorf("AVC sequence header: %w", err)
	}
	m.video = &Tag{Type: TagVideo, Body: AppendAVCTag(nil, FrameKey, PacketSequenceStart, 0, rec)}
	m.videoCfg = &cfg
	m.sentV = false
	return nil
}

// Metadata returns the onMetaData values for a script tag (or, after
// "@setDataFrame", an RTMP data message): the name and an ECMA array
// describing the configured tracks.
func (m *Muxer) Metadata() []any {
	props := amf0.ECMAArray{{Key: "duration", Value: 0.0}}
	if v := m.videoCfg; v != nil {
		props = append(props,
			amf0.Property{Key: "width", Value: float64(v.Width)},
			amf0.Property{Key: "height", Value: float64(v.Height)},
			amf0.Property{Key: "videocodecid", Value: float64(CodecIDAVC)})
	}
	if a := m.audioCfg; a != nil {
		props = append(props,
			amf0.Property{Key: "audiocodecid", Value: float64(SoundFormatAAC)},
			amf0.Property{Key: "audiosamplerate", Value: float64(a.SampleRate)},
			amf0.Property{Key: "audiosamplesize", Value: 16.0},
			amf0.Property{Key: "stereo", Value: a.Channels == 2},
			amf0.Property{Key: "audiochannels", Value: float64(a.Channels)})
	}
	props = append(props, amf0.Property{Key: "encoder", Value: "Tandem"})
	return []any{"onMetaData", props}
}

// HasAudio and HasVideo report whether a track is configured.
func (m *Muxer) HasAudio() bool { return m.audioCfg != nil }

// HasVideo reports whether a video config is known.
func (m *Muxer) HasVideo() bool { return m.videoCfg != nil }

// ErrNoAudioConfig is returned for an audio frame when no audio config
// was given: an AAC sequence header cannot be made from a raw frame.
var ErrNoAudioConfig = errors.New("flv: audio frame without an audio config")

// WriteFrame emits the tags for f through emit: the track's sequence
// header first when it has not been sent, then the frame. Frames that
// cannot be sent yet (video before the first keyframe) are dropped and
// counted, with no error.
func (m *Muxer) WriteFrame(f media.Frame, emit func(Tag) error) error {
	switch f.Kind {
	case media.KindAudio:
		if m.audio == nil {
			return ErrNoAudioConfig
		}
	case media.KindVideo:
		if f.Key {
			if err := m.checkInBand(f.Data); err != nil {
				return err
			}
			m.keySeen = true
		}
		if !m.keySeen || m.video == nil {
			m.stats.WaitingForKey++
			return nil
		}
	default:
		return fmt.Errorf("%w: frame kind %s", ErrUnsupported, f.Kind)
	}
	if !m.started {
		m.started, m.base = true, f.DTS
	}
	ms := floorDiv(f.DTS-m.base, 90)
	cts := floorDiv(f.PTS-m.base, 90) - ms
	if ms < 0 {
		ms = 0
		m.stats.Clamped++
	}
	ts := uint32(ms)
	if f.Kind == media.KindAudio {
		if !m.sentA {
			if err := emit(Tag{Type: TagAudio, Timestamp: ts, Body: m.audio.Body}); err != nil {
				return err
			}
			m.sentA = true
		}
		m.stats.AudioFrames++
		return emit(Tag{Type: TagAudio, Timestamp: ts, Body: AppendAACTag(make([]byte, 0, 2+len(f.Data)), AACRaw, f.Data)})
	}
	if !fits24(cts) {
		return fmt.Errorf("%w: composition time %d ms does not fit 24 bits", ErrInvalid, cts)
	}
	if !m.sentV {
		if err := emit(Tag{Type: TagVideo, Timestamp: ts, Body: m.video.Body}); err != nil {
			return err
		}
		m.sentV = true
	}
	ft := uint8(FrameInter)
	if f.Key {
		ft = FrameKey
	}
	body := make([]byte, 0, 5+len(f.Data)+8)
	body = AppendAVCTag(body, ft, PacketCodedFrames, int32(cts), nil)
	body = h264.AnnexBToAVCC(body, f.Data)
	m.stats.VideoFrames++
	return emit(Tag{Type: TagVideo, Timestamp: ts, Body: body})
}

// checkInBand takes the video config from a keyframe's in-band SPS/PPS
// when there is none yet or when they differ from the current one.
func (m *Muxer) checkInBand(au []byte) error {
	cfg, ok, err := h264.ConfigFromAU(au)
	if err != nil || !ok {
		if m.videoCfg == nil && err != nil {
			return fmt.Errorf("keyframe SPS: %w", err)
		}
		return nil
	}
	if m.videoCfg != nil && string(cfg.SPS) == string(m.videoCfg.SPS) && string(cfg.PPS) == string(m.videoCfg.PPS) {
		return nil
	}
	return m.SetVideoConfig(cfg)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
