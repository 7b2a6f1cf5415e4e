package rtmp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"tandem/uplink/flv"
	"tandem/uplink/h264"
	"tandem/uplink/media"
)

// chunkSeed is a valid chunk stream: control messages, commands, audio and
// video at extended timestamps, chunk size changes and an abort.
func chunkSeed(t testing.TB) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	cw := newChunkWriter(bw)
	msgs := []message{
		setChunkSizeMsg(200),
		commandMsg(csidCommand, 0, "connect", 1.0, map[string]any{"app": "live"}),
		{csid: csidAudio, typ: typeAudio, streamID: 1, ts: 10, payload: []byte{0xAF, 0, 0x11, 0x90}},
		{csid: csidVideo, typ: typeVideo, streamID: 1, ts: 0x1000000, payload: bytes.Repeat([]byte{0x27, 1, 0, 0, 0}, 100)},
		{csid: 70, typ: typeDataAMF0, streamID: 1, ts: 0xFFFFFFF0, payload: []byte{2, 0, 1, 'x'}},
		controlMsg(typeAbort, be32(70)),
		{csid: 400, typ: typeAggregate, streamID: 1, ts: 5, payload: make([]byte, 20)},
	}
	for _, m := range msgs {
		if err := cw.writeMessage(m); err != nil {
			t.Fatal(err)
		}
		if m.typ == typeSetChunkSize {
			cw.chunkSize = 200
		}
	}
	bw.Flush()
	return out.Bytes()
}

// FuzzChunkReader: the chunk reader never panics, never returns a message
// above its limit, keeps its accounting straight, and fails with an error
// (not a hang) on any input.
func FuzzChunkReader(f *testing.F) {
	f.Add(chunkSeed(f))
	f.Add(hdr0(6, 0xFFFFFF, 300, 9, 1))
	f.Add(extMessage(0x12345678, false))
	f.Add(extMessage(0x12345678, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 64 << 10
		cr := newChunkReader(bufio.NewReader(bytes.NewReader(b)), limit)
		for {
			m, err := cr.readMessage()
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrProtocol) || errors.Is(err, ErrMessageTooLarge) {
					return
				}
				t.Fatalf("unexpected error kind: %v", err)
			}
			if len(m.payload) > limit {
				t.Fatalf("message of %d bytes over the %d limit", len(m.payload), limit)
			}
			if cr.pending < 0 || cr.inProgress < 0 {
				t.Fatalf("accounting: %d pending, %d in progress", cr.pending, cr.inProgress)
			}
			switch m.typ { // as conn.readMessage does
			case typeSetChunkSize:
				if len(m.payload) >= 4 {
					if v := binary.BigEndian.Uint32(m.payload); v > 0 && v < 1<<31 {
						cr.chunkSize = v
					}
				}
			case typeAbort:
				if len(m.payload) >= 4 {
					cr.abort(binary.BigEndian.Uint32(m.payload))
				}
			}
		}
	})
}

// fakeConn is a net.Conn reading from a buffer and discarding writes.
type fakeConn struct {
	r io.Reader
}

func (c *fakeConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fakeConn) Close() error                       { return nil }
func (c *fakeConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{Port: 1} }
func (c *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

// checkSink fails the test on malformed deliveries.
type checkSink struct {
	t      *testing.T
	closed bool
	audio  bool
	video  bool
}

func (s *checkSink) OnAudioConfig(c media.AudioConfig) {
	if c.SampleRate <= 0 || c.Channels <= 0 {
		s.t.Fatalf("audio config %v", c)
	}
	s.audio = true
}

func (s *checkSink) OnVideoConfig(c media.VideoConfig) {
	if len(c.SPS) == 0 || len(c.PPS) == 0 {
		s.t.Fatalf("video config without parameter sets")
	}
	s.video = true
}

func (s *checkSink) OnFrame(f media.Frame) {
	if s.closed || len(f.Data) == 0 || (f.Kind == media.KindAudio && !s.audio) || (f.Kind == media.KindVideo && !s.video) {
		s.t.Fatalf("bad frame %s (closed %v)", describeFrame(f), s.closed)
	}
	if f.Kind == media.KindVideo && !bytes.HasPrefix(f.Data, []byte{0, 0, 0, 1}) {
		s.t.Fatalf("video frame not Annex-B: % x", f.Data[:min(8, len(f.Data))])
	}
}
func (s *checkSink) OnMetadata(map[string]any) {}
func (s *checkSink) OnClose(error) {
	if s.closed {
		s.t.Fatal("OnClose twice")
	}
	s.closed = true
}

// publishPrefix is a client's side of a session up to publishing, with
// sequence headers sent: handshake C0+C1+C2, connect, createStream,
// publish, then audio and video configs.
func publishPrefix(t testing.TB) []byte {
	var out bytes.Buffer
	out.WriteByte(3)
	out.Write(make([]byte, 2*handshakeSize))
	bw := bufio.NewWriter(&out)
	cw := newChunkWriter(bw)
	rec, _ := h264.AppendAVCDecoderConfig(nil, testVideoConfig(t))
	for _, m := range []message{
		commandMsg(csidCommand, 0, "connect", 1.0, map[string]any{"app": "live"}),
		commandMsg(csidCommand, 0, "createStream", 2.0, nil),
		commandMsg(csidStream, 1, "publish", 3.0, nil, "x?key=k", "live"),
		tagMessage(1, flv.Tag{Type: flv.TagAudio, Body: []byte{0xAF, 0, 0x11, 0x90}}),
		tagMessage(1, flv.Tag{Type: flv.TagVideo, Body: append([]byte{0x17, 0, 0, 0, 0}, rec...)}),
	} {
		if err := cw.writeMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	return out.Bytes()
}

// FuzzSession runs a whole server session on a publish prefix followed by
// arbitrary bytes: no panic, the sink's contract holds (configs before
// frames, nothing after OnClose, OnClose exactly once).
func FuzzSession(f *testing.F) {
	prefix := publishPrefix(f)
	var media bytes.Buffer
	bw := bufio.NewWriter(&media)
	cw := newChunkWriter(bw)
	cw.writeMessage(tagMessage(1, flv.Tag{Type: flv.TagAudio, Timestamp: 21, Body: []byte{0xAF, 1, 1, 2, 3}}))
	cw.writeMessage(tagMessage(1, flv.Tag{Type: flv.TagVideo, Timestamp: 40, Body: []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 1}}))
	cw.writeMessage(message{csid: csidStream, typ: typeDataAMF0, streamID: 1, payload: []byte{2, 0, 13, '@', 's', 'e', 't', 'D', 'a', 't', 'a', 'F', 'r', 'a', 'm', 'e', 2, 0, 10, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 3, 0, 0, 9}})
	cw.writeMessage(message{csid: 8, typ: typeAggregate, streamID: 1, ts: 100, payload: append([]byte{8, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0xAF, 1, 7}, 0, 0, 0, 14)})
	cw.writeMessage(commandMsg(csidCommand, 0, "FCUnpublish", 4.0, nil, "x"))
	cw.writeMessage(commandMsg(csidCommand, 0, "deleteStream", 5.0, nil, 1.0))
	bw.Flush()
	f.Add(media.Bytes())
	f.Add(chunkSeed(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		srv := NewServer(ServerConfig{})
		sink := &checkSink{t: t}
		srv.cfg.OnPublish = func(p *Publisher) (Sink, error) { return sink, nil }
		srv.cfg.OnPlay = func(p *Player) error { return nil }
		nc := &fakeConn{r: io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(b))}
		s := newSession(srv, nc)
		err := s.serve()
		if err == nil {
			t.Fatal("serve returned nil")
		}
		for _, ns := range s.streams {
			s.endStream(ns, err)
		}
		if !sink.closed {
			t.Fatal("sink never closed")
		}
	})
}

// TestSessionScript checks FuzzSession's seed does what it says: a
// publish with frames, aggregate included, ended by FCUnpublish.
func TestSessionScript(t *testing.T) {
	prefix := publishPrefix(t)
	var media bytes.Buffer
	bw := bufio.NewWriter(&media)
	cw := newChunkWriter(bw)
	cw.writeMessage(tagMessage(1, flv.Tag{Type: flv.TagAudio, Timestamp: 21, Body: []byte{0xAF, 1, 1, 2, 3}}))
	cw.writeMessage(tagMessage(1, flv.Tag{Type: flv.TagVideo, Timestamp: 40, Body: []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 1}}))
	// An aggregate of two audio sub-messages at 7 and 9 ms, sent at 100 ms:
	// they arrive at 100 and 102 ms.
	agg := []byte{8, 0, 0, 3, 0, 0, 7, 0, 0, 0, 0, 0xAF, 1, 7, 0, 0, 0, 14, 8, 0, 0, 3, 0, 0, 9, 0, 0, 0, 0, 0xAF, 1, 8, 0, 0, 0, 14}
	cw.writeMessage(message{csid: 8, typ: typeAggregate, streamID: 1, ts: 100, payload: agg})
	cw.writeMessage(commandMsg(csidCommand, 0, "FCUnpublish", 4.0, nil, "x"))
	bw.Flush()
	srv := NewServer(ServerConfig{})
	sink := newRecSink(nil)
	srv.cfg.OnPublish = func(p *Publisher) (Sink, error) { sink.pub = p; return sink, nil }
	s := newSession(srv, &fakeConn{r: io.MultiReader(bytes.NewReader(prefix), &media)})
	if err := s.serve(); !errors.Is(err, io.EOF) {
		t.Fatalf("serve: %v", err)
	}
	if err := sink.waitClosed(t, time.Second); err != nil || sink.pub.Key != "k" {
		t.Fatalf("OnClose(%v), publisher %+v", err, sink.pub)
	}
	_, _, got := sink.snapshot()
	want := []string{"audio pts=1890 dts=1890 key=true len=3", "video pts=3600 dts=3600 key=false len=6",
		"audio pts=9000 dts=9000 key=true len=1", "audio pts=9180 dts=9180 key=true len=1"}
	if len(got) != len(want) {
		t.Fatalf("%d frames", len(got))
	}
	for i, f := range got {
		if describeFrame(f) != want[i] {
			t.Errorf("frame %d: %s, want %s", i, describeFrame(f), want[i])
		}
	}
}
