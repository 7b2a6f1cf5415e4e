package adts

import (
	"fmt"

	"tandem/uplink/media"
)

// bitReader reads big-endian bit fields; reading past the end sets err.
type bitReader struct {
	b   []byte
	pos int // in bits
	err bool
}

func (r *bitReader) read(n int) uint32 {
	var v uint32
	for i := 0; i < n; i++ {
		byteIdx := r.pos >> 3
		if byteIdx >= len(r.b) {
			r.err = true
			return 0
		}
		v = v<<1 | uint32(r.b[byteIdx]>>(7-uint(r.pos&7))&1)
		r.pos++
	}
	return v
}

// ParseASC parses an MPEG-4 AudioSpecificConfig (14496-3 §1.6.2.1), as
// found in MP4 esds boxes and RTMP AAC sequence headers.
//
// For explicitly signalled HE-AAC (object type 5 SBR or 29 PS) ObjectType
// keeps the signalled type, while SampleRate is the core (AAC) rate, so that
// FramePTS with 1024 samples per frame stays right, just as ADTS would
// describe the same stream (implicitly signalled, core rate). Channel
// configuration 0 (a program config element) is rejected.
func ParseASC(b []byte) (media.AudioConfig, error) {
	r := bitReader{b: b}
	aot := readAOT(&r)
	rate, err := readRate(&r)
	if err != nil {
		return media.AudioConfig{}, err
	}
	chanCfg := int(r.read(4))
	signalled := aot
	if aot == 5 || aot == 29 {
		// extensionSamplingFrequency, then the core object type.
		if _, err := readRate(&r); err != nil {
			return media.AudioConfig{}, err
		}
		aot = readAOT(&r)
		if aot == 22 { // ER BSAC carries an extension channel configuration
			r.read(4)
		}
	}
	if r.err {
		return media.AudioConfig{}, fmt.Errorf("%w: AudioSpecificConfig of %d bytes ends early", ErrShort, len(b))
	}
	if aot == 0 || aot == 31 {
		return media.AudioConfig{}, fmt.Errorf("%w: audio object type %d", ErrInvalid, aot)
	}
	if chanCfg == 0 {
		return media.AudioConfig{}, fmt.Errorf("%w: channel configuration 0 (program config element)", ErrUnsupported)
	}
	if chanCfg >= len(channelsForConfig) {
		return media.AudioConfig{}, fmt.Errorf("%w: channel configuration %d", ErrUnsupported, chanCfg)
	}
	return media.AudioConfig{
		Codec:      media.CodecAAC,
		ObjectType: signalled,
		SampleRate: rate,
		Channels:   channelsForConfig[chanCfg],
	}, nil
}

func readAOT(r *bitReader) int {
	aot := int(r.read(5))
	if aot == 31 {
		aot = 32 + int(r.read(6))
	}
	return aot
}

func readRate(r *bitReader) (int, error) {
	idx := int(r.read(4))
	if idx == 0xF {
		rate := int(r.read(24))
		if rate == 0 && !r.err {
			return 0, fmt.Errorf("%w: explicit sampling frequency 0", ErrInvalid)
		}
		return rate, nil
	}
	if idx >= len(sampleRates) {
		return 0, fmt.Errorf("%w: sampling frequency index %d", ErrInvalid, idx)
	}
	return sampleRates[idx], nil
}

// AppendASC appends the AudioSpecificConfig for cfg: object type (escaped
// if ≥ 31), sampling frequency index (or an explicit 24-bit rate when the
// rate has no index) and channel configuration, followed by a
// GASpecificConfig with all flags 0 (1024-sample frames, no core coder, no
// extension). For AAC-LC at a standard rate that is 2 bytes. A channel
// count without a channel configuration is written as configuration 0,
// which readers will expect a PCE for: callers should validate first.
func AppendASC(dst []byte, cfg media.AudioConfig) []byte {
	var w bitWriter
	w.b = dst
	aot := cfg.ObjectType
	if aot <= 0 {
		aot = 2
	}
	if aot >= 31 {
		w.write(31, 5)
		w.write(uint32(aot-32), 6)
	} else {
		w.write(uint32(aot), 5)
	}
	if idx, ok := SampleRateIndex(cfg.SampleRate); ok {
		w.write(uint32(idx), 4)
	} else {
		w.write(0xF, 4)
		w.write(uint32(cfg.SampleRate)&0xFFFFFF, 24)
	}
	cc, _ := ChannelConfig(cfg.Channels)
	w.write(uint32(cc), 4)
	w.write(0, 3) // frameLengthFlag, dependsOnCoreCoder, extensionFlag
	return w.flush()
}

// bitWriter appends big-endian bit fields to b.
type bitWriter struct {
	b    []byte
	cur  uint64
	nbit uint
}

func (w *bitWriter) write(v uint32, n uint) {
	w.cur = w.cur<<n | uint64(v)&(1<<n-1)
	w.nbit += n
	for w.nbit >= 8 {
		w.nbit -= 8
		w.b = append(w.b, byte(w.cur>>w.nbit))
	}
}

// flush pads the last byte with zero bits and returns the buffer.
func (w *bitWriter) flush() []byte {
	if w.nbit > 0 {
		w.b = append(w.b, byte(w.cur<<(8-w.nbit)))
		w.nbit = 0
	}
	return w.b
}

// Syntactic element ids of raw_data_block (14496-3 Table 4.85).
const (
	idSCE = 0
	idCPE = 1
	idLFE = 3
	idEND = 7
)

// elementsForConfig lists the elements of channelConfiguration 1..7
// (14496-3 Table 1.19).
var elementsForConfig = [8][]int{
	nil,
	{idSCE},
	{idCPE},
	{idSCE, idCPE},
	{idSCE, idCPE, idSCE},
	{idSCE, idCPE, idCPE},
	{idSCE, idCPE, idCPE, idLFE},
	{idSCE, idCPE, idCPE, idCPE, idLFE},
}

// SilentFrame returns a raw AAC-LC access unit (no ADTS header) that
// decodes to digital silence for cfg's channel layout (configurations 1..7:
// 1–6 or 8 channels). Every channel is coded as an individual channel
// stream with only long windows and max_sfb = 0, so no spectral data is
// present and the decoder outputs zeros; the block ends with ID_END and is
// byte aligned. The result does not depend on the sample rate, only on the
// channel layout, and is a few bytes long.
func SilentFrame(cfg media.AudioConfig) ([]byte, error) {
	if cfg.Codec != media.CodecAAC && cfg.Codec != media.CodecUnknown {
		return nil, fmt.Errorf("%w: silent frame for codec %s", ErrUnsupported, cfg.Codec)
	}
	if cfg.ObjectType != 2 {
		return nil, fmt.Errorf("%w: silent frame for audio object type %d, only AAC-LC (2)", ErrUnsupported, cfg.ObjectType)
	}
	cc, ok := ChannelConfig(cfg.Channels)
	if !ok {
		return nil, fmt.Errorf("%w: silent frame for %d channels", ErrUnsupported, cfg.Channels)
	}
	var w bitWriter
	w.b = make([]byte, 0, 32)
	var tags [4]uint32
	for _, el := range elementsForConfig[cc] {
		w.write(uint32(el), 3)
		w.write(tags[el], 4) // element_instance_tag
		tags[el]++
		if el == idCPE {
			w.write(0, 1) // common_window = 0: two independent streams
			silentICS(&w)
			silentICS(&w)
		} else {
			silentICS(&w)
		}
	}
	w.write(idEND, 3)
	return w.flush(), nil
}

// silentICS writes an individual_channel_stream (common_window = 0) that
// codes no spectral lines.
func silentICS(w *bitWriter) {
	w.write(100, 8) // global_gain (unused: there are no scale factor bands)
	// ics_info
	w.write(0, 1) // ics_reserved_bit
	w.write(0, 2) // window_sequence = ONLY_LONG_SEQUENCE
	w.write(0, 1) // window_shape
	w.write(0, 6) // max_sfb = 0
	w.write(0, 1) // predictor_data_present
	// section_data and scale_factor_data are empty for max_sfb = 0.
	w.write(0, 1) // pulse_data_present
	w.write(0, 1) // tns_data_present
	w.write(0, 1) // gain_control_data_present
	// spectral_data is empty.
}
