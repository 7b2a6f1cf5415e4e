package rtmp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func readerOf(b []byte) *chunkReader {
	return newChunkReader(bufio.NewReader(bytes.NewReader(b)), 1<<24)
}

func readAll(t *testing.T, cr *chunkReader) []message {
	t.Helper()
	var ms []message
	for {
		m, err := cr.readMessage()
		if errors.Is(err, io.EOF) {
			return ms
		}
		if err != nil {
			t.Fatalf("after %d messages: %v", len(ms), err)
		}
		ms = append(ms, m)
	}
}

func hdr0(csid byte, ts uint32, length int, typ byte, sid uint32) []byte {
	b := []byte{csid, byte(ts >> 16), byte(ts >> 8), byte(ts), byte(length >> 16), byte(length >> 8), byte(length), typ}
	return binary.LittleEndian.AppendUint32(b, sid)
}

func fill(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }

// TestChunkSpecExample1 is spec §5.3.2.1: four 32-byte audio messages on
// chunk stream 3, message stream 12345, at 1000, 1020, 1040, 1060 ms: a
// type 0 chunk, a type 2 chunk with delta 20, then two type 3 chunks.
func TestChunkSpecExample1(t *testing.T) {
	var b []byte
	b = append(b, hdr0(3, 1000, 32, 8, 12345)...)
	b = append(b, fill(32, 1)...)
	b = append(b, 0x80|3, 0, 0, 20)
	b = append(b, fill(32, 2)...)
	b = append(b, 0xC0|3)
	b = append(b, fill(32, 3)...)
	b = append(b, 0xC0|3)
	b = append(b, fill(32, 4)...)
	ms := readAll(t, readerOf(b))
	if len(ms) != 4 {
		t.Fatalf("%d messages", len(ms))
	}
	for i, m := range ms {
		if m.ts != 1000+uint32(i)*20 || m.typ != 8 || m.streamID != 12345 || m.csid != 3 || !bytes.Equal(m.payload, fill(32, byte(i+1))) {
			t.Errorf("message %d: %+v", i, m)
		}
	}
}

// TestChunkSpecExample2 is spec §5.3.2.2: a 307-byte video message split
// into chunks of 128 bytes: a type 0 chunk and two type 3 chunks.
func TestChunkSpecExample2(t *testing.T) {
	payload := make([]byte, 307)
	for i := range payload {
		payload[i] = byte(i)
	}
	var b []byte
	b = append(b, hdr0(4, 1000, 307, 9, 12346)...)
	b = append(b, payload[:128]...)
	b = append(b, 0xC0|4)
	b = append(b, payload[128:256]...)
	b = append(b, 0xC0|4)
	b = append(b, payload[256:]...)
	ms := readAll(t, readerOf(b))
	if len(ms) != 1 || ms[0].ts != 1000 || ms[0].typ != 9 || ms[0].streamID != 12346 || !bytes.Equal(ms[0].payload, payload) {
		t.Fatalf("%+v", ms)
	}
	// The writer produces exactly these bytes.
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	cw := newChunkWriter(bw)
	if err := cw.writeMessage(message{csid: 4, typ: 9, streamID: 12346, ts: 1000, payload: payload}); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	if !bytes.Equal(out.Bytes(), b) {
		t.Errorf("writer bytes differ:\n got % x\nwant % x", out.Bytes()[:24], b[:24])
	}
}

// extMessage is a 300-byte message at an extended timestamp, in chunks of
// 128, with or without the extended timestamp repeated on the type 3 chunks.
func extMessage(ts uint32, repeat bool) []byte {
	var b []byte
	b = append(b, hdr0(6, 0xFFFFFF, 300, 9, 1)...)
	b = binary.BigEndian.AppendUint32(b, ts)
	b = append(b, fill(128, 0xAA)...)
	for _, n := range []int{128, 44} {
		b = append(b, 0xC0|6)
		if repeat {
			b = binary.BigEndian.AppendUint32(b, ts)
		}
		b = append(b, fill(n, 0xAA)...)
	}
	return b
}

// TestChunkExtendedTimestamp: type 3 chunks carry the extended timestamp
// when the stream's last type 0/1/2 header had one (spec §5.3.1.3); the
// writer does so, and the reader also accepts senders that omit it.
func TestChunkExtendedTimestamp(t *testing.T) {
	const ts = 0x12345678
	for _, repeat := range []bool{true, false} {
		b := extMessage(ts, repeat)
		ms := readAll(t, readerOf(b))
		if len(ms) != 1 || ms[0].ts != ts || !bytes.Equal(ms[0].payload, fill(300, 0xAA)) {
			t.Fatalf("repeat=%v: %d messages, ts %#x", repeat, len(ms), ms[0].ts)
		}
		if repeat {
			var out bytes.Buffer
			bw := bufio.NewWriter(&out)
			cw := newChunkWriter(bw)
			cw.writeMessage(message{csid: 6, typ: 9, streamID: 1, ts: ts, payload: fill(300, 0xAA)})
			bw.Flush()
			if !bytes.Equal(out.Bytes(), b) {
				t.Errorf("writer bytes differ from the spec layout")
			}
		}
	}
	// A type 3 chunk starting a new message after a type 1 header with an
	// extended delta: the delta is applied again, its 4 bytes present.
	var b []byte
	b = append(b, hdr0(5, 100, 4, 8, 1)...)
	b = append(b, 1, 2, 3, 4)
	b = append(b, 0x40|5, 0xFF, 0xFF, 0xFF, 0, 0, 4, 8)
	b = binary.BigEndian.AppendUint32(b, 0x01000000)
	b = append(b, 5, 6, 7, 8)
	b = append(b, 0xC0|5)
	b = binary.BigEndian.AppendUint32(b, 0x01000000)
	b = append(b, 9, 10, 11, 12)
	ms := readAll(t, readerOf(b))
	want := []uint32{100, 100 + 0x01000000, 100 + 2*0x01000000}
	if len(ms) != 3 {
		t.Fatalf("%d messages", len(ms))
	}
	for i, m := range ms {
		if m.ts != want[i] {
			t.Errorf("message %d at %#x, want %#x", i, m.ts, want[i])
		}
	}
}

// TestChunkBasicHeaders: chunk stream ids in the 1-, 2- and 3-byte forms.
func TestChunkBasicHeaders(t *testing.T) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	cw := newChunkWriter(bw)
	ids := []uint32{2, 63, 64, 319, 320, 1000, 65599}
	for i, id := range ids {
		if err := cw.writeMessage(message{csid: id, typ: 20, ts: uint32(i), payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.writeMessage(message{csid: 65600, typ: 20}); err == nil {
		t.Error("csid 65600 accepted")
	}
	bw.Flush()
	ms := readAll(t, readerOf(out.Bytes()))
	for i, m := range ms {
		if m.csid != ids[i] || m.payload[0] != byte(i) {
			t.Errorf("message %d on csid %d, want %d", i, m.csid, ids[i])
		}
	}
	// The encodings themselves (spec §5.3.1.1).
	for _, c := range []struct {
		id   uint32
		want []byte
	}{{3, []byte{0x03}}, {64, []byte{0x00, 0x00}}, {319, []byte{0x00, 0xFF}}, {320, []byte{0x01, 0x00, 0x01}}, {65599, []byte{0x01, 0xFF, 0xFF}}} {
		if got := appendBasicHeader(nil, 0, c.id); !bytes.Equal(got, c.want) {
			t.Errorf("basic header for %d: % x, want % x", c.id, got, c.want)
		}
	}
}

// TestChunkRoundTrip writes random interleavings of messages (random sizes,
// chunk streams, timestamps going forward, backward, across 0xFFFFFF and
// across the 32-bit wrap) and reads them back.
func TestChunkRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 10; round++ {
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		cw := newChunkWriter(bw)
		size := uint32(1 + rng.IntN(5000))
		cw.chunkSize = size
		var msgs []message
		ts := map[uint32]uint32{}
		for i := 0; i < 200; i++ {
			csid := []uint32{3, 4, 6, 70, 400}[rng.IntN(5)]
			switch rng.IntN(6) {
			case 0:
				ts[csid] += 0xFFFFFF + uint32(rng.IntN(10))
			case 1:
				ts[csid] -= uint32(rng.IntN(100)) // backwards: type 0 header
			default:
				ts[csid] += uint32(rng.IntN(50))
			}
			m := message{csid: csid, typ: byte(8 + rng.IntN(2)), streamID: uint32(rng.IntN(2)), ts: ts[csid],
				payload: rawAU(rng, rng.IntN(6000))}
			msgs = append(msgs, m)
			if err := cw.writeMessage(m); err != nil {
				t.Fatal(err)
			}
		}
		bw.Flush()
		cr := readerOf(out.Bytes())
		cr.chunkSize = size
		got := readAll(t, cr)
		if len(got) != len(msgs) {
			t.Fatalf("round %d: %d messages, want %d", round, len(got), len(msgs))
		}
		for i := range msgs {
			a, b := msgs[i], got[i]
			if a.csid != b.csid || a.typ != b.typ || a.streamID != b.streamID || a.ts != b.ts || !bytes.Equal(a.payload, b.payload) {
				t.Fatalf("round %d message %d: got csid %d ts %#x len %d, want csid %d ts %#x len %d",
					round, i, b.csid, b.ts, len(b.payload), a.csid, a.ts, len(a.payload))
			}
		}
	}
}

func TestChunkErrors(t *testing.T) {
	long := hdr0(6, 0, 0xFFFFFF, 9, 1)
	cases := []struct {
		name string
		b    []byte
		max  int
		want string
		is   error
	}{
		{"first chunk type 1", []byte{0x40 | 5, 0, 0, 1, 0, 0, 4, 8}, 0, "must have a type 0 header", ErrProtocol},
		{"first chunk type 3", []byte{0xC0 | 9, 1, 2}, 0, "chunk stream 9 starts with a type 3", ErrProtocol},
		{"truncated header", hdr0(3, 0, 10, 20, 0)[:7], 0, "type 0 chunk message header", io.ErrUnexpectedEOF},
		{"truncated basic header", []byte{0x00}, 0, "basic header", io.ErrUnexpectedEOF},
		{"truncated payload", append(hdr0(3, 0, 10, 20, 0), 1, 2), 0, "chunk payload", io.ErrUnexpectedEOF},
		{"truncated extended timestamp", append(hdr0(3, 0xFFFFFF, 10, 20, 0), 1), 0, "extended timestamp", io.ErrUnexpectedEOF},
		{"16 MiB message over a 1 MiB limit", long, 1 << 20, "video message of 16777215 bytes on chunk stream 6 exceeds the limit of 1048576 bytes", ErrMessageTooLarge},
		{"new header mid-message", append(append(hdr0(3, 0, 200, 20, 0), fill(128, 1)...), hdr0(3, 0, 5, 20, 0)...), 0, "while a 200-byte message has only 128 bytes", ErrProtocol},
	}
	for _, c := range cases {
		cr := readerOf(c.b)
		if c.max > 0 {
			cr = newChunkReader(bufio.NewReader(bytes.NewReader(c.b)), c.max)
		}
		_, err := cr.readMessage()
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, c.is) {
			t.Errorf("%s: %v, want %q (%v)", c.name, err, c.want, c.is)
		}
	}
	// Too many chunk streams, too many interleaved messages.
	var b []byte
	for id := 0; id < maxChunkStreams+1; id++ {
		v := id + 10
		b = append(b, 1, byte(v-64), byte((v-64)>>8))
		b = append(b, hdr0(0, 0, 1, 8, 1)[1:]...)
		b = append(b, 0)
	}
	if _, err := readAllErr(readerOf(b)); err == nil || !strings.Contains(err.Error(), "more than 1024 chunk streams") {
		t.Errorf("chunk stream flood: %v", err)
	}
	b = nil
	for id := 0; id < maxMessagesInProgress+1; id++ {
		b = append(b, hdr0(byte(10+id), 0, 1000, 8, 1)...)
		b = append(b, fill(128, 0)...)
	}
	if _, err := readAllErr(readerOf(b)); err == nil || !strings.Contains(err.Error(), "interleaved") {
		t.Errorf("interleaving flood: %v", err)
	}
	// Abort discards a partial message.
	cr := readerOf(append(append(hdr0(3, 0, 200, 20, 0), fill(128, 1)...), hdr0(4, 0, 1, 8, 0)...))
	cr.readChunk()
	cr.abort(3)
	if cr.inProgress != 0 || cr.pending != 0 || cr.streams[3].active {
		t.Errorf("abort left state: %d in progress, %d pending", cr.inProgress, cr.pending)
	}
}

func readAllErr(cr *chunkReader) ([]message, error) {
	var ms []message
	for {
		m, err := cr.readMessage()
		if err != nil {
			return ms, err
		}
		ms = append(ms, m)
	}
}

// TestChunkNoAllocationFromLength: a header announcing 16 MiB allocates
// only as data arrives.
func TestChunkNoAllocationFromLength(t *testing.T) {
	b := hdr0(6, 0, 0xFFFFFF, 9, 1)
	b = append(b, fill(128, 1)...)
	allocs := testing.AllocsPerRun(10, func() {
		cr := readerOf(b)
		cr.readChunk()
		if st := cr.streams[6]; cap(st.buf) > initialMessageBuffer {
			t.Fatalf("buffer of %d bytes for 128 received", cap(st.buf))
		}
	})
	_ = allocs
}
