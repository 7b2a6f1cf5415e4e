// Package flv reads and writes the FLV tag formats that RTMP audio, video
// and data messages carry (Adobe "Video File Format Specification" v10.1,
// annex E, and Veovera "Enhanced RTMP" v1/v2 for the ExVideoTagHeader), and
// FLV files.
//
// The tag parsers (ParseAudioTag, ParseVideoTag) only split a tag body into
// its fields; Demuxer turns tag bodies into media configs and frames on
// the 90 kHz timeline, and Muxer does the reverse. Only AAC audio and
// H.264 video (legacy codec id 7 or enhanced FourCC 'avc1') become media;
// anything else is refused with an error that names it.
package flv

import (
	"errors"
	"fmt"
)

// Tag types (FLV spec E.4.1).
const (
	TagAudio  = 8
	TagVideo  = 9
	TagScript = 18
)

// Errors to branch on with errors.Is.
var (
	// ErrTruncated means a tag ends before a field it needs.
	ErrTruncated = errors.New("flv: truncated tag")
	// ErrInvalid means a field holds a value the format does not allow.
	ErrInvalid = errors.New("flv: invalid tag")
	// ErrUnsupported means a legal codec or feature that is not handled.
	ErrUnsupported = errors.New("flv: unsupported")
)

// Sound formats (FLV spec E.4.2.1, SoundFormat).
const (
	SoundFormatMP3      = 2
	SoundFormatAAC      = 10
	SoundFormatExHeader = 9 // Enhanced RTMP v2 ExAudioTagHeader
)

// AAC packet types.
const (
	AACSequenceHeader = 0
	AACRaw            = 1
)

var soundFormatNames = [16]string{
	"linear PCM, platform endian", "ADPCM", "MP3", "linear PCM, little endian",
	"Nellymoser 16 kHz mono", "Nellymoser 8 kHz mono", "Nellymoser", "G.711 A-law",
	"G.711 mu-law", "enhanced audio (E-RTMP v2 ExAudioTagHeader)", "AAC", "Speex",
	"reserved (12)", "reserved (13)", "MP3 8 kHz", "device-specific sound",
}

// SoundFormatName names a FLV SoundFormat value.
func SoundFormatName(f uint8) string { return soundFormatNames[f&0xF] }

// AudioTag is a parsed audio tag body.
type AudioTag struct {
	SoundFormat uint8 // 10 = AAC
	SoundRate   uint8 // 0..3 (5.5, 11, 22, 44 kHz); always 3 for AAC
	SoundSize   uint8 // 0 = 8 bit, 1 = 16 bit
	SoundType   uint8 // 0 = mono, 1 = stereo; always 1 for AAC
	// AACPacketType is 0 (AudioSpecificConfig) or 1 (raw access unit)
	// when SoundFormat is AAC.
	AACPacketType uint8
	// Data is the AudioSpecificConfig or raw AAC access unit (aliasing
	// the tag body), or for other formats everything after the header.
	Data []byte
}

// ParseAudioTag splits an audio tag body. For AAC it checks the packet
// type; other sound formats are returned with Data set, for the caller to
// refuse.
func ParseAudioTag(b []byte) (AudioTag, error) {
	if len(b) < 1 {
		return AudioTag{}, fmt.Errorf("%w: audio tag of 0 bytes, needs the 1-byte header", ErrTruncated)
	}
	t := AudioTag{
		SoundFormat: b[0] >> 4,
		SoundRate:   b[0] >> 2 & 3,
		SoundSize:   b[0] >> 1 & 1,
		SoundType:   b[0] & 1,
	}
	if t.SoundFormat != SoundFormatAAC {
		t.Data = b[1:]
		return t, nil
	}
	if len(b) < 2 {
		return t, fmt.Errorf("%w: AAC audio tag of %d byte(s), needs 2 for the header and AACPacketType", ErrTruncated, len(b))
	}
	t.AACPacketType = b[1]
	if t.AACPacketType > AACRaw {
		return t, fmt.Errorf("%w: AACPacketType %d (want 0 = sequence header or 1 = raw)", ErrInvalid, t.AACPacketType)
	}
	t.Data = b[2:]
	return t, nil
}

// AACTagHeader is the first byte of every AAC audio tag: sound format 10,
// rate 3 (44 kHz), 16-bit, stereo, as the FLV spec requires for AAC (the
// real parameters are in the AudioSpecificConfig).
const AACTagHeader = SoundFormatAAC<<4 | 3<<2 | 1<<1 | 1

// AppendAACTag appends an AAC audio tag body: the header byte, the packet
// type (AACSequenceHeader or AACRaw) and data.
func AppendAACTag(dst []byte, packetType uint8, data []byte) []byte {
	dst = append(dst, AACTagHeader, packetType)
	return append(dst, data...)
}

// Video frame types (FLV spec E.4.3.1, E-RTMP VideoFrameType).
const (
	FrameKey          = 1
	FrameInter        = 2
	FrameDisposable   = 3
	FrameGeneratedKey = 4
	FrameCommand      = 5 // video info / command frame
)

// Legacy video codec ids (FLV spec E.4.3.1, CodecID).
const (
	CodecIDAVC = 7
)

// Video packet types. The legacy AVCPacketType values 0, 1 and 2 are the
// same numbers as the enhanced SequenceStart, CodedFrames and SequenceEnd,
// so one enumeration serves both.
const (
	PacketSequenceStart        = 0
	PacketCodedFrames          = 1
	PacketSequenceEnd          = 2
	PacketCodedFramesX         = 3 // enhanced only: coded frames, composition time 0
	PacketMetadata             = 4 // enhanced only: AMF-encoded metadata
	PacketMPEG2TSSequenceStart = 5 // enhanced only
	PacketMultitrack           = 6 // enhanced v2
	PacketModEx                = 7 // enhanced v2
)

// FourCC values of the enhanced video header.
const (
	FourCCAVC  = "avc1"
	FourCCHEVC = "hvc1"
	FourCCAV1  = "av01"
	FourCCVP9  = "vp09"
	FourCCVP8  = "vp08"
)

var fourCCNames = map[string]string{
	FourCCAVC: "H.264", FourCCHEVC: "HEVC", FourCCAV1: "AV1", FourCCVP9: "VP9", FourCCVP8: "VP8",
}

var legacyCodecNames = [16]string{
	"reserved (0)", "JPEG", "Sorenson H.263", "Screen video", "On2 VP6",
	"On2 VP6 with alpha", "Screen video v2", "AVC (H.264)", "reserved (8)",
	"reserved (9)", "reserved (10)", "reserved (11)",
	"HEVC (codec id 12, non-standard FLV extension)", "AV1 (codec id 13, non-standard FLV extension)",
	"reserved (14)", "reserved (15)",
}

// VideoTag is a parsed video tag body, legacy or enhanced.
type VideoTag struct {
	// FrameType is 1 (key), 2 (inter), 3 (disposable), 4 (generated key)
	// or 5 (command).
	FrameType uint8
	// Enhanced is set when the IsExHeader bit was set (E-RTMP).
	Enhanced bool
	// CodecID is the legacy codec id (7 = AVC); 0 when Enhanced.
	CodecID uint8
	// FourCC is the enhanced codec FourCC ("avc1", "hvc1", ...); for a
	// legacy AVC tag it is "avc1" too, so callers can switch on it alone.
	FourCC string
	// PacketType is the (normalised) video packet type, see Packet*.
	// Zero for legacy non-AVC codecs.
	PacketType uint8
	// Command is the video command byte of a command frame.
	Command uint8
	// CompositionTime is the composition time offset in ms (PTS − DTS).
	CompositionTime int32
	// Data is the AVCDecoderConfigurationRecord, the length-prefixed NAL
	// units, or the packet's payload, aliasing the tag body.
	Data []byte
}

// IsCommand reports whether the tag is a command frame (no video data).
func (t VideoTag) IsCommand() bool {
	return t.FrameType == FrameCommand && t.PacketType != PacketMetadata
}

// CodecName names the tag's codec for messages.
func (t VideoTag) CodecName() string {
	if t.Enhanced {
		name := fourCCNames[t.FourCC]
		if name == "" {
			name = "unknown"
		}
		return fmt.Sprintf("enhanced FourCC %q (%s)", t.FourCC, name)
	}
	return fmt.Sprintf("codec id %d (%s)", t.CodecID, legacyCodecNames[t.CodecID&0xF])
}

func si24(b []byte) int32 {
	v := int32(b[0])<<16 | int32(b[1])<<8 | int32(b[2])
	return v << 8 >> 8
}

// ParseVideoTag splits a video tag body: the legacy VideoTagHeader (with
// the AVC packet type and composition time for codec id 7) or the E-RTMP
// ExVideoTagHeader (frame type, packet type, FourCC and, for 'avc1' and
// 'hvc1' CodedFrames, the composition time). Multitrack and ModEx packets
// (E-RTMP v2) are refused with ErrUnsupported.
func ParseVideoTag(b []byte) (VideoTag, error) {
	if len(b) < 1 {
		return VideoTag{}, fmt.Errorf("%w: video tag of 0 bytes, needs the 1-byte header", ErrTruncated)
	}
	if b[0]&0x80 == 0 {
		return parseLegacyVideo(b)
	}
	t := VideoTag{
		Enhanced:   true,
		FrameType:  b[0] >> 4 & 7,
		PacketType: b[0] & 0xF,
	}
	if t.FrameType == 0 || t.FrameType > FrameCommand {
		return t, fmt.Errorf("%w: enhanced video frame type %d", ErrInvalid, t.FrameType)
	}
	if t.IsCommand() {
		if len(b) < 2 {
			return t, fmt.Errorf("%w: enhanced video command frame of %d byte(s), needs 2", ErrTruncated, len(b))
		}
		t.Command = b[1]
		return t, nil
	}
	switch t.PacketType {
	case PacketMultitrack:
		return t, fmt.Errorf("%w: enhanced video multitrack packet (E-RTMP v2)", ErrUnsupported)
	case PacketModEx:
		return t, fmt.Errorf("%w: enhanced video ModEx packet (E-RTMP v2)", ErrUnsupported)
	case PacketSequenceStart, PacketCodedFrames, PacketSequenceEnd, PacketCodedFramesX,
		PacketMetadata, PacketMPEG2TSSequenceStart:
	default:
		return t, fmt.Errorf("%w: enhanced video packet type %d", ErrInvalid, t.PacketType)
	}
	if len(b) < 5 {
		return t, fmt.Errorf("%w: enhanced video tag of %d byte(s), needs 5 for the header and FourCC", ErrTruncated, len(b))
	}
	t.FourCC = string(b[1:5])
	p := b[5:]
	if t.PacketType == PacketCodedFrames && (t.FourCC == FourCCAVC || t.FourCC == FourCCHEVC) {
		if len(p) < 3 {
			return t, fmt.Errorf("%w: enhanced %q CodedFrames tag of %d bytes, needs 8 for the header, FourCC and composition time", ErrTruncated, t.FourCC, len(b))
		}
		t.CompositionTime = si24(p)
		p = p[3:]
	}
	t.Data = p
	return t, nil
}

func parseLegacyVideo(b []byte) (VideoTag, error) {
	t := VideoTag{FrameType: b[0] >> 4, CodecID: b[0] & 0xF}
	if t.FrameType == 0 || t.FrameType > FrameCommand {
		return t, fmt.Errorf("%w: video frame type %d", ErrInvalid, t.FrameType)
	}
	if t.FrameType == FrameCommand {
		if len(b) < 2 {
			return t, fmt.Errorf("%w: video command frame of %d byte(s), needs 2", ErrTruncated, len(b))
		}
		t.Command = b[1]
		if t.CodecID == CodecIDAVC {
			t.FourCC = FourCCAVC
		}
		return t, nil
	}
	if t.CodecID != CodecIDAVC {
		t.Data = b[1:]
		return t, nil
	}
	t.FourCC = FourCCAVC
	if len(b) < 5 {
		return t, fmt.Errorf("%w: AVC video tag of %d byte(s), needs 5 for the header, AVCPacketType and composition time", ErrTruncated, len(b))
	}
	t.PacketType = b[1]
	if t.PacketType > PacketSequenceEnd {
		return t, fmt.Errorf("%w: AVCPacketType %d (want 0, 1 or 2)", ErrInvalid, t.PacketType)
	}
	t.CompositionTime = si24(b[2:5])
	t.Data = b[5:]
	return t, nil
}

// AppendAVCTag appends a legacy AVC video tag body: frame type and codec
// id 7, AVCPacketType (PacketSequenceStart, PacketCodedFrames or
// PacketSequenceEnd), the composition time (ms, 24-bit signed) and data.
func AppendAVCTag(dst []byte, frameType, packetType uint8, cts int32, data []byte) []byte {
	dst = append(dst, frameType<<4|CodecIDAVC, packetType, byte(cts>>16), byte(cts>>8), byte(cts))
	return append(dst, data...)
}

// AppendExVideoTag appends an enhanced (E-RTMP) video tag body for a
// single-track FourCC codec. The composition time is written for 'avc1'
// and 'hvc1' CodedFrames only, as the specification says.
func AppendExVideoTag(dst []byte, frameType, packetType uint8, fourCC string, cts int32, data []byte) []byte {
	dst = append(dst, 0x80|(frameType&7)<<4|packetType&0xF)
	var cc [4]byte
	copy(cc[:], fourCC)
	dst = append(dst, cc[:]...)
	if packetType == PacketCodedFrames && (fourCC == FourCCAVC || fourCC == FourCCHEVC) {
		dst = append(dst, byte(cts>>16), byte(cts>>8), byte(cts))
	}
	return append(dst, data...)
}

// fits24 reports whether v fits a signed 24-bit field.
func fits24(v int64) bool { return v >= -1<<23 && v < 1<<23 }
