// Package h264 handles H.264 (ISO/IEC 14496-10) access units: Annex-B NAL
// unit splitting, keyframe detection, SPS parsing (resolution, profile,
// level) and the AVC decoder configuration record and length-prefixed NAL
// framing of ISO/IEC 14496-15 used by MP4 and RTMP/FLV.
package h264

import (
	"bytes"
	"errors"
	"iter"
)

// NAL unit types used here (14496-10 Table 7-1).
const (
	NALSlice    = 1
	NALIDR      = 5
	NALSEI      = 6
	NALSPS      = 7
	NALPPS      = 8
	NALAUD      = 9
	NALEndSeq   = 10
	NALEndStrm  = 11
	NALFiller   = 12
	NALSPSExt   = 13
	NALPrefix   = 14
	NALSubsetSP = 15
)

// Errors to branch on with errors.Is.
var (
	// ErrInvalid means the bitstream holds a value the standard forbids
	// or ends before a field it needs.
	ErrInvalid = errors.New("h264: invalid bitstream")
	// ErrUnsupported means a legal feature this package does not handle.
	ErrUnsupported = errors.New("h264: unsupported")
)

// NALType returns nal_unit_type of a NAL unit (without start code), or 0
// for an empty one.
func NALType(nal []byte) int {
	if len(nal) == 0 {
		return 0
	}
	return int(nal[0] & 0x1F)
}

var startCode = []byte{0, 0, 1}

// NALUnits yields the NAL units of an Annex-B byte stream without their
// start codes, aliasing b. 3- and 4-byte start codes are accepted; zero
// bytes trailing a NAL unit (trailing_zero_8bits, the first byte of a
// 4-byte start code) are trimmed, and bytes before the first start code
// are ignored. Empty NAL units are skipped.
func NALUnits(b []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		i := bytes.Index(b, startCode)
		if i < 0 {
			return
		}
		b = b[i+3:]
		for len(b) > 0 {
			nal := b
			j := bytes.Index(b, startCode)
			if j >= 0 {
				nal = b[:j]
				b = b[j+3:]
			} else {
				b = nil
			}
			for len(nal) > 0 && nal[len(nal)-1] == 0 {
				nal = nal[:len(nal)-1]
			}
			if len(nal) > 0 && !yield(nal) {
				return
			}
		}
	}
}

// SplitAnnexB returns the NAL units of an Annex-B access unit, without
// start codes; see NALUnits for the rules. The units alias b.
func SplitAnnexB(b []byte) [][]byte {
	var nals [][]byte
	for nal := range NALUnits(b) {
		nals = append(nals, nal)
	}
	return nals
}

// isVCL reports whether a NAL unit type carries slice data.
func isVCL(typ int) bool { return typ >= 1 && typ <= 5 }

// IsKeyframe reports whether an Annex-B access unit holds an IDR slice.
// All slices of an access unit are of one kind, so the scan stops at the
// first slice NAL unit.
func IsKeyframe(au []byte) bool {
	for nal := range NALUnits(au) {
		if t := NALType(nal); isVCL(t) {
			return t == NALIDR
		}
	}
	return false
}

// HasAUD reports whether an Annex-B access unit starts with an access unit
// delimiter.
func HasAUD(au []byte) bool {
	for nal := range NALUnits(au) {
		return NALType(nal) == NALAUD
	}
	return false
}

// AUD is an Annex-B access unit delimiter (4-byte start code) with
// primary_pic_type 7 (any slice type), as ffmpeg and x264 write it.
var AUD = []byte{0, 0, 0, 1, NALAUD, 0xF0}

// HasParameterSets reports whether an Annex-B access unit carries an SPS
// and a PPS before its first slice.
func HasParameterSets(au []byte) bool {
	var sps, pps bool
	for nal := range NALUnits(au) {
		switch t := NALType(nal); {
		case t == NALSPS:
			sps = true
		case t == NALPPS:
			pps = true
		case isVCL(t):
			return sps && pps
		}
	}
	return sps && pps
}

// WithParameterSets returns a new Annex-B access unit: au with sps and
// pps (NAL units without start codes) inserted after its access unit
// delimiter, if it has one, else at its start. A decoder that joins at
// this access unit, or whose previous pictures came from another encoder,
// can decode it without an out-of-band configuration. au is not modified.
func WithParameterSets(au, sps, pps []byte) []byte {
	out := make([]byte, 0, len(au)+len(sps)+len(pps)+8)
	rest := au
	if HasAUD(au) {
		// Keep the delimiter first, as the standard requires.
		i := bytes.Index(au, startCode)
		next := bytes.Index(au[i+3:], startCode)
		if next < 0 {
			next = len(au) - i - 3
		} else if next > 0 && au[i+3+next-1] == 0 {
			next-- // the zero byte of a 4-byte start code belongs to the next NAL
		}
		out = append(out, au[:i+3+next]...)
		rest = au[i+3+next:]
	}
	out = append(out, 0, 0, 0, 1)
	out = append(out, sps...)
	out = append(out, 0, 0, 0, 1)
	out = append(out, pps...)
	return append(out, rest...)
}
