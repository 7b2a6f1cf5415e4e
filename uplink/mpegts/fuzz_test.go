package mpegts

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"tandem/uplink/media"
)

// fuzzSeed is a short stream with all three kinds of track.
func fuzzSeed() []byte {
	var ts []byte
	m := NewMuxer(avTracks(), func(b []byte) error { ts = append(ts, b...); return nil })
	rng := rand.New(rand.NewPCG(1, 2))
	cfg := aacCfg(48000, 2)
	for i := int64(0); i < 4; i++ {
		m.WriteFrame(pidAudio, media.Frame{PTS: cfg.FramePTS(i), Data: rawAU(rng, 100)})
		m.WriteFrames(pidAudio, []media.Frame{{PTS: cfg.FramePTS(i), Data: []byte{9}}, {Data: []byte{1}}})
		m.WriteFrame(pidVideo, media.Frame{PTS: cfg.FramePTS(i) + 3600, DTS: cfg.FramePTS(i), Key: i == 0, Data: fakeAU(rng, 300, i == 0, false)})
		m.WriteData(pidData, cfg.FramePTS(i), []byte("hi"))
	}
	return ts
}

type event string

func record(evs *[]event) Handler {
	return Handler{
		OnTrack: func(t TrackInfo) { *evs = append(*evs, event(fmt.Sprintf("track %+v", t))) },
		OnFrame: func(pid uint16, f media.Frame) {
			if f.PTS < 0 || f.PTS > mask33 || f.DTS < 0 || f.DTS > mask33 {
				panic(fmt.Sprintf("timestamp out of range: %d %d", f.PTS, f.DTS))
			}
			*evs = append(*evs, event(fmt.Sprintf("frame %d %d %d %v %x", pid, f.PTS, f.DTS, f.Key, f.Data)))
		},
		OnData: func(pid uint16, pts int64, p []byte) {
			*evs = append(*evs, event(fmt.Sprintf("data %d %d %x", pid, pts, p)))
		},
	}
}

func FuzzDemux(f *testing.F) {
	seed := fuzzSeed()
	f.Add(seed, uint16(1316))
	f.Add(seed[:3*PacketSize], uint16(7))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(3))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint16) {
		var one, chunked []event
		d1 := NewDemuxer(record(&one))
		err1 := d1.Feed(b)
		err1b := d1.Flush()

		d2 := NewDemuxer(record(&chunked))
		n := int(chunk%2000) + 1
		var err2 error
		for p := b; len(p) > 0 && err2 == nil; p = p[min(len(p), n):] {
			err2 = d2.Feed(p[:min(len(p), n)])
		}
		if err2 == nil {
			err2 = d2.Flush()
		}
		if err1 != nil || err1b != nil || err2 != nil {
			return // after an error the two may legitimately diverge
		}
		if len(one) != len(chunked) {
			t.Fatalf("%d events in one Feed, %d when fed in %d-byte chunks", len(one), len(chunked), n)
		}
		for i := range one {
			if !bytes.Equal([]byte(one[i]), []byte(chunked[i])) {
				t.Fatalf("event %d differs:\n%s\n%s", i, one[i], chunked[i])
			}
		}
		if d1.Stats() != d2.Stats() {
			t.Fatalf("stats differ: %+v / %+v", d1.Stats(), d2.Stats())
		}
	})
}

// FuzzDemuxPES wraps arbitrary bytes as whole PES packets in a valid
// stream (good PAT/PMT, counters), so the fuzzer reaches the PES, ADTS and
// H.264 parsing that a random TS would rarely get past the CRCs to.
func FuzzDemuxPES(f *testing.F) {
	var hdr [32]byte
	n := pesHeader(hdr[:0], 0xC0, 1234, 1234, 20, true)
	two := append(append([]byte(nil), hdr[:n]...), []byte{0xFF, 0xF1, 0x50, 0x80, 0x01, 0x5F, 0xFC, 1, 2, 3, 0xFF, 0xF1, 0x50, 0x80, 0x01, 0x5F, 0xFC, 4, 5, 6}...)
	f.Add(two, uint8(1))
	au := fakeAU(rand.New(rand.NewPCG(1, 1)), 400, true, true)
	n = pesHeader(hdr[:0], 0xE0, 9000, 5400, len(au), false)
	f.Add(append(append([]byte(nil), hdr[:n]...), au...), uint8(0))
	f.Add([]byte{0, 0, 1, 0xBD, 0, 5, 0x80, 0, 0, 'h', 'i'}, uint8(2))
	f.Fuzz(func(t *testing.T, pes []byte, which uint8) {
		m := NewMuxer(avTracks(), func([]byte) error { return nil })
		if err := m.start(); err != nil {
			t.Fatal(err)
		}
		tr := m.tracks[int(which)%len(m.tracks)]
		m.buf = append(m.buf[:0], m.psi...)
		for i := 0; i < 3; i++ { // repeated, so an unbounded PES completes
			m.packetize(tr, nil, pes, false, false, 0)
		}
		var evs []event
		d := NewDemuxer(record(&evs))
		if err := d.Feed(m.buf); err != nil {
			t.Fatalf("Feed: %v", err)
		}
		if err := d.Flush(); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	})
}
