// Package media is the one vocabulary every part of Tandem speaks: a media
// frame, the codec parameters that describe a track, and a fan-out ring that
// lets one writer feed many readers. It imports nothing of ours.
package media

import (
	"fmt"
)

// ClockRate is the rate of every timestamp in Tandem: the MPEG 90 kHz clock.
const ClockRate = 90000

// Kind says whether a frame carries audio or video.
type Kind uint8

const (
	KindAudio Kind = iota + 1
	KindVideo
)

func (k Kind) String() string {
	switch k {
	case KindAudio:
		return "audio"
	case KindVideo:
		return "video"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Codec names a compression format.
type Codec uint8

const (
	CodecUnknown Codec = iota
	CodecAAC
	CodecH264
	CodecMP3
)

func (c Codec) String() string {
	switch c {
	case CodecAAC:
		return "aac"
	case CodecH264:
		return "h264"
	case CodecMP3:
		return "mp3"
	}
	return "unknown"
}

// Frame is one access unit on the 90 kHz timeline.
//
// For AAC, Data is one raw access unit without its ADTS header (writers add
// the header they need). For H.264, Data is one access unit in Annex-B form
// (start codes included). Frames are shared between readers once published:
// nobody may modify Data after handing a frame on.
type Frame struct {
	Kind Kind
	// PTS and DTS are 90 kHz ticks. Demuxers deliver them as found on the
	// wire (33-bit, may wrap); the merge unwraps them against its own timeline.
	PTS int64
	DTS int64
	// Key marks a frame a decoder can start from: every audio frame, and
	// H.264 access units holding an IDR slice.
	Key  bool
	Data []byte
}

// AudioConfig describes an audio track.
type AudioConfig struct {
	Codec Codec
	// ObjectType is the MPEG-4 audio object type (2 = AAC-LC).
	ObjectType int
	SampleRate int
	Channels   int
}

// FrameSamples is the number of PCM samples per channel in one frame.
func (a AudioConfig) FrameSamples() int {
	if a.Codec == CodecMP3 {
		return 1152
	}
	return 1024
}

// FramePTS is the exact 90 kHz timestamp of the frame with the given index
// on a timeline that starts at sample 0. Timestamps come from the sample
// counter, so at 44.1 kHz they are not evenly spaced ticks: rounding is
// done once per index, never accumulated.
func (a AudioConfig) FramePTS(index int64) int64 {
	if a.SampleRate <= 0 {
		return 0
	}
	return floorDiv(index*int64(a.FrameSamples())*ClockRate, int64(a.SampleRate))
}

// FrameIndex is the index of the frame whose timestamp is nearest pts.
func (a AudioConfig) FrameIndex(pts int64) int64 {
	if a.SampleRate <= 0 {
		return 0
	}
	den := int64(a.FrameSamples()) * ClockRate
	return floorDiv(pts*int64(a.SampleRate)+den/2, den)
}

// FrameDuration is the nominal duration of one frame in 90 kHz ticks.
func (a AudioConfig) FrameDuration() int64 {
	if a.SampleRate <= 0 {
		return 0
	}
	return int64(a.FrameSamples()) * ClockRate / int64(a.SampleRate)
}

func (a AudioConfig) String() string {
	if a.Codec == CodecAAC {
		return fmt.Sprintf("aac(aot=%d) %d Hz %dch", a.ObjectType, a.SampleRate, a.Channels)
	}
	return fmt.Sprintf("%s %d Hz %dch", a.Codec, a.SampleRate, a.Channels)
}

// MismatchError says which parameter differs between two tracks that must
// match (a stream's primary and fallback).
type MismatchError struct {
	Field string
	Want  string // the reference (primary) value
	Got   string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s mismatch: primary has %s, this input has %s", e.Field, e.Want, e.Got)
}

// Match reports the first parameter in which b differs from the reference a,
// as a *MismatchError. Bitrate is not part of the config: it may differ.
func (a AudioConfig) Match(b AudioConfig) error {
	switch {
	case a.Codec != b.Codec:
		return &MismatchError{"codec", a.Codec.String(), b.Codec.String()}
	case a.ObjectType != b.ObjectType:
		return &MismatchError{"audio object type", fmt.Sprint(a.ObjectType), fmt.Sprint(b.ObjectType)}
	case a.SampleRate != b.SampleRate:
		return &MismatchError{"sample rate", fmt.Sprintf("%d Hz", a.SampleRate), fmt.Sprintf("%d Hz", b.SampleRate)}
	case a.Channels != b.Channels:
		return &MismatchError{"channels", fmt.Sprint(a.Channels), fmt.Sprint(b.Channels)}
	}
	return nil
}

// VideoConfig describes a video track, as read from its H.264 SPS.
type VideoConfig struct {
	Codec      Codec
	Width      int
	Height     int
	ProfileIDC int
	LevelIDC   int
	// SPS and PPS are the parameter-set NAL units without start codes.
	SPS []byte
	PPS []byte
}

// Match reports the first parameter in which b differs from a.
func (a VideoConfig) Match(b VideoConfig) error {
	switch {
	case a.Codec != b.Codec:
		return &MismatchError{"video codec", a.Codec.String(), b.Codec.String()}
	case a.Width != b.Width || a.Height != b.Height:
		return &MismatchError{"resolution", fmt.Sprintf("%dx%d", a.Width, a.Height), fmt.Sprintf("%dx%d", b.Width, b.Height)}
	}
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
