package rtmp

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// TestControlMessages drives one end of a connection with protocol control
// and user control messages and checks its answers (spec §5.4, §7.1.7).
func TestControlMessages(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ca, cb := newConn(a, 1<<24, nil), newConn(b, 1<<24, nil)
	// B reads (and answers) in the background; what it returns goes to got.
	got := make(chan message, 16)
	go func() {
		for {
			m, err := cb.readMessage()
			if err != nil {
				close(got)
				return
			}
			got <- m
		}
	}()
	// A collects B's answers.
	answers := make(chan message, 64)
	go func() {
		for {
			m, err := ca.cr.readMessage()
			if err != nil {
				close(answers)
				return
			}
			answers <- m
		}
	}()
	next := func(typ uint8) message {
		t.Helper()
		for {
			select {
			case m := <-answers:
				if m.typ == typ {
					return m
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("no %s message from the peer", typeName(typ))
			}
		}
	}

	// Window: A asks for an acknowledgement every 1000 bytes.
	if err := ca.write(setChunkSizeMsg(4096), controlMsg(typeWindowAckSize, be32(1000))); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		ca.write(message{csid: csidAudio, typ: typeAudio, streamID: 1, ts: uint32(i), payload: make([]byte, 600)})
		if m := <-got; m.typ != typeAudio || len(m.payload) != 600 {
			t.Fatalf("got %+v", m)
		}
	}
	ack1 := binary.BigEndian.Uint32(next(typeAck).payload)
	ack2 := binary.BigEndian.Uint32(next(typeAck).payload)
	if ack1 < 1000 || ack2 < ack1+1000 {
		t.Errorf("acknowledgements at %d and %d bytes, window 1000", ack1, ack2)
	}
	// Set Peer Bandwidth: B answers with its new Window Acknowledgement Size.
	ca.write(controlMsg(typeSetPeerBandwidth, append(be32(3000), 2)))
	if v := binary.BigEndian.Uint32(next(typeWindowAckSize).payload); v != 3000 {
		t.Errorf("window acknowledgement size %d after set peer bandwidth 3000", v)
	}
	// The same bandwidth again: no new answer (it did not change).
	ca.write(controlMsg(typeSetPeerBandwidth, append(be32(3000), 0)), userControlMsg(eventPingRequest, be32(77)))
	m := next(typeUserControl)
	if ev := binary.BigEndian.Uint16(m.payload); ev != eventPingResponse || binary.BigEndian.Uint32(m.payload[2:]) != 77 {
		t.Errorf("ping answered with % x", m.payload)
	}
	select {
	case m := <-answers:
		if m.typ == typeWindowAckSize {
			t.Error("window acknowledgement size repeated for an unchanged bandwidth")
		}
	case <-time.After(100 * time.Millisecond):
	}
	// Set Chunk Size takes effect for the following chunks; Abort drops a
	// partial message.
	ca.write(setChunkSizeMsg(100))
	partial := append(hdr0(7, 0, 500, 9, 1), make([]byte, 100)...)
	a.Write(partial)
	ca.write(controlMsg(typeAbort, be32(7)))
	ca.write(message{csid: csidVideo, typ: typeVideo, streamID: 1, ts: 5, payload: make([]byte, 450)})
	if m := <-got; m.typ != typeVideo || len(m.payload) != 450 || m.ts != 5 {
		t.Errorf("after abort: %+v", m)
	}
	if cb.cr.chunkSize != 100 || cb.cr.inProgress != 0 {
		t.Errorf("chunk size %d, %d messages in progress", cb.cr.chunkSize, cb.cr.inProgress)
	}
	// Acknowledgements received are counted.
	ca.write(controlMsg(typeAck, be32(12345)))
	ca.write(message{csid: csidAudio, typ: typeAudio, streamID: 1, ts: 9, payload: []byte{1}})
	<-got
	if cb.acksIn != 1 || cb.lastAckIn != 12345 {
		t.Errorf("acks in: %d, last %d", cb.acksIn, cb.lastAckIn)
	}
}
