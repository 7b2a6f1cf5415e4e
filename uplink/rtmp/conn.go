package rtmp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"tandem/uplink/rtmp/amf0"
)

// User control event types (spec §7.1.7).
const (
	eventStreamBegin     = 0
	eventStreamEOF       = 1
	eventStreamDry       = 2
	eventSetBufferLength = 3
	eventStreamRecorded  = 4
	eventPingRequest     = 6
	eventPingResponse    = 7
)

// defaultWindow is the acknowledgement window announced to peers, and the
// one used for acknowledging a peer that announced none.
const defaultWindow = 2_500_000

// countingReader counts the bytes read from the connection (for
// acknowledgements), remembers when it last read something, and, once
// idle is set, gives every read a deadline of idle from now.
type countingReader struct {
	c        net.Conn
	n        uint64
	idle     time.Duration
	lastRead atomic.Int64 // unix nanoseconds
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.idle > 0 {
		r.c.SetReadDeadline(time.Now().Add(r.idle))
	}
	n, err := r.c.Read(p)
	if n > 0 {
		r.n += uint64(n)
		r.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

// conn is one RTMP connection after the handshake, either end. Reading is
// done by one goroutine; writing is safe from any goroutine.
type conn struct {
	nc  net.Conn
	cnt *countingReader
	br  *bufio.Reader
	cr  *chunkReader
	log *slog.Logger

	// Reader-goroutine state.
	ackWindow uint32 // acknowledge every ackWindow bytes received
	lastAck   uint64
	peerBW    uint32
	acksIn    int    // acknowledgements received
	lastAckIn uint32 // and the last one's sequence number

	wmu          sync.Mutex
	bw           *bufio.Writer
	cw           *chunkWriter
	writeTimeout time.Duration
	sentWindow   uint32 // last Window Acknowledgement Size sent
	werr         error  // sticky write error
}

func newConn(nc net.Conn, maxMessage int, log *slog.Logger) *conn {
	cnt := &countingReader{c: nc}
	cnt.lastRead.Store(time.Now().UnixNano())
	br := bufio.NewReaderSize(cnt, 64<<10)
	bw := bufio.NewWriterSize(nc, 64<<10)
	return &conn{
		nc:        nc,
		cnt:       cnt,
		br:        br,
		cr:        newChunkReader(br, maxMessage),
		log:       log,
		ackWindow: defaultWindow,
		bw:        bw,
		cw:        newChunkWriter(bw),
	}
}

// readMessage returns the next message that is not a protocol control or
// user control message; those are handled here (chunk size, abort,
// window, peer bandwidth, ping) and acknowledgements are sent as the
// window requires.
func (c *conn) readMessage() (message, error) {
	for {
		m, err := c.cr.readMessage()
		if err != nil {
			return m, err
		}
		if err := c.maybeAck(); err != nil {
			return m, err
		}
		switch m.typ {
		case typeSetChunkSize:
			v, err := u32(m, "set chunk size")
			if err != nil {
				return m, err
			}
			if v&0x80000000 != 0 || v == 0 {
				return m, protoErr("set chunk size to %d (must be 1 to 2147483647)", int64(v))
			}
			c.cr.chunkSize = v
		case typeAbort:
			v, err := u32(m, "abort")
			if err != nil {
				return m, err
			}
			c.cr.abort(v)
		case typeAck:
			v, err := u32(m, "acknowledgement")
			if err != nil {
				return m, err
			}
			c.acksIn++
			c.lastAckIn = v
		case typeWindowAckSize:
			v, err := u32(m, "window acknowledgement size")
			if err != nil {
				return m, err
			}
			if v > 0 {
				c.ackWindow = v
			}
		case typeSetPeerBandwidth:
			v, err := u32(m, "set peer bandwidth")
			if err != nil {
				return m, err
			}
			c.peerBW = v
			// §5.4.5: answer with a Window Acknowledgement Size if it differs
			// from the last one sent.
			if err := c.sendWindowIfChanged(v); err != nil {
				return m, err
			}
		case typeUserControl:
			if err := c.userControl(m); err != nil {
				return m, err
			}
		default:
			return m, nil
		}
	}
}

func u32(m message, what string) (uint32, error) {
	if len(m.payload) < 4 {
		return 0, protoErr("%s message of %d bytes, needs 4", what, len(m.payload))
	}
	return binary.BigEndian.Uint32(m.payload), nil
}

func (c *conn) maybeAck() error {
	if c.ackWindow == 0 || c.cnt.n-c.lastAck < uint64(c.ackWindow) {
		return nil
	}
	c.lastAck = c.cnt.n
	return c.write(controlMsg(typeAck, binary.BigEndian.AppendUint32(nil, uint32(c.cnt.n))))
}

func (c *conn) userControl(m message) error {
	if len(m.payload) < 2 {
		return protoErr("user control message of %d bytes", len(m.payload))
	}
	ev := binary.BigEndian.Uint16(m.payload)
	if ev == eventPingRequest {
		if len(m.payload) < 6 {
			return protoErr("ping request of %d bytes, needs 6", len(m.payload))
		}
		return c.write(userControlMsg(eventPingResponse, m.payload[2:6]))
	}
	return nil
}

func (c *conn) sendWindowIfChanged(v uint32) error {
	c.wmu.Lock()
	same := c.sentWindow == v
	c.wmu.Unlock()
	if same {
		return nil
	}
	return c.write(controlMsg(typeWindowAckSize, binary.BigEndian.AppendUint32(nil, v)))
}

// ErrWrite is wrapped by errors writing to the connection (a peer that
// stopped reading runs into the write timeout).
var ErrWrite = errors.New("rtmp: write failed")

// write sends messages and flushes. A write error is sticky.
func (c *conn) write(msgs ...message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(msgs...)
}

func (c *conn) writeLocked(msgs ...message) error {
	if c.werr != nil {
		return c.werr
	}
	if c.writeTimeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	for _, m := range msgs {
		if m.typ == typeWindowAckSize && len(m.payload) >= 4 {
			c.sentWindow = binary.BigEndian.Uint32(m.payload)
		}
		if err := c.cw.writeMessage(m); err != nil {
			c.werr = fmt.Errorf("%w: %s message: %w", ErrWrite, typeName(m.typ), err)
			return c.werr
		}
		if m.typ == typeSetChunkSize {
			c.cw.chunkSize = binary.BigEndian.Uint32(m.payload)
		}
	}
	if err := c.bw.Flush(); err != nil {
		c.werr = fmt.Errorf("%w: %w", ErrWrite, err)
		return c.werr
	}
	return nil
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(make([]byte, 0, 5), v) }

func controlMsg(typ uint8, payload []byte) message {
	return message{csid: csidControl, typ: typ, payload: payload}
}

func setChunkSizeMsg(n int) message {
	return controlMsg(typeSetChunkSize, binary.BigEndian.AppendUint32(nil, uint32(n)&0x7FFFFFFF))
}

func userControlMsg(event uint16, data []byte) message {
	p := binary.BigEndian.AppendUint16(nil, event)
	return controlMsg(typeUserControl, append(p, data...))
}

func streamBeginMsg(streamID uint32) message {
	return userControlMsg(eventStreamBegin, binary.BigEndian.AppendUint32(nil, streamID))
}

// commandMsg builds an AMF0 command message.
func commandMsg(csid, streamID uint32, vals ...any) message {
	p, err := amf0.Encode(vals...)
	if err != nil {
		panic(fmt.Sprintf("rtmp: encoding command: %v", err)) // only fixed value types are passed
	}
	return message{csid: csid, typ: typeCommandAMF0, streamID: streamID, payload: p}
}

// dataMsg builds an AMF0 data message.
func dataMsg(streamID uint32, vals ...any) message {
	p, err := amf0.Encode(vals...)
	if err != nil {
		panic(fmt.Sprintf("rtmp: encoding data: %v", err))
	}
	return message{csid: csidStream, typ: typeDataAMF0, streamID: streamID, payload: p}
}

// status builds an onStatus info object.
func status(level, code, description string) amf0.Object {
	return amf0.Object{
		{Key: "level", Value: level},
		{Key: "code", Value: code},
		{Key: "description", Value: description},
	}
}

func onStatusMsg(streamID uint32, level, code, description string) message {
	return commandMsg(csidStream, streamID, "onStatus", 0.0, nil, status(level, code, description))
}

// decodeCommand splits a command message into name, transaction id and
// arguments; a missing transaction id reads as 0. AMF3 command messages
// (type 17) start with a format byte 0 and otherwise carry AMF0 here.
func decodeCommand(m message) (name string, txn float64, args []any, err error) {
	p := m.payload
	if m.typ == typeCommandAMF3 && len(p) > 0 && p[0] == 0 {
		p = p[1:]
	}
	vals, err := amf0.DecodeAll(p)
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w: command message: %w", ErrProtocol, err)
	}
	if len(vals) == 0 {
		return "", 0, nil, protoErr("empty command message")
	}
	name, ok := vals[0].(string)
	if !ok {
		return "", 0, nil, protoErr("command name is %T, not a string", vals[0])
	}
	if len(vals) < 2 {
		return name, 0, nil, nil // FFmpeg's server sends a bare "onFCPublish"
	}
	txn, ok = vals[1].(float64)
	if !ok {
		return "", 0, nil, protoErr("command %q: transaction id is %T, not a number", name, vals[1])
	}
	return name, txn, vals[2:], nil
}

// infoObject returns the first object among args (the info object of a
// status or result), if any.
func infoObject(args []any) amf0.Object {
	for _, a := range args {
		if o, ok := a.(amf0.Object); ok {
			return o
		}
	}
	return nil
}
