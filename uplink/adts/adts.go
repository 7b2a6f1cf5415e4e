// Package adts reads and writes AAC in ADTS framing (ISO/IEC 13818-7 and
// 14496-3 §1.A.2) and the MPEG-4 AudioSpecificConfig (14496-3 §1.6.2.1), and
// builds raw AAC-LC access units that decode to silence.
//
// Every ADTS frame handled here holds exactly one raw data block (the only
// form encoders emit in practice and the only one that maps onto one
// media.Frame); frames announcing more are rejected with ErrUnsupported.
package adts

import (
	"errors"
	"fmt"

	"tandem/uplink/media"
)

// Errors returned by the parsers, to branch on with errors.Is.
var (
	// ErrShort means the buffer ends before the header (or frame) does.
	ErrShort = errors.New("adts: short buffer")
	// ErrNoSync means the bytes do not start with the 12-bit ADTS syncword.
	ErrNoSync = errors.New("adts: no syncword")
	// ErrInvalid means a field holds a value the standard forbids.
	ErrInvalid = errors.New("adts: invalid header")
	// ErrUnsupported means a legal feature this package does not handle:
	// several raw data blocks per frame, channel configuration 0 (PCE).
	ErrUnsupported = errors.New("adts: unsupported")
	// ErrNotADTS means a stream never showed a valid ADTS frame.
	ErrNotADTS = errors.New("adts: not an ADTS stream")
)

// MaxFrameLength is the largest ADTS frame the 13-bit length field allows.
const MaxFrameLength = 1<<13 - 1

// HeaderLength is the size of an ADTS header without CRC, as written here.
const HeaderLength = 7

// sampleRates is the samplingFrequencyIndex table (14496-3 Table 1.18).
var sampleRates = [13]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// SampleRateIndex returns the samplingFrequencyIndex of rate, or false if
// the rate has none (it then needs an explicit rate in an ASC and cannot be
// carried in ADTS).
func SampleRateIndex(rate int) (int, bool) {
	for i, r := range sampleRates {
		if r == rate {
			return i, true
		}
	}
	return 0, false
}

// channelsForConfig maps channelConfiguration 1..7 to a channel count.
var channelsForConfig = [8]int{0, 1, 2, 3, 4, 5, 6, 8}

// ChannelConfig returns the channelConfiguration for a channel count
// (1..6 → 1..6, 8 → 7), or false if there is none.
func ChannelConfig(channels int) (int, bool) {
	for c := 1; c < len(channelsForConfig); c++ {
		if channelsForConfig[c] == channels {
			return c, true
		}
	}
	return 0, false
}

// Header is one parsed ADTS header.
type Header struct {
	// Config is the stream description: Codec is always media.CodecAAC and
	// ObjectType is profile+1 (2 = AAC-LC).
	Config media.AudioConfig
	// FrameLength is the whole frame, header included.
	FrameLength int
	// HeaderLength is 7, or 9 when a CRC follows the fixed header.
	HeaderLength int
	// BufferFullness is adts_buffer_fullness (0x7FF = variable bitrate).
	BufferFullness int
	// RawBlocks is the number of raw data blocks; always 1 here.
	RawBlocks int
}

// PayloadLength is the size of the raw access unit after the header.
func (h Header) PayloadLength() int { return h.FrameLength - h.HeaderLength }

// ParseHeader parses the ADTS header at the start of b. b needs only hold
// the header (7 bytes, or 9 when protection_absent is 0), not the frame.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < 7 {
		return Header{}, fmt.Errorf("%w: need 7 header bytes, have %d", ErrShort, len(b))
	}
	if b[0] != 0xFF || b[1]&0xF0 != 0xF0 {
		return Header{}, fmt.Errorf("%w: starts with %02x %02x", ErrNoSync, b[0], b[1])
	}
	if layer := b[1] >> 1 & 3; layer != 0 {
		return Header{}, fmt.Errorf("%w: layer %d, want 0", ErrInvalid, layer)
	}
	protectionAbsent := b[1]&1 == 1
	profile := int(b[2] >> 6)
	sfi := int(b[2] >> 2 & 0xF)
	chanCfg := int(b[2]&1)<<2 | int(b[3]>>6)
	frameLen := int(b[3]&3)<<11 | int(b[4])<<3 | int(b[5]>>5)
	fullness := int(b[5]&0x1F)<<6 | int(b[6]>>2)
	blocks := int(b[6]&3) + 1

	if sfi >= len(sampleRates) {
		return Header{}, fmt.Errorf("%w: sampling frequency index %d", ErrInvalid, sfi)
	}
	if chanCfg == 0 {
		return Header{}, fmt.Errorf("%w: channel configuration 0 (program config element)", ErrUnsupported)
	}
	if blocks != 1 {
		return Header{}, fmt.Errorf("%w: %d raw data blocks in one frame", ErrUnsupported, blocks)
	}
	hl := 7
	if !protectionAbsent {
		hl = 9
	}
	if frameLen <= hl {
		return Header{}, fmt.Errorf("%w: frame length %d not above header length %d", ErrInvalid, frameLen, hl)
	}
	if len(b) < hl {
		return Header{}, fmt.Errorf("%w: need %d header bytes, have %d", ErrShort, hl, len(b))
	}
	return Header{
		Config: media.AudioConfig{
			Codec:      media.CodecAAC,
			ObjectType: profile + 1,
			SampleRate: sampleRates[sfi],
			Channels:   channelsForConfig[chanCfg],
		},
		FrameLength:    frameLen,
		HeaderLength:   hl,
		BufferFullness: fullness,
		RawBlocks:      blocks,
	}, nil
}

// checkConfig validates cfg for ADTS and returns its table indexes.
func checkConfig(cfg media.AudioConfig) (profile, sfi, chanCfg int, err error) {
	if cfg.Codec != media.CodecAAC && cfg.Codec != media.CodecUnknown {
		return 0, 0, 0, fmt.Errorf("%w: codec %s is not AAC", ErrUnsupported, cfg.Codec)
	}
	if cfg.ObjectType < 1 || cfg.ObjectType > 4 {
		return 0, 0, 0, fmt.Errorf("%w: audio object type %d cannot be signalled in ADTS (1..4)", ErrUnsupported, cfg.ObjectType)
	}
	sfi, ok := SampleRateIndex(cfg.SampleRate)
	if !ok {
		return 0, 0, 0, fmt.Errorf("%w: sample rate %d Hz has no ADTS index", ErrUnsupported, cfg.SampleRate)
	}
	chanCfg, ok = ChannelConfig(cfg.Channels)
	if !ok {
		return 0, 0, 0, fmt.Errorf("%w: %d channels have no channel configuration", ErrUnsupported, cfg.Channels)
	}
	return cfg.ObjectType - 1, sfi, chanCfg, nil
}

// HeaderBytes returns the 7-byte ADTS header (MPEG-4, no CRC, buffer
// fullness 0x7FF) for a frame carrying payloadLen bytes of raw AAC
// (1..8184: an empty access unit is not a valid frame).
func HeaderBytes(cfg media.AudioConfig, payloadLen int) ([7]byte, error) {
	var h [7]byte
	profile, sfi, chanCfg, err := checkConfig(cfg)
	if err != nil {
		return h, err
	}
	n := payloadLen + 7
	if payloadLen < 1 || n > MaxFrameLength {
		return h, fmt.Errorf("%w: payload of %d bytes does not fit one ADTS frame", ErrInvalid, payloadLen)
	}
	h[0] = 0xFF
	h[1] = 0xF1 // MPEG-4, layer 0, protection absent
	h[2] = byte(profile<<6 | sfi<<2 | chanCfg>>2)
	h[3] = byte(chanCfg&3<<6 | n>>11)
	h[4] = byte(n >> 3)
	h[5] = byte(n&7<<5 | 0x1F)
	h[6] = 0xFC // fullness low bits, one raw data block
	return h, nil
}

// PatchLength rewrites the frame length of a header made by HeaderBytes for
// a payload of payloadLen bytes. It lets writers build the fixed part once.
func PatchLength(h *[7]byte, payloadLen int) error {
	n := payloadLen + 7
	if payloadLen < 1 || n > MaxFrameLength {
		return fmt.Errorf("%w: payload of %d bytes does not fit one ADTS frame", ErrInvalid, payloadLen)
	}
	h[3] = h[3]&0xFC | byte(n>>11)
	h[4] = byte(n >> 3)
	h[5] = byte(n&7<<5) | h[5]&0x1F
	return nil
}

// AppendFrame appends a 7-byte header (no CRC) and payload to dst.
func AppendFrame(dst []byte, cfg media.AudioConfig, payload []byte) ([]byte, error) {
	h, err := HeaderBytes(cfg, len(payload))
	if err != nil {
		return dst, err
	}
	dst = append(dst, h[:]...)
	return append(dst, payload...), nil
}

// Split cuts b into whole ADTS frames (headers included). Frames alias b.
// rest is a trailing frame that is not complete yet (nil if none). A
// header that does not parse stops the split with an error; the frames
// before it are still returned and rest then starts at the bad header.
func Split(b []byte) (frames [][]byte, rest []byte, err error) {
	for len(b) > 0 {
		h, err := ParseHeader(b)
		if errors.Is(err, ErrShort) {
			return frames, b, nil
		}
		if err != nil {
			return frames, b, err
		}
		if h.FrameLength > len(b) {
			return frames, b, nil
		}
		frames = append(frames, b[:h.FrameLength:h.FrameLength])
		b = b[h.FrameLength:]
	}
	return frames, nil, nil
}
