package h264

import (
	"fmt"

	"tandem/uplink/media"
)

// Unescape returns the RBSP of a NAL unit payload: the bytes with every
// emulation_prevention_three_byte (00 00 03 → 00 00) removed. It returns b
// itself when there is nothing to remove.
func Unescape(b []byte) []byte {
	zeros := 0
	for i, c := range b {
		if zeros >= 2 && c == 3 {
			return unescapeFrom(b, i)
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return b
}

func unescapeFrom(b []byte, first int) []byte {
	out := make([]byte, 0, len(b))
	out = append(out, b[:first]...)
	zeros := 0
	for _, c := range b[first+1:] {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// bitReader reads an RBSP. Reading past the end sets err and returns 0.
type bitReader struct {
	b   []byte
	pos int
	err bool
}

func (r *bitReader) u(n int) uint32 {
	var v uint32
	for ; n > 0; n-- {
		i := r.pos >> 3
		if i >= len(r.b) {
			r.err = true
			return 0
		}
		v = v<<1 | uint32(r.b[i]>>(7-uint(r.pos&7))&1)
		r.pos++
	}
	return v
}

func (r *bitReader) flag() bool { return r.u(1) == 1 }

// ue reads an Exp-Golomb code, up to 32 bits of value.
func (r *bitReader) ue() uint32 {
	lz := 0
	for r.u(1) == 0 {
		if r.err || lz >= 32 {
			r.err = true
			return 0
		}
		lz++
	}
	if lz == 32 {
		r.err = true
		return 0
	}
	return uint32(1)<<lz - 1 + r.u(lz)
}

func (r *bitReader) se() int32 {
	v := r.ue()
	if v&1 == 1 {
		return int32((v + 1) / 2)
	}
	return -int32(v / 2)
}

// SPS holds the fields of a sequence parameter set that Tandem uses.
type SPS struct {
	ProfileIDC      int
	ConstraintFlags int
	LevelIDC        int
	ID              int
	ChromaFormatIDC int // 0 (monochrome) .. 3 (4:4:4); 1 when not coded
	BitDepthLuma    int
	BitDepthChroma  int
	FrameMBSOnly    bool
	// Width and Height are the output size, frame cropping applied.
	Width  int
	Height int
}

// hasChromaInfo lists the profiles whose SPS codes chroma_format_idc and
// the rest of the high-profile fields (14496-10 §7.3.2.1.1).
func hasChromaInfo(profile int) bool {
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		return true
	}
	return false
}

// DecodeSPS parses a sequence parameter set NAL unit (header byte
// included, no start code), up to frame cropping; VUI is not read.
func DecodeSPS(nal []byte) (SPS, error) {
	var s SPS
	if len(nal) < 4 {
		return s, fmt.Errorf("%w: SPS of %d bytes", ErrInvalid, len(nal))
	}
	if nal[0]&0x80 != 0 {
		return s, fmt.Errorf("%w: forbidden_zero_bit set in SPS", ErrInvalid)
	}
	if t := NALType(nal); t != NALSPS {
		return s, fmt.Errorf("%w: NAL unit type %d is not an SPS", ErrInvalid, t)
	}
	r := bitReader{b: Unescape(nal[1:])}
	s.ProfileIDC = int(r.u(8))
	s.ConstraintFlags = int(r.u(8))
	s.LevelIDC = int(r.u(8))
	id := r.ue()
	if id > 31 {
		return s, fmt.Errorf("%w: seq_parameter_set_id %d", ErrInvalid, id)
	}
	s.ID = int(id)
	s.ChromaFormatIDC = 1
	s.BitDepthLuma, s.BitDepthChroma = 8, 8
	separateColourPlane := false
	if hasChromaInfo(s.ProfileIDC) {
		cf := r.ue()
		if cf > 3 {
			return s, fmt.Errorf("%w: chroma_format_idc %d", ErrInvalid, cf)
		}
		s.ChromaFormatIDC = int(cf)
		if cf == 3 {
			separateColourPlane = r.flag()
		}
		bl, bc := r.ue(), r.ue()
		if bl > 6 || bc > 6 {
			return s, fmt.Errorf("%w: bit depth minus 8 of %d/%d", ErrInvalid, bl, bc)
		}
		s.BitDepthLuma, s.BitDepthChroma = int(bl)+8, int(bc)+8
		r.u(1)        // qpprime_y_zero_transform_bypass_flag
		if r.flag() { // seq_scaling_matrix_present_flag
			n := 8
			if cf == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if r.flag() {
					size := 16
					if i >= 6 {
						size = 64
					}
					skipScalingList(&r, size)
				}
			}
		}
	}
	if r.ue() > 12 { // log2_max_frame_num_minus4
		return s, fmt.Errorf("%w: log2_max_frame_num_minus4 out of range", ErrInvalid)
	}
	switch poc := r.ue(); poc {
	case 0:
		if r.ue() > 12 { // log2_max_pic_order_cnt_lsb_minus4
			return s, fmt.Errorf("%w: log2_max_pic_order_cnt_lsb_minus4 out of range", ErrInvalid)
		}
	case 1:
		r.u(1) // delta_pic_order_always_zero_flag
		r.se() // offset_for_non_ref_pic
		r.se() // offset_for_top_to_bottom_field
		n := r.ue()
		if n > 255 {
			return s, fmt.Errorf("%w: num_ref_frames_in_pic_order_cnt_cycle %d", ErrInvalid, n)
		}
		for i := uint32(0); i < n && !r.err; i++ {
			r.se()
		}
	case 2:
	default:
		return s, fmt.Errorf("%w: pic_order_cnt_type %d", ErrInvalid, poc)
	}
	r.ue() // max_num_ref_frames
	r.u(1) // gaps_in_frame_num_value_allowed_flag
	wmb := r.ue() + 1
	hmap := r.ue() + 1
	s.FrameMBSOnly = r.flag()
	if !s.FrameMBSOnly {
		r.u(1) // mb_adaptive_frame_field_flag
	}
	r.u(1) // direct_8x8_inference_flag
	var cl, cr, ct, cb uint32
	if r.flag() { // frame_cropping_flag
		cl, cr, ct, cb = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err {
		return s, fmt.Errorf("%w: SPS of %d bytes ends early", ErrInvalid, len(nal))
	}
	// Sizes beyond level 6.2's maximum frame size (139264 macroblocks) or
	// 16384 pixels on a side are rejected as nonsense.
	if wmb > 1024 || hmap > 1024 {
		return s, fmt.Errorf("%w: picture of %d×%d macroblocks", ErrInvalid, wmb, hmap)
	}
	fieldMul := 2
	if s.FrameMBSOnly {
		fieldMul = 1
	}
	width := int(wmb) * 16
	height := int(hmap) * 16 * fieldMul
	cropX, cropY := 1, 2-boolInt(s.FrameMBSOnly)
	if !separateColourPlane && s.ChromaFormatIDC != 0 {
		subW, subH := 2, 2
		switch s.ChromaFormatIDC {
		case 2:
			subH = 1
		case 3:
			subW, subH = 1, 1
		}
		cropX, cropY = subW, subH*(2-boolInt(s.FrameMBSOnly))
	}
	if uint64(cl)+uint64(cr) >= uint64(width/cropX) || uint64(ct)+uint64(cb) >= uint64(height/cropY) {
		return s, fmt.Errorf("%w: cropping %d/%d/%d/%d leaves nothing of %dx%d", ErrInvalid, cl, cr, ct, cb, width, height)
	}
	s.Width = width - cropX*int(cl+cr)
	s.Height = height - cropY*int(ct+cb)
	return s, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// skipScalingList reads past a scaling_list() of the given size.
func skipScalingList(r *bitReader, size int) {
	last, next := int32(8), int32(8)
	for j := 0; j < size && !r.err; j++ {
		if next != 0 {
			delta := r.se()
			next = (last + delta + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}

// ParseSPS parses a sequence parameter set NAL unit (no start code) into a
// VideoConfig with Codec, size (cropping applied), profile, level and a
// copy of the SPS. PPS is left empty.
func ParseSPS(nal []byte) (media.VideoConfig, error) {
	s, err := DecodeSPS(nal)
	if err != nil {
		return media.VideoConfig{}, err
	}
	return media.VideoConfig{
		Codec:      media.CodecH264,
		Width:      s.Width,
		Height:     s.Height,
		ProfileIDC: s.ProfileIDC,
		LevelIDC:   s.LevelIDC,
		SPS:        append([]byte(nil), nal...),
	}, nil
}

// ConfigFromAU looks for parameter sets in an Annex-B access unit. ok is
// true when both an SPS and a PPS were found (the first of each; the
// config then holds copies of them); err is set when an SPS is present but
// does not parse. An access unit without parameter sets returns ok false
// and no error.
func ConfigFromAU(au []byte) (cfg media.VideoConfig, ok bool, err error) {
	var sps, pps []byte
	for nal := range NALUnits(au) {
		switch NALType(nal) {
		case NALSPS:
			if sps == nil {
				sps = nal
			}
		case NALPPS:
			if pps == nil {
				pps = nal
			}
		case NALSlice, 2, 3, 4, NALIDR:
			// Parameter sets precede the first slice.
			goto done
		}
	}
done:
	if sps == nil {
		return cfg, false, nil
	}
	cfg, err = ParseSPS(sps)
	if err != nil {
		return cfg, false, err
	}
	if pps == nil {
		return cfg, false, nil
	}
	cfg.PPS = append([]byte(nil), pps...)
	return cfg, true, nil
}
