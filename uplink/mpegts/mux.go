// Package mpegts writes and reads MPEG-2 transport streams (ISO/IEC
// 13818-1) carrying AAC (ADTS), H.264 and private-data PES, the native
// wire format between the Tandem appliance and the switcher.
//
// The Muxer packetizes one frame at a time and hands the TS packets out at
// once, in chunks of at most seven packets (one SRT live message), so no
// frame waits for the next. The Demuxer is push based: feed it SRT
// messages or arbitrary chunks and it calls back with complete frames as
// soon as their PES is complete.
package mpegts

import (
	"errors"
	"fmt"

	"tandem/uplink/adts"
	"tandem/uplink/h264"
	"tandem/uplink/media"
)

// Errors to branch on with errors.Is.
var (
	// ErrNotTS means the input has no MPEG-TS packet structure.
	ErrNotTS = errors.New("mpegts: not an MPEG-TS stream")
	// ErrConfig means the muxer's track list or options are unusable.
	ErrConfig = errors.New("mpegts: bad muxer configuration")
	// ErrTrack means a write names a PID that is not a track of the right
	// kind, or a frame that cannot be carried.
	ErrTrack = errors.New("mpegts: bad frame for track")
)

// FormatTandem is the registration descriptor format_identifier that
// marks Tandem's private-data tracks (in-band telemetry), so that readers
// can tell them from other private data (DVB AC-3, subtitles...).
const FormatTandem = "TNDM"

// Track describes one elementary stream of a Muxer.
type Track struct {
	PID  uint16
	Kind media.Kind // audio, video, or 0 for a private-data track
	// Audio is required for AAC tracks: it fills the ADTS headers.
	Audio media.AudioConfig
	// Video is informative (frames carry their own SPS/PPS in band).
	Video media.VideoConfig
	// StreamType 0 derives it: 0x0F for AAC (ADTS), 0x1B for H.264, 0x06
	// for private data (Kind 0). An explicit value must agree with Kind.
	StreamType uint8
	// FormatID, if set, is written as a registration descriptor (4 ASCII
	// characters) in the PMT, e.g. FormatTandem for telemetry tracks.
	FormatID string
}

// Muxer defaults.
const (
	DefaultPMTPID      = 0x1000
	DefaultPCROffset   = 63000 // 700 ms, ffmpeg's default -muxdelay
	DefaultPSIInterval = 9000  // 100 ms
	pcrInterval        = 3600  // 40 ms
)

const mask33 = 1<<33 - 1

type muxTrack struct {
	Track
	streamID byte
	cc       byte
	adtsHdr  [7]byte // fixed part of the ADTS header, length patched per frame
}

// Muxer writes a single-program transport stream. It is not safe for
// concurrent use. The exported fields are options: change them before the
// first write.
type Muxer struct {
	// PMTPID is the PID of the program map table (default 0x1000).
	PMTPID uint16
	// ProgramNumber is the program's number in the PAT (default 1).
	ProgramNumber uint16
	// PCROffset is how far the PCR runs behind the DTS of the frame it is
	// sent with, in 90 kHz ticks (default 700 ms, like ffmpeg). It gives
	// decoders that follow the PCR their buffering time.
	PCROffset int64
	// PSIInterval bounds the PAT/PMT repetition (default 100 ms): a frame
	// whose timestamp is PSIInterval or more past that of the last PAT/PMT
	// gets new ones sent before it, as does every video keyframe.
	PSIInterval int64

	tracks  []*muxTrack
	pcr     *muxTrack
	emit    func([]byte) error
	err     error
	started bool

	psi      []byte // PAT and PMT packets, CCs patched on each use
	patCC    byte
	pmtCC    byte
	psiAt    int64
	havePSI  bool
	pcrAt    int64
	havePCR  bool
	buf      []byte   // the packets of the current write
	head     [64]byte // PES header + ADTS header or AUD
	scratch  []byte   // multi-frame payloads
	oneFrame [1]media.Frame
}

// NewMuxer returns a muxer for the given tracks that hands every chunk of
// TS packets (at most MaxMessage bytes, a whole number of packets) to emit
// as soon as it is ready: each frame is fully emitted before WriteFrame
// returns. The slice passed to emit is reused after emit returns: emit must
// copy (or send) it before returning. The PCR is carried by the first video
// track, or the first audio track if there is no video.
//
// Configuration errors (duplicate or reserved PIDs, unsupported codecs)
// are reported by every write.
func NewMuxer(tracks []Track, emit func(msg []byte) error) *Muxer {
	m := &Muxer{
		PMTPID:        DefaultPMTPID,
		ProgramNumber: 1,
		PCROffset:     DefaultPCROffset,
		PSIInterval:   DefaultPSIInterval,
		emit:          emit,
	}
	var nAudio, nVideo byte
	for _, t := range tracks {
		mt := &muxTrack{Track: t}
		switch t.Kind {
		case media.KindAudio:
			if t.StreamType == 0 {
				mt.StreamType = StreamTypeAACADTS
			}
			if mt.StreamType != StreamTypeAACADTS {
				m.setErr(fmt.Errorf("%w: audio track %#x with stream type %#x (only AAC ADTS, 0x0F)", ErrConfig, t.PID, t.StreamType))
			}
			h, err := adts.HeaderBytes(t.Audio, 1)
			if err != nil {
				m.setErr(fmt.Errorf("%w: audio track %#x: %w", ErrConfig, t.PID, err))
			}
			mt.adtsHdr = h
			mt.streamID = 0xC0 + nAudio
			nAudio++
		case media.KindVideo:
			if t.StreamType == 0 {
				mt.StreamType = StreamTypeH264
			}
			if mt.StreamType != StreamTypeH264 || (t.Video.Codec != media.CodecH264 && t.Video.Codec != media.CodecUnknown) {
				m.setErr(fmt.Errorf("%w: video track %#x: only H.264 (stream type 0x1B)", ErrConfig, t.PID))
			}
			mt.streamID = 0xE0 + nVideo
			nVideo++
			if m.pcr == nil || m.pcr.Kind != media.KindVideo {
				m.pcr = mt
			}
		case 0:
			if t.StreamType == 0 {
				mt.StreamType = StreamTypePrivate
			}
			if mt.StreamType != StreamTypePrivate {
				m.setErr(fmt.Errorf("%w: data track %#x with stream type %#x (only private data, 0x06)", ErrConfig, t.PID, t.StreamType))
			}
			mt.streamID = 0xBD // private_stream_1
		default:
			m.setErr(fmt.Errorf("%w: track %#x has kind %v", ErrConfig, t.PID, t.Kind))
		}
		if t.FormatID != "" && len(t.FormatID) != 4 {
			m.setErr(fmt.Errorf("%w: track %#x: format identifier %q is not 4 bytes", ErrConfig, t.PID, t.FormatID))
		}
		if m.pcr == nil && t.Kind == media.KindAudio {
			m.pcr = mt
		}
		m.tracks = append(m.tracks, mt)
	}
	if nAudio > 32 || nVideo > 16 {
		m.setErr(fmt.Errorf("%w: too many tracks", ErrConfig))
	}
	if m.pcr == nil && len(m.tracks) > 0 {
		m.pcr = m.tracks[0] // data only: PCR on the first track
	}
	if len(m.tracks) == 0 {
		m.setErr(fmt.Errorf("%w: no tracks", ErrConfig))
	}
	if emit == nil {
		m.setErr(fmt.Errorf("%w: nil emit function", ErrConfig))
	}
	return m
}

func (m *Muxer) setErr(err error) {
	if m.err == nil {
		m.err = err
	}
}

// start validates the options and builds the PAT and PMT packets.
func (m *Muxer) start() error {
	if m.started || m.err != nil {
		return m.err
	}
	m.started = true
	seen := map[uint16]bool{m.PMTPID: true}
	if m.PMTPID < 0x10 || m.PMTPID > 0x1FFE {
		m.setErr(fmt.Errorf("%w: PMT PID %#x outside 0x0010..0x1FFE", ErrConfig, m.PMTPID))
	}
	for _, t := range m.tracks {
		if t.PID < 0x10 || t.PID > 0x1FFE {
			m.setErr(fmt.Errorf("%w: PID %#x outside 0x0010..0x1FFE", ErrConfig, t.PID))
		}
		if seen[t.PID] {
			m.setErr(fmt.Errorf("%w: PID %#x used twice (the PMT is on %#x)", ErrConfig, t.PID, m.PMTPID))
		}
		seen[t.PID] = true
	}
	if m.PSIInterval <= 0 {
		m.PSIInterval = DefaultPSIInterval
	}
	if m.err != nil {
		return m.err
	}

	// PAT
	pat := make([]byte, 0, 32)
	pat = appendSectionHeader(pat, 0x00, 1, 0)
	pat = append(pat, byte(m.ProgramNumber>>8), byte(m.ProgramNumber), 0xE0|byte(m.PMTPID>>8), byte(m.PMTPID))
	pat = finishSection(pat, 0)
	// PMT
	pmt := make([]byte, 0, 128)
	pmt = appendSectionHeader(pmt, 0x02, m.ProgramNumber, 0)
	pmt = append(pmt, 0xE0|byte(m.pcr.PID>>8), byte(m.pcr.PID), 0xF0, 0)
	for _, t := range m.tracks {
		pmt = append(pmt, t.StreamType, 0xE0|byte(t.PID>>8), byte(t.PID))
		if t.FormatID != "" {
			pmt = append(pmt, 0xF0, 6, 0x05, 4)
			pmt = append(pmt, t.FormatID...)
		} else {
			pmt = append(pmt, 0xF0, 0)
		}
	}
	pmt = finishSection(pmt, 0)
	if len(pmt) > PacketSize-5 {
		m.setErr(fmt.Errorf("%w: PMT of %d bytes does not fit one packet", ErrConfig, len(pmt)))
		return m.err
	}
	m.psi = make([]byte, 2*PacketSize)
	sectionPacket(m.psi[:PacketSize], PIDPAT, pat)
	sectionPacket(m.psi[PacketSize:], m.PMTPID, pmt)
	return nil
}

// sectionPacket fills p with one packet holding a whole PSI section.
func sectionPacket(p []byte, pid uint16, sect []byte) {
	p[0] = syncByte
	p[1] = 0x40 | byte(pid>>8) // payload_unit_start_indicator
	p[2] = byte(pid)
	p[3] = 0x10 // payload only; CC patched on use
	p[4] = 0    // pointer_field
	n := copy(p[5:], sect)
	for i := 5 + n; i < PacketSize; i++ {
		p[i] = 0xFF
	}
}

func (m *Muxer) track(pid uint16) *muxTrack {
	for _, t := range m.tracks {
		if t.PID == pid {
			return t
		}
	}
	return nil
}

// WriteFrame packetizes one frame of the track on pid and emits it.
//
// AAC frames carry a raw access unit (no ADTS header): the header is made
// from the track's Audio config. H.264 frames carry an Annex-B access unit;
// an access unit delimiter is prepended if it does not start with one.
// Frame.Key marks video keyframes (random_access_indicator, PAT/PMT sent
// first); every audio frame is a random access point. Video frames must
// carry their DTS (equal to PTS when frames are not reordered); audio
// frames use PTS only. Timestamps are written modulo 2^33.
func (m *Muxer) WriteFrame(pid uint16, f media.Frame) error {
	m.oneFrame[0] = f
	err := m.WriteFrames(pid, m.oneFrame[:])
	m.oneFrame[0] = media.Frame{}
	return err
}

// WriteFrames writes several audio frames of one track in a single PES
// (with the first frame's PTS), as muxers do to save overhead at low
// bitrates; the frames must be consecutive on the track's timeline, since
// readers derive the later timestamps from the first. For video tracks
// each frame gets its own PES, as with WriteFrame.
func (m *Muxer) WriteFrames(pid uint16, frames []media.Frame) error {
	if err := m.start(); err != nil {
		return err
	}
	t := m.track(pid)
	if t == nil || t.Kind == 0 {
		return fmt.Errorf("%w: no audio or video track on PID %#x", ErrTrack, pid)
	}
	if len(frames) == 0 {
		return nil
	}
	m.buf = m.buf[:0]
	if t.Kind == media.KindVideo {
		for _, f := range frames {
			m.videoPES(t, f)
			if err := m.flush(); err != nil {
				return err
			}
		}
		return nil
	}
	return m.audioPES(t, frames)
}

func (m *Muxer) audioPES(t *muxTrack, frames []media.Frame) error {
	f := frames[0]
	m.before(t, f.PTS, false)
	var body []byte
	var hdr [7]byte
	extra := 0
	if len(frames) == 1 {
		hdr = t.adtsHdr
		if err := adts.PatchLength(&hdr, len(f.Data)); err != nil {
			return fmt.Errorf("%w: PID %#x: %w", ErrTrack, t.PID, err)
		}
		extra = 7
		body = f.Data
	} else {
		m.scratch = m.scratch[:0]
		for _, f := range frames {
			hdr = t.adtsHdr
			if err := adts.PatchLength(&hdr, len(f.Data)); err != nil {
				return fmt.Errorf("%w: PID %#x: %w", ErrTrack, t.PID, err)
			}
			m.scratch = append(m.scratch, hdr[:]...)
			m.scratch = append(m.scratch, f.Data...)
		}
		body = m.scratch
	}
	n := pesHeader(m.head[:0], t.streamID, f.PTS, f.PTS, extra+len(body), true)
	if n < 0 {
		return fmt.Errorf("%w: PID %#x: PES of %d bytes is too long", ErrTrack, t.PID, extra+len(body))
	}
	copy(m.head[n:], hdr[:extra])
	m.packetize(t, m.head[:n+extra], body, true, t == m.pcr, f.PTS)
	return m.flush()
}

func (m *Muxer) videoPES(t *muxTrack, f media.Frame) {
	m.before(t, f.DTS, f.Key)
	extra := 0
	if !h264.HasAUD(f.Data) {
		extra = len(h264.AUD)
	}
	n := pesHeader(m.head[:0], t.streamID, f.PTS, f.DTS, extra+len(f.Data), false)
	copy(m.head[n:], h264.AUD[:extra])
	m.packetize(t, m.head[:n+extra], f.Data, f.Key, t == m.pcr, f.DTS)
}

// WriteData writes one private-data PES (stream_id private_stream_1) with
// the given PTS on a data track (Kind 0).
func (m *Muxer) WriteData(pid uint16, pts int64, payload []byte) error {
	if err := m.start(); err != nil {
		return err
	}
	t := m.track(pid)
	if t == nil || t.Kind != 0 {
		return fmt.Errorf("%w: no data track on PID %#x", ErrTrack, pid)
	}
	m.buf = m.buf[:0]
	m.before(t, pts, false)
	n := pesHeader(m.head[:0], t.streamID, pts, pts, len(payload), true)
	if n < 0 {
		return fmt.Errorf("%w: PID %#x: data of %d bytes does not fit one PES", ErrTrack, pid, len(payload))
	}
	m.packetize(t, m.head[:n], payload, false, t == m.pcr, pts)
	return m.flush()
}

// before writes what has to precede a PES at time ts: PAT/PMT when due,
// and a PCR-only packet when the PCR track has been quiet for 40 ms (or
// has not started yet).
func (m *Muxer) before(t *muxTrack, ts int64, key bool) {
	if !m.havePSI || key || ts-m.psiAt >= m.PSIInterval || ts < m.psiAt {
		m.havePSI = true
		m.psiAt = ts
		m.psi[3] = 0x10 | m.patCC
		m.psi[PacketSize+3] = 0x10 | m.pmtCC
		m.patCC = (m.patCC + 1) & 0xF
		m.pmtCC = (m.pmtCC + 1) & 0xF
		m.buf = append(m.buf, m.psi...)
	}
	if dt := ts - m.pcrAt; t != m.pcr && (!m.havePCR || dt >= pcrInterval || dt < -media.ClockRate) {
		m.havePCR = true
		m.pcrAt = ts
		p := m.grow()
		p[0] = syncByte
		p[1] = byte(m.pcr.PID >> 8)
		p[2] = byte(m.pcr.PID)
		p[3] = 0x20 | m.pcr.cc // adaptation field only: CC not incremented
		p[4] = 183
		p[5] = 0x10
		putPCR(p[6:], ts-m.PCROffset)
		for i := 12; i < PacketSize; i++ {
			p[i] = 0xFF
		}
	}
}

// grow appends one packet to buf and returns it.
func (m *Muxer) grow() []byte {
	n := len(m.buf)
	if cap(m.buf)-n < PacketSize {
		nb := make([]byte, n, 2*cap(m.buf)+8*PacketSize)
		copy(nb, m.buf)
		m.buf = nb
	}
	m.buf = m.buf[:n+PacketSize]
	return m.buf[n:]
}

// pesHeader appends a PES header with PTS (and DTS when it differs) to dst
// and returns its length, or -1 if a bounded PES cannot hold payloadLen
// bytes. Unbounded (video) PES get length 0 only when too long to state.
func pesHeader(dst []byte, streamID byte, pts, dts int64, payloadLen int, bounded bool) int {
	hdrData := 5
	flags := byte(0x80)
	if dts != pts {
		hdrData = 10
		flags = 0xC0
	}
	l := 3 + hdrData + payloadLen
	if l > 0xFFFF {
		if bounded {
			return -1
		}
		l = 0
	}
	dst = append(dst, 0, 0, 1, streamID, byte(l>>8), byte(l),
		0x84, // '10', data_alignment_indicator
		flags, byte(hdrData))
	if flags == 0xC0 {
		dst = appendTimestamp(dst, 0x30, pts)
		dst = appendTimestamp(dst, 0x10, dts)
	} else {
		dst = appendTimestamp(dst, 0x20, pts)
	}
	return len(dst)
}

func appendTimestamp(dst []byte, prefix byte, ts int64) []byte {
	ts &= mask33
	return append(dst,
		prefix|byte(ts>>29)&0x0E|1,
		byte(ts>>22),
		byte(ts>>14)|1,
		byte(ts>>7),
		byte(ts<<1)|1)
}

func putPCR(p []byte, base int64) {
	base &= mask33
	p[0] = byte(base >> 25)
	p[1] = byte(base >> 17)
	p[2] = byte(base >> 9)
	p[3] = byte(base >> 1)
	p[4] = byte(base<<7) | 0x7E // reserved bits, extension 0
	p[5] = 0
}

// packetize appends the TS packets of one PES made of head and body.
func (m *Muxer) packetize(t *muxTrack, head, body []byte, rai, withPCR bool, ts int64) {
	if withPCR {
		if m.havePCR && ts < m.pcrAt && m.pcrAt-ts < media.ClockRate {
			withPCR = false // never step the PCR back over small jitter
		} else {
			m.havePCR = true
			m.pcrAt = ts
		}
	}
	total := len(head) + len(body)
	pos := 0
	first := true
	for pos < total {
		p := m.grow()
		p[0] = syncByte
		p[1] = byte(t.PID >> 8)
		if first {
			p[1] |= 0x40
		}
		p[2] = byte(t.PID)
		var flags byte
		af := 0 // adaptation field bytes, length byte included
		if first {
			if rai {
				flags |= 0x40
			}
			if withPCR {
				flags |= 0x10
			}
			if flags != 0 {
				af = 2
				if withPCR {
					af += 6
				}
			}
		}
		space := 184 - af
		if rem := total - pos; rem < space {
			af += space - rem
			space = rem
		}
		p[3] = 0x10 | t.cc
		t.cc = (t.cc + 1) & 0xF
		i := 4
		if af > 0 {
			p[3] |= 0x20
			p[4] = byte(af - 1)
			i = 5
			if af > 1 {
				p[5] = flags
				i = 6
				if flags&0x10 != 0 {
					putPCR(p[6:], ts-m.PCROffset)
					i = 12
				}
				for ; i < 4+af; i++ {
					p[i] = 0xFF
				}
			}
		}
		// Payload: the rest of head, then body.
		for space > 0 {
			var n int
			if pos < len(head) {
				n = copy(p[i:i+space], head[pos:])
			} else {
				n = copy(p[i:i+space], body[pos-len(head):])
			}
			i += n
			pos += n
			space -= n
		}
		first = false
	}
}

// flush hands the packets in buf to emit, seven at a time.
func (m *Muxer) flush() error {
	b := m.buf
	for len(b) > 0 {
		n := min(len(b), MaxMessage)
		if err := m.emit(b[:n]); err != nil {
			return fmt.Errorf("mpegts: emit: %w", err)
		}
		b = b[n:]
	}
	m.buf = m.buf[:0]
	return nil
}
