package h264

import (
	"fmt"

	"tandem/uplink/media"
)

// AVCC is the length-prefixed NAL unit framing of ISO/IEC 14496-15 used in
// MP4 samples and RTMP/FLV video tags. Everything written here uses 4-byte
// lengths (lengthSizeMinusOne = 3).

// AppendAVCDecoderConfig appends the AVCDecoderConfigurationRecord (14496-15
// §5.3.3.1) for cfg: one SPS, one PPS, 4-byte NAL lengths, and for the
// High profiles (100, 110, 122, 144) the chroma format and bit depth
// extension taken from the SPS.
func AppendAVCDecoderConfig(dst []byte, cfg media.VideoConfig) ([]byte, error) {
	if len(cfg.SPS) < 4 || len(cfg.PPS) == 0 {
		return dst, fmt.Errorf("%w: decoder config needs an SPS and a PPS (have %d and %d bytes)", ErrInvalid, len(cfg.SPS), len(cfg.PPS))
	}
	if len(cfg.SPS) > 0xFFFF || len(cfg.PPS) > 0xFFFF {
		return dst, fmt.Errorf("%w: parameter set longer than 65535 bytes", ErrInvalid)
	}
	s, err := DecodeSPS(cfg.SPS)
	if err != nil {
		return dst, fmt.Errorf("decoder config: %w", err)
	}
	dst = append(dst,
		1,          // configurationVersion
		cfg.SPS[1], // AVCProfileIndication
		cfg.SPS[2], // profile_compatibility
		cfg.SPS[3], // AVCLevelIndication
		0xFC|3,     // reserved, lengthSizeMinusOne
		0xE0|1,     // reserved, numOfSequenceParameterSets
		byte(len(cfg.SPS)>>8), byte(len(cfg.SPS)))
	dst = append(dst, cfg.SPS...)
	dst = append(dst, 1, byte(len(cfg.PPS)>>8), byte(len(cfg.PPS)))
	dst = append(dst, cfg.PPS...)
	switch s.ProfileIDC {
	case 100, 110, 122, 144:
		dst = append(dst,
			0xFC|byte(s.ChromaFormatIDC),
			0xF8|byte(s.BitDepthLuma-8),
			0xF8|byte(s.BitDepthChroma-8),
			0) // numOfSequenceParameterSetExt
	}
	return dst, nil
}

// NALLengthSize returns the NAL unit length size (1, 2 or 4 bytes) an
// AVCDecoderConfigurationRecord announces for its samples.
func NALLengthSize(record []byte) (int, error) {
	if len(record) < 5 {
		return 0, fmt.Errorf("%w: decoder config of %d bytes", ErrInvalid, len(record))
	}
	if record[0] != 1 {
		return 0, fmt.Errorf("%w: decoder config version %d", ErrUnsupported, record[0])
	}
	n := int(record[4]&3) + 1
	if n == 3 {
		return 0, fmt.Errorf("%w: NAL length size 3", ErrInvalid)
	}
	return n, nil
}

// ParseAVCDecoderConfig parses an AVCDecoderConfigurationRecord and
// returns the config described by its first SPS and first PPS (copies).
// The optional High-profile extension after the PPS list is not needed
// and may be absent, as many writers omit it.
func ParseAVCDecoderConfig(b []byte) (media.VideoConfig, error) {
	if _, err := NALLengthSize(b); err != nil {
		return media.VideoConfig{}, err
	}
	if len(b) < 6 {
		return media.VideoConfig{}, fmt.Errorf("%w: decoder config of %d bytes", ErrInvalid, len(b))
	}
	nsps := int(b[5] & 0x1F)
	p := b[6:]
	var sps, pps []byte
	for i := 0; i < nsps; i++ {
		nal, rest, err := lengthPrefixed16(p)
		if err != nil {
			return media.VideoConfig{}, fmt.Errorf("decoder config SPS %d: %w", i, err)
		}
		if sps == nil {
			sps = nal
		}
		p = rest
	}
	if len(p) < 1 {
		return media.VideoConfig{}, fmt.Errorf("%w: decoder config ends before the PPS count", ErrInvalid)
	}
	npps := int(p[0])
	p = p[1:]
	for i := 0; i < npps; i++ {
		nal, rest, err := lengthPrefixed16(p)
		if err != nil {
			return media.VideoConfig{}, fmt.Errorf("decoder config PPS %d: %w", i, err)
		}
		if pps == nil {
			pps = nal
		}
		p = rest
	}
	if sps == nil || pps == nil {
		return media.VideoConfig{}, fmt.Errorf("%w: decoder config holds %d SPS and %d PPS, needs one of each", ErrInvalid, nsps, npps)
	}
	cfg, err := ParseSPS(sps)
	if err != nil {
		return media.VideoConfig{}, fmt.Errorf("decoder config: %w", err)
	}
	if NALType(pps) != NALPPS {
		return media.VideoConfig{}, fmt.Errorf("%w: decoder config PPS has NAL unit type %d", ErrInvalid, NALType(pps))
	}
	cfg.PPS = append([]byte(nil), pps...)
	return cfg, nil
}

func lengthPrefixed16(p []byte) (nal, rest []byte, err error) {
	if len(p) < 2 {
		return nil, nil, fmt.Errorf("%w: truncated length", ErrInvalid)
	}
	n := int(p[0])<<8 | int(p[1])
	if n == 0 || len(p)-2 < n {
		return nil, nil, fmt.Errorf("%w: parameter set of %d bytes, %d left", ErrInvalid, n, len(p)-2)
	}
	return p[2 : 2+n], p[2+n:], nil
}

// AnnexBToAVCC appends the NAL units of an Annex-B access unit to dst, each
// prefixed with its 4-byte big-endian length. All NAL units are kept
// (access unit delimiters and in-band parameter sets included).
func AnnexBToAVCC(dst, au []byte) []byte {
	for nal := range NALUnits(au) {
		n := len(nal)
		dst = append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		dst = append(dst, nal...)
	}
	return dst
}

// AVCCToAnnexB appends the length-prefixed NAL units in b to dst in Annex-B
// form, each after a 4-byte start code. nalLengthSize is 1, 2 or 4.
func AVCCToAnnexB(dst, b []byte, nalLengthSize int) ([]byte, error) {
	switch nalLengthSize {
	case 1, 2, 4:
	default:
		return dst, fmt.Errorf("%w: NAL length size %d", ErrInvalid, nalLengthSize)
	}
	for len(b) > 0 {
		if len(b) < nalLengthSize {
			return dst, fmt.Errorf("%w: %d bytes left, length field needs %d", ErrInvalid, len(b), nalLengthSize)
		}
		n := 0
		for _, c := range b[:nalLengthSize] {
			n = n<<8 | int(c)
		}
		b = b[nalLengthSize:]
		if n > len(b) {
			return dst, fmt.Errorf("%w: NAL unit of %d bytes, %d left", ErrInvalid, n, len(b))
		}
		if n > 0 {
			dst = append(dst, 0, 0, 0, 1)
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst, nil
}
