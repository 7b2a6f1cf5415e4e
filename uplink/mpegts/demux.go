package mpegts

import (
	"bytes"
	"errors"
	"fmt"

	"tandem/uplink/adts"
	"tandem/uplink/h264"
	"tandem/uplink/media"
)

// TrackInfo describes an elementary stream found by a Demuxer.
type TrackInfo struct {
	PID        uint16
	Kind       media.Kind // audio, video, or 0 for private data
	StreamType uint8
	// Audio is taken from the track's latest ADTS header, Video from its
	// latest SPS/PPS. Both are zero for private-data tracks.
	Audio media.AudioConfig
	Video media.VideoConfig
	// FormatID is the format_identifier of the stream's registration
	// descriptor in the PMT (4 characters), empty if it has none.
	FormatID string
}

// Handler receives what a Demuxer finds. Nil functions are skipped. The
// callbacks run inside Feed (or Flush) on the caller's goroutine.
type Handler struct {
	// OnTrack is called when a track's configuration becomes known, and
	// again whenever it changes (sample rate, resolution, new SPS/PPS...).
	// Audio and video tracks are announced before their first frame;
	// private-data tracks when the PMT lists them.
	OnTrack func(t TrackInfo)
	// OnFrame receives AAC frames (Data is a raw access unit, one frame
	// per ADTS frame of the PES) and H.264 access units (Annex-B). The
	// frame belongs to the receiver: the Demuxer never touches it again.
	// Video access units that come before the track's first SPS are not
	// delivered (nothing could decode them).
	OnFrame func(pid uint16, f media.Frame)
	// OnData receives the payload of a private-data PES (stream type 0x06)
	// and its PTS (-1 if the PES has none). The payload belongs to the
	// receiver.
	OnData func(pid uint16, pts int64, payload []byte)
}

// DemuxStats counts what a Demuxer saw and what went wrong.
type DemuxStats struct {
	Packets      int64 // TS packets processed
	CCErrors     int64 // continuity counter gaps (lost packets)
	CRCErrors    int64 // PAT/PMT sections with a bad CRC (ignored)
	Resyncs      int64 // times packet sync was lost
	DroppedPES   int64 // PES packets dropped: broken by a CC gap, truncated, malformed
	SkippedBytes int64 // bytes discarded while searching for sync
}

// Sync limits: a stream that never synced gives ErrNotTS once it has
// discarded a packet's worth of bytes; a stream that lost sync, after
// maxResyncRun bytes without regaining it.
const (
	maxInitialSkip = PacketSize
	maxResyncRun   = 64 << 10
	maxSection     = 1024 + 3
	// maxPES bounds the memory one PES may take (a huge intra frame).
	maxPES = 16 << 20
)

type pidKind uint8

const (
	kindPAT pidKind = iota + 1
	kindPMT
	kindAAC
	kindH264
	kindData
)

type pidState struct {
	pid  uint16
	kind pidKind
	cc   int8 // last continuity counter, -1 unknown

	// PSI section assembly
	sect   []byte
	sectOn bool
	last   []byte // last accepted section, to skip re-parsing repeats

	// PES assembly
	info      TrackInfo
	announced bool
	buf       []byte
	active    bool
	broken    bool
	want      int // total PES size, 0 = unbounded, -1 = header not seen

	// AAC frames split across PES packets
	carry     []byte
	carryTime aacTime
	next      aacTime // timing after the last frame, for PES without PTS
}

// aacTime places frame idx of a PES whose first frame had timestamp base,
// that frame being k0 on the sample timeline.
type aacTime struct {
	ok   bool
	base int64
	k0   int64
	idx  int64
	cfg  media.AudioConfig
}

func (a aacTime) pts() int64 {
	return (a.base + a.cfg.FramePTS(a.k0+a.idx) - a.cfg.FramePTS(a.k0)) & mask33
}

// Demuxer reads a transport stream pushed into it by Feed and calls its
// Handler with tracks, frames and private data. It follows the first
// program of the PAT and handles AAC (ADTS, 0x0F), H.264 (0x1B) and
// private-data (0x06) streams; other streams are ignored. It is not safe
// for concurrent use; Stats must be called from the goroutine calling Feed.
type Demuxer struct {
	h     Handler
	stats DemuxStats

	synced     bool
	everSynced bool
	part       [PacketSize]byte // partial packet between Feeds
	npart      int
	scan       []byte // input kept while searching for sync
	skipRun    int    // bytes skipped since sync was lost
	seen       []byte // the first skipped bytes, for the error message

	pids   []*pidState
	cache  *pidState
	pmtPID int // -1 until the PAT names one
	prog   uint16
}

// NewDemuxer returns a Demuxer that reports to h.
func NewDemuxer(h Handler) *Demuxer {
	d := &Demuxer{h: h, pmtPID: -1}
	d.pids = append(d.pids, &pidState{pid: PIDPAT, kind: kindPAT, cc: -1})
	return d
}

// Stats returns the counters so far.
func (d *Demuxer) Stats() DemuxStats { return d.stats }

// Feed pushes the next bytes of the stream: whole SRT messages or chunks
// of any size; packets split across calls are reassembled. Frames are
// delivered as soon as their PES is complete: a PES with a stated length
// when its last byte arrives, an unbounded one (video) when the next PES
// of its PID starts, or on Flush.
//
// Feed returns an error wrapping ErrNotTS, naming what the bytes look
// like, when the input shows no TS packet structure: at the start, a
// packet's worth of bytes without sync; later, 64 KiB without regaining
// sync. Other damage (lost packets, bad CRCs, malformed PES) is counted in
// Stats and skipped.
func (d *Demuxer) Feed(b []byte) error {
	for len(b) > 0 {
		if !d.synced {
			var err error
			b, err = d.resync(b)
			if err != nil {
				return err
			}
			continue
		}
		if d.npart > 0 {
			n := copy(d.part[d.npart:], b)
			d.npart += n
			b = b[n:]
			if d.npart < PacketSize {
				return nil
			}
			d.npart = 0
			d.packet(d.part[:])
			continue
		}
		for len(b) >= PacketSize && b[0] == syncByte {
			d.packet(b[:PacketSize])
			b = b[PacketSize:]
		}
		if len(b) == 0 {
			break
		}
		if b[0] != syncByte {
			d.synced = false
			d.stats.Resyncs++
			continue
		}
		d.npart = copy(d.part[:], b)
		b = nil
	}
	return nil
}

// resync looks for three packet starts in a row (0x47 every 188 bytes).
// It keeps the input it cannot decide on yet and returns the rest of the
// input from the first confirmed packet on, or nil.
func (d *Demuxer) resync(b []byte) ([]byte, error) {
	if d.npart > 0 { // a partial packet held when sync was lost
		d.scan = append(d.scan, d.part[:d.npart]...)
		d.npart = 0
	}
	d.scan = append(d.scan, b...)
	s := d.scan
	pos := 0
	var err error
	for pos < len(s) && err == nil {
		i := bytes.IndexByte(s[pos:], syncByte)
		if i < 0 {
			i = len(s) - pos
		}
		if i > 0 {
			err = d.skipped(s[pos : pos+i])
			pos += i
			continue
		}
		r := s[pos:]
		if len(r) <= 2*PacketSize && (len(r) <= PacketSize || r[PacketSize] == syncByte) {
			break // cannot confirm yet: wait for more input
		}
		if r[PacketSize] != syncByte || r[2*PacketSize] != syncByte {
			err = d.skipped(r[:1])
			pos++
			continue
		}
		d.synced = true
		d.everSynced = true
		d.skipRun = 0
		d.seen = d.seen[:0]
		// r aliases scan's array; Feed consumes it before scan is
		// appended to again (and append then copies with memmove).
		d.scan = d.scan[:0]
		return r, nil
	}
	d.scan = d.scan[:copy(d.scan, s[pos:])]
	return nil, err
}

// skipped accounts for bytes discarded while searching for sync and
// returns ErrNotTS once too many were.
func (d *Demuxer) skipped(b []byte) error {
	if len(d.seen) < 24 {
		d.seen = append(d.seen, b[:min(len(b), 24-len(d.seen))]...)
	}
	d.stats.SkippedBytes += int64(len(b))
	d.skipRun += len(b)
	limit := maxResyncRun
	if !d.everSynced {
		limit = maxInitialSkip
	}
	if d.skipRun < limit {
		return nil
	}
	run := d.skipRun
	d.skipRun = 0
	what := describe(d.seen)
	d.seen = d.seen[:0]
	if d.everSynced {
		return fmt.Errorf("%w: lost packet sync and no 0x47 sync byte every 188 bytes in the next %d bytes, which start with %s",
			ErrNotTS, run, what)
	}
	return fmt.Errorf("%w: no 0x47 sync byte every 188 bytes in the first %d bytes, which start with %s", ErrNotTS, run, what)
}

// Flush delivers a pending unbounded PES (the last video frame at the end
// of a stream) and reports an input that never showed a TS packet with an
// error wrapping ErrNotTS. It does not reset the Demuxer.
func (d *Demuxer) Flush() error {
	if !d.synced && len(d.scan) >= PacketSize && d.scan[0] == syncByte &&
		(len(d.scan) <= PacketSize || d.scan[PacketSize] == syncByte) {
		// Too short to confirm three packets: take what looks like TS.
		d.synced, d.everSynced = true, true
		rest := d.scan
		d.scan = d.scan[:0]
		for len(rest) >= PacketSize && rest[0] == syncByte {
			d.packet(rest[:PacketSize])
			rest = rest[PacketSize:]
		}
	}
	for _, ps := range d.pids {
		if ps.active && ps.want == 0 {
			d.finish(ps)
		}
	}
	if !d.everSynced && len(d.scan)+int(d.stats.SkippedBytes) > 0 {
		seen := d.seen
		if len(seen) == 0 {
			seen = d.scan[:min(len(d.scan), 24)]
		}
		return fmt.Errorf("%w: %d bytes without packet sync, starting with %s", ErrNotTS, len(d.scan)+int(d.stats.SkippedBytes), describe(seen))
	}
	return nil
}

// describe names what a non-TS input looks like, for error messages.
func describe(b []byte) string {
	kind := ""
	switch {
	case len(b) == 0:
		return "nothing"
	case len(b) >= 2 && b[0] == 0xFF && b[1]&0xF6 == 0xF0:
		kind = "an ADTS AAC header"
	case len(b) >= 2 && b[0] == 0xFF && b[1]&0xE0 == 0xE0:
		kind = "an MPEG audio frame header"
	case bytes.HasPrefix(b, []byte("ID3")):
		kind = "an ID3 tag (MP3?)"
	case bytes.HasPrefix(b, []byte("FLV")):
		kind = "an FLV header"
	case bytes.HasPrefix(b, []byte("OggS")):
		kind = "an Ogg page"
	case bytes.HasPrefix(b, []byte("RIFF")):
		kind = "a RIFF (WAV) header"
	case len(b) >= 8 && string(b[4:8]) == "ftyp":
		kind = "an MP4 header"
	case bytes.HasPrefix(b, []byte{0, 0, 0, 1}) || bytes.HasPrefix(b, []byte{0, 0, 1}):
		kind = "an Annex-B start code (raw H.264?)"
	case len(b) >= 1 && b[0] == 3:
		kind = "an RTMP handshake?"
	case isText(b):
		kind = "text"
	}
	var s string
	if isText(b) {
		s = fmt.Sprintf("%q", b)
	} else {
		s = fmt.Sprintf("% x", b[:min(len(b), 16)])
	}
	if kind != "" {
		return s + " (" + kind + ")"
	}
	return s
}

// isText reports whether b has no control characters but tab and line
// ends (bytes ≥ 0x80 are allowed: UTF-8 text).
func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' || c == 0x7F {
			return false
		}
	}
	return true
}

func (d *Demuxer) lookup(pid uint16) *pidState {
	if c := d.cache; c != nil && c.pid == pid {
		return c
	}
	for _, ps := range d.pids {
		if ps.pid == pid {
			d.cache = ps
			return ps
		}
	}
	return nil
}

// packet handles one 188-byte packet starting with the sync byte.
func (d *Demuxer) packet(p []byte) {
	d.stats.Packets++
	pid := uint16(p[1]&0x1F)<<8 | uint16(p[2])
	ps := d.lookup(pid)
	if ps == nil {
		return
	}
	if p[1]&0x80 != 0 { // transport_error_indicator
		ps.broken = ps.active
		ps.sectOn = false
		ps.cc = -1
		return
	}
	afc := p[3] >> 4 & 3
	cc := int8(p[3] & 0xF)
	off := 4
	disc := false
	if afc&2 != 0 {
		afl := int(p[4])
		off = 5 + afl
		if off > PacketSize || (afc == 3 && off >= PacketSize) {
			ps.broken = ps.active
			return
		}
		disc = afl > 0 && p[5]&0x80 != 0
	}
	if afc&1 == 0 {
		return // no payload: the counter does not advance
	}
	if ps.cc >= 0 && !disc {
		if cc == ps.cc {
			return // a duplicate packet
		}
		if cc != (ps.cc+1)&0xF {
			d.stats.CCErrors++
			ps.broken = ps.active
			ps.carry = ps.carry[:0]
			ps.sectOn = false
		}
	}
	ps.cc = cc
	pusi := p[1]&0x40 != 0
	payload := p[off:]
	switch ps.kind {
	case kindPAT, kindPMT:
		d.psiPayload(ps, payload, pusi)
	default:
		d.pesPayload(ps, payload, pusi)
	}
}

// psiPayload assembles PSI sections.
func (d *Demuxer) psiPayload(ps *pidState, payload []byte, pusi bool) {
	if pusi {
		if len(payload) == 0 {
			return
		}
		ptr := int(payload[0])
		payload = payload[1:]
		if ptr > len(payload) {
			ps.sectOn = false
			return
		}
		if ps.sectOn {
			ps.sect = append(ps.sect, payload[:ptr]...)
			d.sections(ps)
		}
		payload = payload[ptr:]
		ps.sect = ps.sect[:0]
		ps.sectOn = true
	} else if !ps.sectOn {
		return
	}
	ps.sect = append(ps.sect, payload...)
	d.sections(ps)
}

// sections processes the complete sections at the front of ps.sect.
func (d *Demuxer) sections(ps *pidState) {
	for ps.sectOn {
		s := ps.sect
		if len(s) < 3 {
			return
		}
		if s[0] == 0xFF { // stuffing: no more sections in this unit
			ps.sectOn = false
			ps.sect = ps.sect[:0]
			return
		}
		n := 3 + (int(s[1]&0x0F)<<8 | int(s[2]))
		if n > maxSection || n < 3+5+4 {
			ps.sectOn = false
			ps.sect = ps.sect[:0]
			return
		}
		if len(s) < n {
			return
		}
		d.section(ps, s[:n])
		if !ps.sectOn { // the PID's state was replaced
			return
		}
		ps.sect = ps.sect[:copy(ps.sect, s[n:])]
	}
}

// section handles one complete PSI section.
func (d *Demuxer) section(ps *pidState, s []byte) {
	if bytes.Equal(s, ps.last) {
		return // a repeat of the table we have
	}
	if CRC32(s) != 0 {
		d.stats.CRCErrors++
		return
	}
	if s[1]&0x80 == 0 || s[5]&1 == 0 { // not long form, or not current
		return
	}
	body := s[8 : len(s)-4]
	switch {
	case ps.kind == kindPAT && s[0] == 0x00:
		ps.last = append(ps.last[:0], s...)
		for ; len(body) >= 4; body = body[4:] {
			prog := uint16(body[0])<<8 | uint16(body[1])
			if prog == 0 {
				continue // network PID
			}
			pid := int(body[2]&0x1F)<<8 | int(body[3])
			if pid != d.pmtPID || prog != d.prog {
				d.setPMT(pid, prog)
			}
			return
		}
	case ps.kind == kindPMT && s[0] == 0x02:
		if uint16(s[3])<<8|uint16(s[4]) != d.prog {
			return
		}
		ps.last = append(ps.last[:0], s...)
		d.pmt(body)
	}
}

// setPMT follows a new PMT PID: every elementary stream is forgotten
// until the new PMT lists it.
func (d *Demuxer) setPMT(pid int, prog uint16) {
	d.pmtPID = pid
	d.prog = prog
	d.pids = d.pids[:1]
	d.cache = nil
	if pid == PIDPAT {
		return
	}
	d.pids = append(d.pids, &pidState{pid: uint16(pid), kind: kindPMT, cc: -1})
}

func (d *Demuxer) pmt(body []byte) {
	if len(body) < 4 {
		return
	}
	infoLen := int(body[2]&0x0F)<<8 | int(body[3])
	if 4+infoLen > len(body) {
		return
	}
	body = body[4+infoLen:]
	keep := d.pids[:0:0]
	for _, ps := range d.pids {
		if ps.kind == kindPAT || ps.kind == kindPMT {
			keep = append(keep, ps)
		}
	}
	var announce []*pidState
	for len(body) >= 5 {
		st := body[0]
		pid := uint16(body[1]&0x1F)<<8 | uint16(body[2])
		esLen := int(body[3]&0x0F)<<8 | int(body[4])
		if 5+esLen > len(body) {
			break
		}
		desc := body[5 : 5+esLen]
		body = body[5+esLen:]
		var kind pidKind
		var mk media.Kind
		switch st {
		case StreamTypeAACADTS:
			kind, mk = kindAAC, media.KindAudio
		case StreamTypeH264:
			kind, mk = kindH264, media.KindVideo
		case StreamTypePrivate:
			kind = kindData
		default:
			continue
		}
		if pid == PIDPAT || int(pid) == d.pmtPID || pid == PIDNull {
			continue
		}
		formatID := registration(desc)
		var ps *pidState
		for _, old := range d.pids {
			if old.pid == pid && old.kind == kind && old.info.FormatID == formatID {
				ps = old
			}
		}
		if ps == nil {
			ps = &pidState{pid: pid, kind: kind, cc: -1, want: -1,
				info: TrackInfo{PID: pid, Kind: mk, StreamType: st, FormatID: formatID}}
			if kind == kindData {
				announce = append(announce, ps)
			}
		}
		dup := false
		for _, k := range keep {
			dup = dup || k.pid == pid
		}
		if !dup {
			keep = append(keep, ps)
		}
	}
	d.pids = keep
	d.cache = nil
	for _, ps := range announce {
		ps.announced = true
		if d.h.OnTrack != nil {
			d.h.OnTrack(ps.info)
		}
	}
}

// registration returns the format_identifier of a registration
// descriptor in an ES_info loop, or "".
func registration(desc []byte) string {
	for len(desc) >= 2 {
		tag, n := desc[0], int(desc[1])
		if 2+n > len(desc) {
			return ""
		}
		if tag == 0x05 && n >= 4 {
			return string(desc[2:6])
		}
		desc = desc[2+n:]
	}
	return ""
}

// pesPayload assembles PES packets.
func (d *Demuxer) pesPayload(ps *pidState, payload []byte, pusi bool) {
	if pusi {
		if ps.active {
			if ps.want == 0 {
				d.finish(ps)
			} else {
				d.stats.DroppedPES++ // a bounded PES that never completed
				ps.carry = ps.carry[:0]
			}
		}
		ps.buf = ps.buf[:0]
		ps.active = true
		ps.broken = false
		ps.want = -1
	} else if !ps.active {
		return
	}
	if len(ps.buf)+len(payload) > maxPES {
		ps.broken = true
		return
	}
	ps.buf = append(ps.buf, payload...)
	if ps.want < 0 && len(ps.buf) >= 6 {
		if ps.buf[0] != 0 || ps.buf[1] != 0 || ps.buf[2] != 1 {
			d.stats.DroppedPES++
			ps.active = false
			return
		}
		if l := int(ps.buf[4])<<8 | int(ps.buf[5]); l > 0 {
			ps.want = 6 + l
		} else {
			ps.want = 0
		}
	}
	if ps.want > 0 && len(ps.buf) >= ps.want {
		ps.buf = ps.buf[:ps.want]
		d.finish(ps)
	}
}

// finish parses and delivers a complete PES.
func (d *Demuxer) finish(ps *pidState) {
	ps.active = false
	if ps.broken {
		ps.broken = false
		ps.carry = ps.carry[:0]
		d.stats.DroppedPES++
		return
	}
	b := ps.buf
	if len(b) < 9 || b[6]&0xC0 != 0x80 {
		d.stats.DroppedPES++
		return
	}
	hl := 9 + int(b[8])
	if hl > len(b) {
		d.stats.DroppedPES++
		return
	}
	pts, dts := int64(-1), int64(-1)
	switch b[7] >> 6 {
	case 2:
		if hl < 14 {
			d.stats.DroppedPES++
			return
		}
		pts = timestamp(b[9:])
		dts = pts
	case 3:
		if hl < 19 {
			d.stats.DroppedPES++
			return
		}
		pts = timestamp(b[9:])
		dts = timestamp(b[14:])
	}
	payload := b[hl:]
	switch ps.kind {
	case kindAAC:
		d.aac(ps, pts, payload)
	case kindH264:
		d.video(ps, pts, dts, payload)
	case kindData:
		if d.h.OnData != nil {
			d.h.OnData(ps.pid, pts, bytes.Clone(payload))
		}
	}
}

func timestamp(b []byte) int64 {
	return int64(b[0]>>1&7)<<30 | int64(b[1])<<22 | int64(b[2]>>1)<<15 | int64(b[3])<<7 | int64(b[4]>>1)
}

// video delivers one H.264 access unit.
func (d *Demuxer) video(ps *pidState, pts, dts int64, payload []byte) {
	if pts < 0 {
		d.stats.DroppedPES++
		return
	}
	key := false
	var sps, pps []byte
	for nal := range h264.NALUnits(payload) {
		t := h264.NALType(nal)
		if t >= 1 && t <= 5 {
			key = t == h264.NALIDR
			break
		}
		switch t {
		case h264.NALSPS:
			if sps == nil {
				sps = nal
			}
		case h264.NALPPS:
			if pps == nil {
				pps = nal
			}
		}
	}
	v := &ps.info.Video
	if sps != nil && (!bytes.Equal(sps, v.SPS) || pps != nil && !bytes.Equal(pps, v.PPS)) {
		if cfg, err := h264.ParseSPS(sps); err == nil {
			if pps != nil {
				cfg.PPS = bytes.Clone(pps)
			} else {
				cfg.PPS = v.PPS
			}
			*v = cfg
			ps.announced = true
			if d.h.OnTrack != nil {
				d.h.OnTrack(ps.info)
			}
		}
	}
	if !ps.announced {
		return
	}
	if d.h.OnFrame != nil {
		d.h.OnFrame(ps.pid, media.Frame{Kind: media.KindVideo, PTS: pts, DTS: dts, Key: key, Data: bytes.Clone(payload)})
	}
}

// aac splits a PES payload into ADTS frames and delivers each. A frame
// that started in the previous PES (non-aligned muxers) is completed from
// the carry and timed from that PES.
func (d *Demuxer) aac(ps *pidState, pts int64, payload []byte) {
	cur := aacTime{ok: pts >= 0, base: pts}
	if !cur.ok && ps.next.ok {
		cur = ps.next // no PTS: continue the previous PES's timeline
	}
	data := payload
	carried := len(ps.carry)
	if carried > 0 {
		ps.carry = append(ps.carry, payload...)
		data = ps.carry
		if _, err := adts.ParseHeader(data); err != nil || carried+len(payload) > 2*adts.MaxFrameLength {
			// The carry was not the start of a frame after all.
			d.stats.DroppedPES++
			carried = 0
			data = payload
		}
	}
	off := 0
	if carried == 0 {
		off = findADTS(data)
		if off > 0 {
			d.stats.DroppedPES++ // leading garbage, or a lost frame's tail
		}
	}
	var out []byte // one allocation for all frames of the PES
	for off < len(data) {
		t := &cur
		if off < carried {
			t = &ps.carryTime
		}
		h, err := adts.ParseHeader(data[off:])
		if err == nil && h.FrameLength > len(data)-off || errors.Is(err, adts.ErrShort) && data[off] == 0xFF {
			// The frame continues in the next PES. (data may alias the
			// carry: copy is a memmove.)
			ps.carryTime = *t
			if t == &cur {
				cur.idx++
			}
			n := len(data) - off
			if cap(ps.carry) < n {
				ps.carry = make([]byte, 0, 2*adts.MaxFrameLength)
			}
			ps.carry = ps.carry[:copy(ps.carry[:n], data[off:])]
			ps.next = cur
			return
		}
		if err != nil {
			d.stats.DroppedPES++
			break
		}
		if !t.ok {
			off += h.FrameLength
			continue
		}
		if t.idx == 0 && t.cfg != h.Config {
			t.cfg = h.Config
			t.k0 = h.Config.FrameIndex(t.base)
		}
		if ps.info.Audio != h.Config || !ps.announced {
			ps.info.Audio = h.Config
			ps.announced = true
			if d.h.OnTrack != nil {
				d.h.OnTrack(ps.info)
			}
		}
		if out == nil {
			out = make([]byte, 0, len(data)-off)
		}
		start := len(out)
		out = append(out, data[off+h.HeaderLength:off+h.FrameLength]...)
		if d.h.OnFrame != nil {
			ts := t.pts()
			d.h.OnFrame(ps.pid, media.Frame{Kind: media.KindAudio, PTS: ts, DTS: ts, Key: true, Data: out[start:len(out):len(out)]})
		}
		t.idx++
		off += h.FrameLength
	}
	ps.carry = ps.carry[:0]
	ps.next = cur
}

// findADTS returns the offset of the first plausible ADTS frame in b: a
// header whose frame ends the buffer, runs past it, or is followed by
// another header. It returns len(b) if there is none.
func findADTS(b []byte) int {
	for off := 0; off < len(b); off++ {
		if b[off] != 0xFF {
			continue
		}
		h, err := adts.ParseHeader(b[off:])
		if err != nil {
			if errors.Is(err, adts.ErrShort) {
				return off
			}
			continue
		}
		end := off + h.FrameLength
		if end >= len(b) {
			return off
		}
		if _, err := adts.ParseHeader(b[end:]); err == nil || errors.Is(err, adts.ErrShort) {
			return off
		}
	}
	return len(b)
}
