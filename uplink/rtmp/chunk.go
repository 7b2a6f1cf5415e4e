package rtmp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Message type ids (RTMP spec §5.4, §7.1).
const (
	typeSetChunkSize      = 1
	typeAbort             = 2
	typeAck               = 3
	typeUserControl       = 4
	typeWindowAckSize     = 5
	typeSetPeerBandwidth  = 6
	typeAudio             = 8
	typeVideo             = 9
	typeDataAMF3          = 15
	typeSharedObjectAMF3  = 16
	typeCommandAMF3       = 17
	typeDataAMF0          = 18
	typeSharedObjectAMF0  = 19
	typeCommandAMF0       = 20
	typeAggregate         = 22
	defaultChunkSize      = 128 // until a Set Chunk Size message says otherwise
	maxChunkStreams       = 1024
	maxMessagesInProgress = 32
	initialMessageBuffer  = 64 << 10
)

// Chunk stream ids used when sending.
const (
	csidControl     = 2 // protocol control messages (spec: must be 2)
	csidCommand     = 3 // NetConnection commands
	csidAudio       = 4
	csidStream      = 5 // NetStream commands, status and data messages
	csidVideo       = 6
	extendedTSValue = 0xFFFFFF
)

func typeName(t uint8) string {
	switch t {
	case typeSetChunkSize:
		return "set chunk size"
	case typeAbort:
		return "abort"
	case typeAck:
		return "acknowledgement"
	case typeUserControl:
		return "user control"
	case typeWindowAckSize:
		return "window acknowledgement size"
	case typeSetPeerBandwidth:
		return "set peer bandwidth"
	case typeAudio:
		return "audio"
	case typeVideo:
		return "video"
	case typeDataAMF3, typeDataAMF0:
		return "data"
	case typeSharedObjectAMF3, typeSharedObjectAMF0:
		return "shared object"
	case typeCommandAMF3, typeCommandAMF0:
		return "command"
	case typeAggregate:
		return "aggregate"
	}
	return fmt.Sprintf("type %d", t)
}

// message is one RTMP message, reassembled from its chunks.
type message struct {
	csid     uint32
	typ      uint8
	streamID uint32
	ts       uint32 // ms, wrapping
	payload  []byte
}

// chunkStream is the receive state of one chunk stream id: the header
// fields the next chunk may inherit and the message being assembled.
type chunkStream struct {
	ts       uint32 // timestamp of the current (or last) message
	delta    uint32 // timestamp delta applied by a type 3 chunk that starts a message
	length   uint32
	typ      uint8
	streamID uint32
	ext      bool   // the last type 0/1/2 header carried an extended timestamp
	extVal   uint32 // and this was its value
	active   bool   // a message is being assembled
	buf      []byte
}

// chunkReader reassembles messages from the chunk stream (spec §5.3).
//
// Decisions where the spec leaves room:
//   - A type 3 chunk that starts a new message adds the stored delta; after
//     a type 0 header the stored delta is that header's timestamp, as in
//     FFmpeg (the spec defines no delta there).
//   - Extended timestamps on type 3 chunks: the spec says they are present
//     when the last type 0/1/2 header of the chunk stream had one. Some
//     senders omit them, so the 4 bytes are consumed only if they equal
//     the stored extended value.
//   - A type 0/1/2 header on a chunk stream whose message is incomplete,
//     and a first chunk on a chunk stream that is not type 0, are errors.
//   - Message buffers grow as data arrives (no allocation from a length
//     field alone); limits bound the message size, the number of chunk
//     streams, of messages in progress and of buffered bytes.
type chunkReader struct {
	r          *bufio.Reader
	chunkSize  uint32
	maxMessage uint32
	maxPending int
	streams    map[uint32]*chunkStream
	pending    int // bytes held by incomplete messages
	inProgress int
	hdr        [11]byte
}

func newChunkReader(r *bufio.Reader, maxMessage int) *chunkReader {
	if maxMessage <= 0 || maxMessage > 1<<24 {
		maxMessage = 1 << 24
	}
	return &chunkReader{
		r:          r,
		chunkSize:  defaultChunkSize,
		maxMessage: uint32(maxMessage),
		maxPending: 2*maxMessage + 1<<20,
		streams:    make(map[uint32]*chunkStream),
	}
}

// ErrProtocol is wrapped by errors about malformed chunks and messages.
var ErrProtocol = errors.New("rtmp: protocol error")

// ErrMessageTooLarge is wrapped by the error about a message above the
// configured MaxMessageSize.
var ErrMessageTooLarge = errors.New("rtmp: message too large")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// readFull reads len(b) bytes; an EOF inside a chunk is unexpected.
func (cr *chunkReader) readFull(b []byte, what string) error {
	if _, err := io.ReadFull(cr.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading %s: %w", what, err)
	}
	return nil
}

// readMessage reads chunks until a message is complete. io.EOF is returned
// only when the connection ends cleanly between chunks.
func (cr *chunkReader) readMessage() (message, error) {
	for {
		m, done, err := cr.readChunk()
		if err != nil || done {
			return m, err
		}
	}
}

func (cr *chunkReader) readChunk() (message, bool, error) {
	b0, err := cr.r.ReadByte()
	if err != nil {
		return message{}, false, err
	}
	fmtType := b0 >> 6
	csid := uint32(b0 & 0x3F)
	switch csid {
	case 0:
		if err := cr.readFull(cr.hdr[:1], "chunk basic header"); err != nil {
			return message{}, false, err
		}
		csid = 64 + uint32(cr.hdr[0])
	case 1:
		if err := cr.readFull(cr.hdr[:2], "chunk basic header"); err != nil {
			return message{}, false, err
		}
		csid = 64 + uint32(cr.hdr[0]) + uint32(cr.hdr[1])<<8
	}
	st := cr.streams[csid]
	if st == nil {
		if fmtType != 0 {
			return message{}, false, protoErr("chunk stream %d starts with a type %d chunk header; the first chunk of a chunk stream must have a type 0 header", csid, fmtType)
		}
		if len(cr.streams) >= maxChunkStreams {
			return message{}, false, protoErr("more than %d chunk streams", maxChunkStreams)
		}
		st = &chunkStream{}
		cr.streams[csid] = st
	}
	if st.active && fmtType != 3 {
		return message{}, false, protoErr("chunk stream %d: type %d chunk header while a %d-byte message has only %d bytes", csid, fmtType, st.length, len(st.buf))
	}
	startsMessage := !st.active
	switch fmtType {
	case 0:
		h := cr.hdr[:11]
		if err := cr.readFull(h, "type 0 chunk message header"); err != nil {
			return message{}, false, err
		}
		ts := be24(h[0:])
		st.length = be24(h[3:])
		st.typ = h[6]
		st.streamID = binary.LittleEndian.Uint32(h[7:])
		if ts, err = cr.extended(st, ts); err != nil {
			return message{}, false, err
		}
		st.ts, st.delta = ts, ts
	case 1, 2:
		n := 7
		if fmtType == 2 {
			n = 3
		}
		h := cr.hdr[:n]
		if err := cr.readFull(h, fmt.Sprintf("type %d chunk message header", fmtType)); err != nil {
			return message{}, false, err
		}
		d := be24(h[0:])
		if fmtType == 1 {
			st.length = be24(h[3:])
			st.typ = h[6]
		}
		if d, err = cr.extended(st, d); err != nil {
			return message{}, false, err
		}
		st.delta = d
		st.ts += d
	case 3:
		if st.ext {
			p, err := cr.r.Peek(4)
			if err != nil {
				return message{}, false, fmt.Errorf("reading extended timestamp: %w", noEOF(err))
			}
			if binary.BigEndian.Uint32(p) == st.extVal {
				cr.r.Discard(4)
			}
		}
		if startsMessage {
			st.ts += st.delta
		}
	}
	if startsMessage {
		if st.length > cr.maxMessage {
			return message{}, false, fmt.Errorf("%w: %s message of %d bytes on chunk stream %d exceeds the limit of %d bytes",
				ErrMessageTooLarge, typeName(st.typ), st.length, csid, cr.maxMessage)
		}
		if st.length == 0 {
			return message{csid: csid, typ: st.typ, streamID: st.streamID, ts: st.ts, payload: []byte{}}, true, nil
		}
		if cr.inProgress >= maxMessagesInProgress {
			return message{}, false, protoErr("more than %d messages interleaved", maxMessagesInProgress)
		}
		st.buf = make([]byte, 0, min(st.length, initialMessageBuffer))
		st.active = true
		cr.inProgress++
	}
	n := int(min(cr.chunkSize, st.length-uint32(len(st.buf))))
	if cr.pending+n > cr.maxPending {
		return message{}, false, protoErr("incomplete messages hold more than %d bytes", cr.maxPending)
	}
	off := len(st.buf)
	st.buf = slices.Grow(st.buf, n)[:off+n]
	if err := cr.readFull(st.buf[off:], "chunk payload"); err != nil {
		return message{}, false, err
	}
	cr.pending += n
	if len(st.buf) < int(st.length) {
		return message{}, false, nil
	}
	m := message{csid: csid, typ: st.typ, streamID: st.streamID, ts: st.ts, payload: st.buf}
	st.buf, st.active = nil, false
	cr.inProgress--
	cr.pending -= len(m.payload)
	return m, true, nil
}

// extended reads the 4-byte extended timestamp when the 24-bit field is
// 0xFFFFFF and records whether type 3 chunks will carry one.
func (cr *chunkReader) extended(st *chunkStream, field uint32) (uint32, error) {
	st.ext = field == extendedTSValue
	if !st.ext {
		return field, nil
	}
	if err := cr.readFull(cr.hdr[:4], "extended timestamp"); err != nil {
		return 0, err
	}
	st.extVal = binary.BigEndian.Uint32(cr.hdr[:4])
	return st.extVal, nil
}

// abort discards the incomplete message of a chunk stream (Abort Message).
func (cr *chunkReader) abort(csid uint32) {
	st := cr.streams[csid]
	if st == nil || !st.active {
		return
	}
	cr.pending -= len(st.buf)
	cr.inProgress--
	st.buf, st.active = nil, false
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// wstream is the send state of one chunk stream id.
type wstream struct {
	valid    bool
	ts       uint32
	length   uint32
	typ      uint8
	streamID uint32
}

// chunkWriter splits messages into chunks. The first chunk of a message
// has a type 0 header, or type 1/2 when the message stream is the same
// and the timestamp moves forward (deltas are taken modulo 2^32, so the
// 32-bit wrap is a small step forward); continuation chunks have type 3
// headers, repeating the extended timestamp when the first header had
// one (spec §5.3.1.3). Type 3 headers are never used to start a message.
type chunkWriter struct {
	w         *bufio.Writer
	chunkSize uint32
	streams   map[uint32]*wstream
	hdr       []byte
}

func newChunkWriter(w *bufio.Writer) *chunkWriter {
	return &chunkWriter{w: w, chunkSize: defaultChunkSize, streams: make(map[uint32]*wstream)}
}

func appendBasicHeader(b []byte, fmtType uint8, csid uint32) []byte {
	switch {
	case csid < 64:
		return append(b, fmtType<<6|byte(csid))
	case csid < 320:
		return append(b, fmtType<<6, byte(csid-64))
	default:
		v := csid - 64
		return append(b, fmtType<<6|1, byte(v), byte(v>>8))
	}
}

func (cw *chunkWriter) writeMessage(m message) error {
	if m.csid < 2 || m.csid > 65599 {
		return fmt.Errorf("rtmp: chunk stream id %d out of range", m.csid)
	}
	if len(m.payload) > 0xFFFFFF {
		return fmt.Errorf("%w: %s message of %d bytes does not fit the 24-bit length", ErrMessageTooLarge, typeName(m.typ), len(m.payload))
	}
	st := cw.streams[m.csid]
	if st == nil {
		st = &wstream{}
		cw.streams[m.csid] = st
	}
	length := uint32(len(m.payload))
	fmtType := uint8(0)
	field := m.ts
	if st.valid && st.streamID == m.streamID && m.ts-st.ts < 1<<31 {
		field = m.ts - st.ts
		fmtType = 1
		if st.length == length && st.typ == m.typ {
			fmtType = 2
		}
	}
	ext := field >= extendedTSValue
	f24 := field
	if ext {
		f24 = extendedTSValue
	}
	h := appendBasicHeader(cw.hdr[:0], fmtType, m.csid)
	h = append(h, byte(f24>>16), byte(f24>>8), byte(f24))
	if fmtType <= 1 {
		h = append(h, byte(length>>16), byte(length>>8), byte(length), m.typ)
	}
	if fmtType == 0 {
		h = binary.LittleEndian.AppendUint32(h, m.streamID)
	}
	if ext {
		h = binary.BigEndian.AppendUint32(h, field)
	}
	*st = wstream{valid: true, ts: m.ts, length: length, typ: m.typ, streamID: m.streamID}
	p := m.payload
	n := min(uint32(len(p)), cw.chunkSize)
	h = append(h, p[:n]...)
	p = p[n:]
	if _, err := cw.w.Write(h); err != nil {
		cw.hdr = h[:0]
		return err
	}
	for len(p) > 0 {
		h = appendBasicHeader(h[:0], 3, m.csid)
		if ext {
			h = binary.BigEndian.AppendUint32(h, field)
		}
		if _, err := cw.w.Write(h); err != nil {
			return err
		}
		n := min(uint32(len(p)), cw.chunkSize)
		if _, err := cw.w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	cw.hdr = h[:0]
	return nil
}
