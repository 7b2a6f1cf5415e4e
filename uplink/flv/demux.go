package flv

import (
	"errors"
	"fmt"

	"tandem/uplink/adts"
	"tandem/uplink/h264"
	"tandem/uplink/media"
)

// ErrNoConfig is returned (wrapped) for a frame that arrives before the
// sequence header of its track. The frame is dropped; the stream may go on.
var ErrNoConfig = errors.New("flv: frame before its sequence header")

// Handler receives what a Demuxer finds, on the caller's goroutine.
type Handler interface {
	// OnAudioConfig is called for the first AAC sequence header and for
	// every one that changes the configuration.
	OnAudioConfig(media.AudioConfig)
	// OnVideoConfig is called for the first AVC sequence header and for
	// every one that changes the SPS or PPS.
	OnVideoConfig(media.VideoConfig)
	// OnFrame receives AAC raw access units and H.264 Annex-B access
	// units. The frame belongs to the receiver.
	OnFrame(media.Frame)
}

// Unwrapper extends 32-bit millisecond timestamps to 64 bits. Each value
// is taken as the nearest to the previous one modulo 2^32, so the
// timeline continues across the wrap (every 49.7 days) and small steps
// backwards (audio and video interleaved) stay small.
type Unwrapper struct {
	last    uint32
	ext     int64
	started bool
}

// Unwrap returns the extended value of ts.
func (u *Unwrapper) Unwrap(ts uint32) int64 {
	if !u.started {
		u.started, u.last, u.ext = true, ts, int64(ts)
		return u.ext
	}
	u.ext += int64(int32(ts - u.last))
	u.last = ts
	return u.ext
}

// DemuxStats counts what a Demuxer did.
type DemuxStats struct {
	AudioFrames int64
	VideoFrames int64
	// Dropped counts frames dropped: before their sequence header, or
	// empty.
	Dropped int64
	// KeyMismatch counts video frames whose FLV frame type (key or not)
	// disagrees with the presence of an IDR slice. Frame.Key follows the
	// IDR slice.
	KeyMismatch int64
	// ParamSetsAdded counts keyframes the SPS and PPS were inserted into.
	ParamSetsAdded int64
	// AnnexB counts video frames that held Annex-B instead of
	// length-prefixed NAL units (accepted).
	AnnexB int64
}

// Demuxer turns FLV audio and video tag bodies (from RTMP messages or an
// FLV file) into media configs and frames. Timestamps are the tags'
// 32-bit milliseconds, unwrapped on one timeline for both tracks; the
// frames' DTS is ms × 90 and PTS is (ms + composition time) × 90, exact.
//
// H.264 access units are converted to Annex-B with 4-byte start codes.
// Keyframes (access units with an IDR slice) that carry no SPS get the
// SPS and PPS of the current sequence header inserted in front (after an
// access unit delimiter if there is one), because every Tandem video
// frame carries its parameter sets in band.
//
// Tolerated deviations: empty sequence headers are ignored (FFmpeg sends
// them when the encoder has no global header), and AVC tags holding
// Annex-B instead of length-prefixed NAL units are accepted (what FFmpeg
// then sends), the video config coming from their in-band SPS and PPS.
type Demuxer struct {
	h       Handler
	clock   Unwrapper
	audio   media.AudioConfig
	video   media.VideoConfig
	nalLen  int
	haveA   bool
	haveV   bool
	stats   DemuxStats
	paramAU []byte // start code + SPS + start code + PPS
}

// NewDemuxer returns a Demuxer that reports to h.
func NewDemuxer(h Handler) *Demuxer { return &Demuxer{h: h} }

// Stats returns the counters so far.
func (d *Demuxer) Stats() DemuxStats { return d.stats }

// AudioConfig returns the current audio configuration, if any.
func (d *Demuxer) AudioConfig() (media.AudioConfig, bool) { return d.audio, d.haveA }

// VideoConfig returns the current video configuration, if any.
func (d *Demuxer) VideoConfig() (media.VideoConfig, bool) { return d.video, d.haveV }

// Audio handles one audio tag body with its timestamp (ms). Errors name
// what was wrong; ErrNoConfig (a dropped frame) is the only one after
// which the stream can usefully go on.
func (d *Demuxer) Audio(ts uint32, body []byte) error {
	ms := d.clock.Unwrap(ts)
	t, err := ParseAudioTag(body)
	if err != nil {
		return fmt.Errorf("audio tag at %d ms: %w", ms, err)
	}
	if t.SoundFormat != SoundFormatAAC {
		return fmt.Errorf("%w: audio sound format %d (%s); only AAC (10) is accepted",
			ErrUnsupported, t.SoundFormat, SoundFormatName(t.SoundFormat))
	}
	if t.AACPacketType == AACSequenceHeader {
		if len(t.Data) == 0 {
			// FFmpeg writes an empty sequence header when the encoder's
			// config comes later (as packet side data); the real one follows.
			return nil
		}
		cfg, err := adts.ParseASC(t.Data)
		if err != nil {
			return fmt.Errorf("AAC sequence header (AudioSpecificConfig % x): %w", t.Data, err)
		}
		if !d.haveA || cfg != d.audio {
			d.audio, d.haveA = cfg, true
			d.h.OnAudioConfig(cfg)
		}
		return nil
	}
	if !d.haveA {
		d.stats.Dropped++
		return fmt.Errorf("%w: AAC frame at %d ms", ErrNoConfig, ms)
	}
	if len(t.Data) == 0 {
		d.stats.Dropped++
		return nil
	}
	d.stats.AudioFrames++
	d.h.OnFrame(media.Frame{
		Kind: media.KindAudio,
		PTS:  ms * 90,
		DTS:  ms * 90,
		Key:  true,
		Data: append([]byte(nil), t.Data...),
	})
	return nil
}

// Video handles one video tag body with its timestamp (ms). Errors name
// what was wrong; ErrNoConfig (a dropped frame) is the only one after
// which the stream can usefully go on. Codecs other than H.264 are
// refused with ErrUnsupported.
func (d *Demuxer) Video(ts uint32, body []byte) error {
	ms := d.clock.Unwrap(ts)
	t, err := ParseVideoTag(body)
	if err != nil {
		return fmt.Errorf("video tag at %d ms: %w", ms, err)
	}
	if t.IsCommand() {
		return nil
	}
	if t.FourCC != FourCCAVC {
		return fmt.Errorf("%w: video %s; only H.264 (codec id 7 or enhanced FourCC \"avc1\") is accepted",
			ErrUnsupported, t.CodecName())
	}
	switch t.PacketType {
	case PacketSequenceStart:
		return d.videoConfig(t.Data)
	case PacketCodedFrames, PacketCodedFramesX:
		return d.videoFrame(ms, t)
	case PacketSequenceEnd, PacketMetadata:
		return nil
	}
	return fmt.Errorf("%w: video packet type %d with FourCC %q", ErrInvalid, t.PacketType, t.FourCC)
}

func (d *Demuxer) videoConfig(rec []byte) error {
	if len(rec) == 0 {
		return nil // empty sequence header, see Audio
	}
	n, err := h264.NALLengthSize(rec)
	if err != nil {
		return fmt.Errorf("AVC sequence header: %w", err)
	}
	cfg, err := h264.ParseAVCDecoderConfig(rec)
	if err != nil {
		return fmt.Errorf("AVC sequence header: %w", err)
	}
	d.setVideo(cfg, n)
	return nil
}

func (d *Demuxer) setVideo(cfg media.VideoConfig, nalLen int) {
	d.nalLen = nalLen
	if d.haveV && string(cfg.SPS) == string(d.video.SPS) && string(cfg.PPS) == string(d.video.PPS) {
		return
	}
	d.video, d.haveV = cfg, true
	d.paramAU = append(d.paramAU[:0], 0, 0, 0, 1)
	d.paramAU = append(d.paramAU, cfg.SPS...)
	d.paramAU = append(d.paramAU, 0, 0, 0, 1)
	d.paramAU = append(d.paramAU, cfg.PPS...)
	d.h.OnVideoConfig(cfg)
}

// startsWithStartCode reports whether b begins with an Annex-B start code.
func startsWithStartCode(b []byte) bool {
	return len(b) >= 4 && b[0] == 0 && b[1] == 0 && (b[2] == 1 || b[2] == 0 && b[3] == 1)
}

func (d *Demuxer) videoFrame(ms int64, t VideoTag) error {
	if len(t.Data) == 0 {
		d.stats.Dropped++
		return nil
	}
	nalLen := d.nalLen
	if nalLen == 0 {
		nalLen = 4
	}
	au, err := h264.AVCCToAnnexB(make([]byte, 0, len(t.Data)+len(d.paramAU)+8), t.Data, nalLen)
	if (err != nil || !d.haveV) && startsWithStartCode(t.Data) {
		// Annex-B instead of length-prefixed NAL units: what FFmpeg's FLV
		// muxer writes when the encoder gave it no global header (the tee
		// muxer), with an empty sequence header and in-band SPS/PPS.
		au = au[:0]
		for nal := range h264.NALUnits(t.Data) {
			au = append(au, 0, 0, 0, 1)
			au = append(au, nal...)
		}
		err = nil
		d.stats.AnnexB++
	}
	if err != nil {
		return fmt.Errorf("H.264 frame at %d ms: %w", ms, err)
	}
	if len(au) == 0 {
		d.stats.Dropped++
		return nil
	}
	if !d.haveV {
		cfg, ok, _ := h264.ConfigFromAU(au)
		if !ok {
			d.stats.Dropped++
			return fmt.Errorf("%w: H.264 frame at %d ms", ErrNoConfig, ms)
		}
		d.setVideo(cfg, 4)
	}
	key, hasSPS := scanAU(au)
	if key != (t.FrameType == FrameKey || t.FrameType == FrameGeneratedKey) {
		d.stats.KeyMismatch++
	}
	if key && !hasSPS {
		au = d.insertParams(au)
		d.stats.ParamSetsAdded++
	}
	d.stats.VideoFrames++
	dts := ms * 90
	d.h.OnFrame(media.Frame{
		Kind: media.KindVideo,
		DTS:  dts,
		PTS:  dts + int64(t.CompositionTime)*90,
		Key:  key,
		Data: au,
	})
	return nil
}

// scanAU looks at the NAL units before the first slice: key is true when
// that slice is an IDR slice, hasSPS when an SPS came before it.
func scanAU(au []byte) (key, hasSPS bool) {
	for nal := range h264.NALUnits(au) {
		switch t := h264.NALType(nal); t {
		case h264.NALSPS:
			hasSPS = true
		case h264.NALSlice, 2, 3, 4:
			return false, hasSPS
		case h264.NALIDR:
			return true, hasSPS
		}
	}
	return false, hasSPS
}

// insertParams puts the sequence header's SPS and PPS in front of au
// (which starts with a 4-byte start code), after a leading AUD.
func (d *Demuxer) insertParams(au []byte) []byte {
	at := 0
	if len(au) > 4 && h264.NALType(au[4:]) == h264.NALAUD {
		// The AUD is 2 bytes (type + primary_pic_type) plus trailing bits;
		// find the next start code.
		at = len(au)
		for i := 5; i+3 < len(au); i++ {
			if au[i] == 0 && au[i+1] == 0 && au[i+2] == 0 && au[i+3] == 1 {
				at = i
				break
			}
		}
	}
	out := make([]byte, 0, len(au)+len(d.paramAU))
	out = append(out, au[:at]...)
	out = append(out, d.paramAU...)
	return append(out, au[at:]...)
}
