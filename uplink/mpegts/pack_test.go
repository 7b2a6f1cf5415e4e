package mpegts

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"tandem/uplink/media"
)

// demuxMessages feeds msgs to a Demuxer, one message a call, and returns
// what it found.
func demuxMessages(t *testing.T, msgs [][]byte) *got {
	t.Helper()
	g, h := collect()
	d := NewDemuxer(h)
	for _, m := range msgs {
		if err := d.Feed(m); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// packAll feeds every message through a Packer and returns what it sent.
func packAll(t *testing.T, msgs [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	p := NewPacker(func(b []byte) error {
		if len(b) == 0 || len(b) > MaxMessage || len(b)%PacketSize != 0 {
			t.Fatalf("packed message of %d bytes", len(b))
		}
		out = append(out, bytes.Clone(b))
		return nil
	})
	for _, m := range msgs {
		if err := p.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if p.Pending() != 0 {
		t.Fatalf("%d bytes pending after Flush", p.Pending())
	}
	return out
}

// TestPackedRoundTrip: audio, video and data packed into shared messages
// demux to exactly what was written, in fewer messages.
func TestPackedRoundTrip(t *testing.T) {
	msgs, w, data := muxAV(t, 1000, 120)
	packed := packAll(t, msgs)
	if len(packed) >= len(msgs) {
		t.Errorf("packing sent %d messages for %d muxer emits", len(packed), len(msgs))
	}
	if !bytes.Equal(bytes.Join(packed, nil), bytes.Join(msgs, nil)) {
		t.Fatal("the packed messages do not carry the muxer's packets in order")
	}
	g := demuxMessages(t, packed)
	checkFrames(t, g, w)
	if len(g.data) != len(data) {
		t.Fatalf("%d data PES, wrote %d", len(g.data), len(data))
	}
}

// TestPackerKeepsFramesWhole: 128 kbit/s AAC frames (2 TS packets each)
// go three to a message; a frame that does not fit beside the pending
// ones starts the next message instead of being split.
func TestPackerKeepsFramesWhole(t *testing.T) {
	var sent []int // packets per message
	p := NewPacker(func(b []byte) error { sent = append(sent, len(b)/PacketSize); return nil })
	write := func(packets int) {
		t.Helper()
		if err := p.Write(make([]byte, packets*PacketSize)); err != nil {
			t.Fatal(err)
		}
	}
	write(2)
	write(2)
	write(2)
	if len(sent) != 0 || p.Pending() != 6*PacketSize {
		t.Fatalf("after three 2-packet frames: sent %v, %d bytes pending; want nothing sent, 6 packets pending", sent, p.Pending())
	}
	write(2) // does not fit: the three go, this one waits
	if len(sent) != 1 || sent[0] != 6 || p.Pending() != 2*PacketSize {
		t.Fatalf("after a fourth frame: sent %v, %d bytes pending; want [6] sent, 2 packets pending", sent, p.Pending())
	}
	write(5) // fills the message exactly: sent at once
	if len(sent) != 2 || sent[1] != 7 || p.Pending() != 0 {
		t.Fatalf("after a 5-packet frame: sent %v, %d bytes pending; want [6 7], nothing pending", sent, p.Pending())
	}
	write(1)
	write(16) // larger than a message: the pending packet goes alone first
	if want := []int{6, 7, 1, 7, 7}; !slices.Equal(sent, want) || p.Pending() != 2*PacketSize {
		t.Fatalf("after a 16-packet frame: sent %v, %d bytes pending; want %v, 2 packets pending", sent, p.Pending(), want)
	}
}

func TestPackerErrors(t *testing.T) {
	full := errors.New("send buffer full")
	fail := true
	var sent int
	p := NewPacker(func(b []byte) error {
		if fail {
			return full
		}
		sent++
		return nil
	})
	if err := p.Write(make([]byte, PacketSize+3)); !errors.Is(err, ErrTrack) {
		t.Errorf("write of 191 bytes: %v, want ErrTrack", err)
	}
	if p.Pending() != 0 {
		t.Errorf("a rejected write left %d bytes pending", p.Pending())
	}
	if err := p.Write(make([]byte, 4*PacketSize)); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(make([]byte, 4*PacketSize)); !errors.Is(err, full) {
		t.Errorf("write that flushes into a failing emit: %v, want its error", err)
	}
	fail = false
	if err := p.Flush(); err != nil || sent != 0 {
		t.Errorf("flush after the failed message: err %v, %d sent; want the lost packets gone, nothing sent", err, sent)
	}
}

// TestPackerWithMuxer: the muxer's emits of a 48 kHz audio-only feed
// (PAT/PMT, PCR, telemetry) pack into messages that demux to every frame.
func TestPackerWithMuxer(t *testing.T) {
	var msgs [][]byte
	p := NewPacker(func(b []byte) error { msgs = append(msgs, bytes.Clone(b)); return nil })
	cfg := aacCfg(48000, 2)
	m := NewMuxer([]Track{{PID: pidAudio, Kind: media.KindAudio, Audio: cfg}, {PID: pidData, FormatID: FormatTandem}}, p.Write)
	var w []written
	for i := range int64(300) {
		f := media.Frame{Kind: media.KindAudio, PTS: cfg.FramePTS(i), Key: true, Data: bytes.Repeat([]byte{byte(i)}, 334)}
		f.DTS = f.PTS
		if err := m.WriteFrame(pidAudio, f); err != nil {
			t.Fatal(err)
		}
		w = append(w, written{pidAudio, f})
		if i%47 == 0 {
			if err := m.WriteData(pidData, f.PTS, []byte(`{"feed":"primary"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(msgs) > 300/2 {
		t.Errorf("300 frames of 2-3 packets took %d messages, want at most 150", len(msgs))
	}
	g := demuxMessages(t, msgs)
	checkFrames(t, g, w)
	if len(g.data) != 7 {
		t.Errorf("%d telemetry PES, wrote 7", len(g.data))
	}
}
