package mpegts

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"tandem/scripts/testenv"
	"tandem/uplink/adts"
	"tandem/uplink/h264"
	"tandem/uplink/media"
)

func aacCfg(rate, ch int) media.AudioConfig {
	return media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: rate, Channels: ch}
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// An x264 SPS (320x240 High) and PPS, for synthetic access units.
var (
	testSPS = unhex("6764000dacd94141fb011000000300100000030320f1429960")
	testPPS = unhex("68ebe3cb22c0")
)

const (
	pidVideo = 0x100
	pidAudio = 0x101
	pidData  = 0x102
)

// fakeAU makes an Annex-B access unit of about n bytes: SPS, PPS and an
// IDR slice for keyframes, a non-IDR slice otherwise. Payload bytes avoid
// start-code emulation.
func fakeAU(rng *rand.Rand, n int, key, aud bool) []byte {
	var au []byte
	if aud {
		au = append(au, h264.AUD...)
	}
	typ := byte(0x41)
	if key {
		au = append(au, 0, 0, 0, 1)
		au = append(au, testSPS...)
		au = append(au, 0, 0, 0, 1)
		au = append(au, testPPS...)
		typ = 0x65
	}
	au = append(au, 0, 0, 1, typ)
	for len(au) < n {
		au = append(au, byte(1+rng.IntN(255)))
	}
	return au
}

func rawAU(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

type got struct {
	tracks []TrackInfo
	frames map[uint16][]media.Frame
	data   []dataPES
}

type dataPES struct {
	pts     int64
	payload []byte
}

func collect() (*got, Handler) {
	g := &got{frames: map[uint16][]media.Frame{}}
	return g, Handler{
		OnTrack: func(t TrackInfo) { g.tracks = append(g.tracks, t) },
		OnFrame: func(pid uint16, f media.Frame) { g.frames[pid] = append(g.frames[pid], f) },
		OnData:  func(pid uint16, pts int64, p []byte) { g.data = append(g.data, dataPES{pts, p}) },
	}
}

type written struct {
	pid uint16
	f   media.Frame
}

func avTracks() []Track {
	return []Track{
		{PID: pidVideo, Kind: media.KindVideo},
		{PID: pidAudio, Kind: media.KindAudio, Audio: aacCfg(48000, 2)},
		{PID: pidData, FormatID: FormatTandem},
	}
}

// muxAV writes interleaved audio, video and data and returns the emitted
// messages and what was written.
func muxAV(t testing.TB, base int64, n int) ([][]byte, []written, []dataPES) {
	rng := rand.New(rand.NewPCG(1, uint64(base)))
	var msgs [][]byte
	m := NewMuxer(avTracks(), func(b []byte) error {
		msgs = append(msgs, bytes.Clone(b))
		return nil
	})
	acfg := aacCfg(48000, 2)
	var w []written
	var data []dataPES
	ai := int64(0)
	// Sizes chosen to hit the stuffing edge cases (1 and 2 bytes short of
	// a full packet), multi-packet frames and an unbounded video PES.
	vsizes := []int{5000, 170, 171, 172, 350, 200000, 900, 184*3 - 20}
	for i := 0; i < n; i++ {
		vpts := base + int64(i)*3600
		for acfg.FramePTS(ai) <= int64(i)*3600 {
			f := media.Frame{Kind: media.KindAudio, PTS: base + acfg.FramePTS(ai), Key: true, Data: rawAU(rng, 150+int(ai%40)*7)}
			f.DTS = f.PTS
			if err := m.WriteFrame(pidAudio, f); err != nil {
				t.Fatal(err)
			}
			w = append(w, written{pidAudio, f})
			ai++
		}
		key := i%12 == 0
		f := media.Frame{Kind: media.KindVideo, PTS: vpts + 7200, DTS: vpts, Key: key,
			Data: fakeAU(rng, vsizes[i%len(vsizes)], key, i%2 == 0)}
		if i%5 == 4 {
			f.PTS = f.DTS // no reordering for this one: no DTS field
		}
		if err := m.WriteFrame(pidVideo, f); err != nil {
			t.Fatal(err)
		}
		if !h264.HasAUD(f.Data) {
			f.Data = append(bytes.Clone(h264.AUD), f.Data...)
		}
		w = append(w, written{pidVideo, f})
		if i%10 == 3 {
			p := []byte(fmt.Sprintf(`{"level":%d}`, i))
			if err := m.WriteData(pidData, vpts, p); err != nil {
				t.Fatal(err)
			}
			data = append(data, dataPES{vpts & mask33, p})
		}
	}
	return msgs, w, data
}

func checkFrames(t *testing.T, g *got, w []written) {
	t.Helper()
	idx := map[uint16]int{}
	for _, x := range w {
		i := idx[x.pid]
		idx[x.pid]++
		fs := g.frames[x.pid]
		if i >= len(fs) {
			t.Fatalf("PID %#x: only %d frames, want more", x.pid, len(fs))
		}
		f := fs[i]
		want := x.f
		want.PTS &= mask33
		want.DTS &= mask33
		if f.Kind != want.Kind || f.PTS != want.PTS || f.DTS != want.DTS || f.Key != want.Key || !bytes.Equal(f.Data, want.Data) {
			t.Fatalf("PID %#x frame %d: got %v pts %d dts %d key %v %d bytes; want %v pts %d dts %d key %v %d bytes",
				x.pid, i, f.Kind, f.PTS, f.DTS, f.Key, len(f.Data), want.Kind, want.PTS, want.DTS, want.Key, len(want.Data))
		}
	}
	for pid, fs := range g.frames {
		if len(fs) != idx[pid] {
			t.Fatalf("PID %#x: %d frames, wrote %d", pid, len(fs), idx[pid])
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, base := range []int64{0, 90000 * 3600, mask33 - 90000} { // incl. a 33-bit wrap
		msgs, w, data := muxAV(t, base, 60)
		for _, mode := range []string{"messages", "random chunks", "one buffer"} {
			g, h := collect()
			d := NewDemuxer(h)
			rng := rand.New(rand.NewPCG(7, 7))
			var all []byte
			for _, m := range msgs {
				all = append(all, m...)
			}
			switch mode {
			case "messages":
				for _, m := range msgs {
					if err := d.Feed(m); err != nil {
						t.Fatal(err)
					}
				}
			case "random chunks":
				for b := all; len(b) > 0; {
					n := min(len(b), 1+rng.IntN(700))
					if err := d.Feed(b[:n]); err != nil {
						t.Fatal(err)
					}
					b = b[n:]
				}
			case "one buffer":
				if err := d.Feed(all); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			checkFrames(t, g, w)
			if len(g.data) != len(data) {
				t.Fatalf("%d data PES, want %d", len(g.data), len(data))
			}
			for i := range data {
				if g.data[i].pts != data[i].pts || !bytes.Equal(g.data[i].payload, data[i].payload) {
					t.Fatalf("data %d: %+v, want %+v", i, g.data[i], data[i])
				}
			}
			// Tracks: data at the PMT, audio and video when configured.
			var kinds []string
			for _, tr := range g.tracks {
				kinds = append(kinds, fmt.Sprintf("%#x:%v:%#x:%s", tr.PID, tr.Kind, tr.StreamType, tr.FormatID))
				switch tr.PID {
				case pidAudio:
					if tr.Audio != aacCfg(48000, 2) {
						t.Fatalf("audio config %v", tr.Audio)
					}
				case pidVideo:
					if tr.Video.Width != 320 || tr.Video.Height != 240 || !bytes.Equal(tr.Video.PPS, testPPS) {
						t.Fatalf("video config %+v", tr.Video)
					}
				}
			}
			if want := "[0x102:kind(0):0x6:TNDM 0x101:audio:0xf: 0x100:video:0x1b:]"; fmt.Sprint(kinds) != want {
				t.Fatalf("tracks %v, want %v", kinds, want)
			}
			if s := d.Stats(); s.CCErrors+s.CRCErrors+s.Resyncs+s.DroppedPES+s.SkippedBytes != 0 {
				t.Fatalf("%s: stats %+v", mode, s)
			}
		}
	}
}

// Audio at 44.1 kHz, several frames per PES, starting at an arbitrary
// sample-counter index: every frame's PTS must be exactly on the grid.
func TestMultiFramePES441(t *testing.T) {
	cfg := aacCfg(44100, 1)
	var out []byte
	m := NewMuxer([]Track{{PID: pidAudio, Kind: media.KindAudio, Audio: cfg}}, func(b []byte) error {
		out = append(out, b...)
		return nil
	})
	rng := rand.New(rand.NewPCG(3, 4))
	var w []written
	k := int64(987654)
	for n := 1; n <= 7; n++ {
		var fs []media.Frame
		for i := 0; i < n; i++ {
			p := cfg.FramePTS(k)
			fs = append(fs, media.Frame{Kind: media.KindAudio, PTS: p, DTS: p, Key: true, Data: rawAU(rng, 100+rng.IntN(400))})
			k++
		}
		if err := m.WriteFrames(pidAudio, fs); err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			w = append(w, written{pidAudio, f})
		}
	}
	g, h := collect()
	d := NewDemuxer(h)
	if err := d.Feed(out); err != nil {
		t.Fatal(err)
	}
	checkFrames(t, g, w)
	if g.tracks[0].Audio != cfg {
		t.Fatalf("config %v", g.tracks[0].Audio)
	}
}

// TestNonAlignedADTS splits ADTS frames across PES boundaries, as some
// muxers do: frames are completed from the carry and keep their timing.
func TestNonAlignedADTS(t *testing.T) {
	cfg := aacCfg(48000, 2)
	var out []byte
	m := NewMuxer([]Track{{PID: pidAudio, Kind: media.KindAudio, Audio: cfg}}, func(b []byte) error {
		out = append(out, b...)
		return nil
	})
	if err := m.start(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var stream []byte
	var w []written
	var starts []int
	for i := int64(0); i < 30; i++ {
		p := rawAU(rng, 50+rng.IntN(300))
		starts = append(starts, len(stream))
		stream, _ = adts.AppendFrame(stream, cfg, p)
		w = append(w, written{pidAudio, media.Frame{Kind: media.KindAudio, PTS: cfg.FramePTS(i), DTS: cfg.FramePTS(i), Key: true, Data: p}})
	}
	// Cut the stream into PES at arbitrary points; each PES's PTS is that
	// of the first frame starting in it.
	tr := m.tracks[0]
	m.buf = m.buf[:0]
	m.buf = append(m.buf, m.psi...)
	for pos := 0; pos < len(stream); {
		n := min(len(stream)-pos, 100+rng.IntN(900))
		first := -1
		for i, s := range starts {
			if s >= pos && s < pos+n {
				first = i
				break
			}
		}
		var hdr [32]byte
		var h int
		if first >= 0 {
			h = pesHeader(hdr[:0], 0xC0, cfg.FramePTS(int64(first)), cfg.FramePTS(int64(first)), n, true)
		} else { // no frame starts here: no PTS
			copy(hdr[:], []byte{0, 0, 1, 0xC0, byte((n + 3) >> 8), byte(n + 3), 0x80, 0, 0})
			h = 9
		}
		m.packetize(tr, hdr[:h], stream[pos:pos+n], false, false, 0)
		pos += n
	}
	out = append(out, m.buf...)
	g, hd := collect()
	d := NewDemuxer(hd)
	if err := d.Feed(out); err != nil {
		t.Fatal(err)
	}
	checkFrames(t, g, w)
}

// TestChunking: every emit is a whole number of packets, at most seven,
// and each frame can be demuxed before WriteFrame returns.
func TestChunking(t *testing.T) {
	var delivered int
	d := NewDemuxer(Handler{OnFrame: func(uint16, media.Frame) { delivered++ }})
	var emits, shortEmits int
	m := NewMuxer(avTracks(), func(b []byte) error {
		if len(b) == 0 || len(b) > MaxMessage || len(b)%PacketSize != 0 {
			t.Fatalf("emit of %d bytes", len(b))
		}
		for i := 0; i < len(b); i += PacketSize {
			if b[i] != syncByte {
				t.Fatalf("packet without sync at %d", i)
			}
		}
		emits++
		if len(b) < MaxMessage {
			shortEmits++
		}
		if err := d.Feed(b); err != nil {
			t.Fatal(err)
		}
		return nil
	})
	rng := rand.New(rand.NewPCG(8, 9))
	acfg := aacCfg(48000, 2)
	for i := int64(0); i < 200; i++ {
		before := delivered
		if err := m.WriteFrame(pidAudio, media.Frame{PTS: acfg.FramePTS(i), DTS: acfg.FramePTS(i), Data: rawAU(rng, 10+rng.IntN(1500))}); err != nil {
			t.Fatal(err)
		}
		if delivered != before+1 {
			t.Fatalf("audio frame %d not delivered when WriteFrame returned", i)
		}
		if i%2 == 0 {
			before = delivered
			vp := acfg.FramePTS(i)
			if err := m.WriteFrame(pidVideo, media.Frame{PTS: vp, DTS: vp, Key: i%50 == 0, Data: fakeAU(rng, 100+rng.IntN(30000), i%50 == 0, false)}); err != nil {
				t.Fatal(err)
			}
			if delivered != before+1 {
				t.Fatalf("video frame %d not delivered when WriteFrame returned", i)
			}
		}
	}
	if shortEmits == 0 || emits < 300 {
		t.Fatalf("%d emits, %d short", emits, shortEmits)
	}
	// An emit error is returned, wrapped.
	boom := errors.New("boom")
	m2 := NewMuxer(avTracks(), func([]byte) error { return boom })
	if err := m2.WriteFrame(pidAudio, media.Frame{Data: []byte{1}}); !errors.Is(err, boom) {
		t.Fatalf("emit error: %v", err)
	}
}

// packets splits a TS into packets and returns them by PID.
func parsePackets(t *testing.T, ts []byte) [][]byte {
	t.Helper()
	if len(ts)%PacketSize != 0 {
		t.Fatalf("%d bytes", len(ts))
	}
	var ps [][]byte
	for i := 0; i < len(ts); i += PacketSize {
		ps = append(ps, ts[i:i+PacketSize])
	}
	return ps
}

func pktPID(p []byte) uint16 { return uint16(p[1]&0x1F)<<8 | uint16(p[2]) }

// TestMuxTiming checks the PSI and PCR schedule, random access flags and
// continuity counters of the muxer output.
func TestMuxTiming(t *testing.T) {
	msgs, w, _ := muxAV(t, 0, 100)
	var ts []byte
	for _, m := range msgs {
		ts = append(ts, m...)
	}
	cc := map[uint16]int{}
	var lastPAT, lastPCR int64 = -1, -1
	var psiBeforeKey bool
	var cur int64 // DTS of the latest PES start
	for _, p := range parsePackets(t, ts) {
		pid := pktPID(p)
		afc := p[3] >> 4 & 3
		if afc&1 != 0 {
			if c, ok := cc[pid]; ok && int(p[3]&0xF) != (c+1)&0xF {
				t.Fatalf("PID %#x: CC %d after %d", pid, p[3]&0xF, c)
			}
			cc[pid] = int(p[3] & 0xF)
		}
		off := 4
		var pcr int64 = -1
		var rai bool
		if afc&2 != 0 {
			if p[4] > 0 && p[5]&0x10 != 0 {
				pcr = int64(p[6])<<25 | int64(p[7])<<17 | int64(p[8])<<9 | int64(p[9])<<1 | int64(p[10]>>7)
			}
			rai = p[4] > 0 && p[5]&0x40 != 0
			off = 5 + int(p[4])
		}
		if pcr >= 0 {
			if pid != pidVideo {
				t.Fatalf("PCR on PID %#x", pid)
			}
			if lastPCR >= 0 && ((pcr-lastPCR)&mask33 > 3600) {
				t.Fatalf("PCR %d after %d", pcr, lastPCR)
			}
			lastPCR = pcr
		}
		switch {
		case pid == PIDPAT:
			psiBeforeKey = true
		case p[1]&0x40 != 0 && (pid == pidVideo || pid == pidAudio):
			pes := p[off:]
			pts := timestamp(pes[9:])
			dts := pts
			if pes[7]&0x40 != 0 {
				dts = timestamp(pes[14:])
			}
			cur = dts
			if psiBeforeKey {
				lastPAT = cur // the PAT/PMT sent for this PES
			}
			if lastPAT < 0 || cur-lastPAT >= 9000 {
				t.Fatalf("no PAT for %d ticks at %d", cur-lastPAT, cur)
			}
			if pid == pidVideo {
				key := h264.IsKeyframe(pes[9+int(pes[8]):])
				if key != rai {
					t.Fatalf("video at %d: keyframe %v, random_access_indicator %v", pts, key, rai)
				}
				if key && !psiBeforeKey {
					t.Fatalf("keyframe at %d without PAT/PMT right before", pts)
				}
				if pcr < 0 {
					t.Fatalf("video PES at %d without PCR", dts)
				}
				if pcr != (dts-DefaultPCROffset)&mask33 {
					t.Fatalf("PCR %d for DTS %d", pcr, dts)
				}
			} else if !rai {
				t.Fatal("audio PES without random_access_indicator")
			}
			psiBeforeKey = false
		}
	}
	if len(w) == 0 || lastPCR < 0 {
		t.Fatal("nothing written")
	}
}

func TestPCRWithoutVideo(t *testing.T) {
	// Video frames 200 ms apart: PCR-only packets fill the gaps.
	var ts []byte
	m := NewMuxer(avTracks(), func(b []byte) error { ts = append(ts, b...); return nil })
	acfg := aacCfg(48000, 2)
	for i := int64(0); i < 100; i++ {
		p := acfg.FramePTS(i)
		if i%10 == 0 {
			if err := m.WriteFrame(pidVideo, media.Frame{PTS: p, DTS: p, Key: i == 0, Data: fakeAU(nil, 10, i == 0, true)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.WriteFrame(pidAudio, media.Frame{PTS: p, DTS: p, Data: []byte{1, 2, 3}}); err != nil {
			t.Fatal(err)
		}
	}
	var pcrs []int64
	for _, p := range parsePackets(t, ts) {
		if p[3]&0x20 != 0 && p[4] > 0 && p[5]&0x10 != 0 {
			pcrs = append(pcrs, int64(p[6])<<25|int64(p[7])<<17|int64(p[8])<<9|int64(p[9])<<1|int64(p[10]>>7))
		}
	}
	for i := 1; i < len(pcrs); i++ {
		if d := (pcrs[i] - pcrs[i-1]) & mask33; d > 3600+1920 {
			t.Fatalf("PCR step %d", d)
		}
	}
	if len(pcrs) < 40 {
		t.Fatalf("%d PCRs", len(pcrs))
	}
}

func TestMuxErrors(t *testing.T) {
	noop := func([]byte) error { return nil }
	for name, tracks := range map[string][]Track{
		"none":      nil,
		"dup":       {{PID: 0x100, Kind: media.KindVideo}, {PID: 0x100, Kind: media.KindAudio, Audio: aacCfg(48000, 2)}},
		"pmt pid":   {{PID: DefaultPMTPID, Kind: media.KindVideo}},
		"reserved":  {{PID: 0x0001, Kind: media.KindVideo}},
		"bad audio": {{PID: 0x100, Kind: media.KindAudio, Audio: aacCfg(44000, 2)}},
		"mp3":       {{PID: 0x100, Kind: media.KindAudio, Audio: media.AudioConfig{Codec: media.CodecMP3, SampleRate: 44100, Channels: 2}}},
		"bad type":  {{PID: 0x100, Kind: media.KindVideo, StreamType: 0x24}},
		"format":    {{PID: 0x100, FormatID: "TOOLONG"}},
	} {
		m := NewMuxer(tracks, noop)
		if err := m.WriteData(0x100, 0, []byte{1}); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	m := NewMuxer(avTracks(), noop)
	if err := m.WriteFrame(0x333, media.Frame{}); !errors.Is(err, ErrTrack) {
		t.Errorf("unknown PID: %v", err)
	}
	if err := m.WriteFrame(pidData, media.Frame{}); !errors.Is(err, ErrTrack) {
		t.Errorf("frame on data track: %v", err)
	}
	if err := m.WriteData(pidAudio, 0, nil); !errors.Is(err, ErrTrack) {
		t.Errorf("data on audio track: %v", err)
	}
	if err := m.WriteFrame(pidAudio, media.Frame{Data: make([]byte, 9000)}); !errors.Is(err, ErrTrack) {
		t.Errorf("oversized AAC frame: %v", err)
	}
	if err := m.WriteData(pidData, 0, make([]byte, 70000)); !errors.Is(err, ErrTrack) {
		t.Errorf("oversized data: %v", err)
	}
}

func TestNotTS(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	random := rawAU(rng, 4096)
	text := []byte(strings.Repeat("GET /live/stream HTTP/1.1\r\nHost: example.com\r\n\r\n", 30))
	adtsStream, _ := adts.AppendFrame(nil, aacCfg(48000, 2), rawAU(rng, 1400))
	for name, c := range map[string]struct {
		in   []byte
		want string
	}{
		"random": {random, "no 0x47 sync byte"},
		"text":   {text, `"GET /live/stream HTTP/1`},
		"adts":   {adtsStream, "ADTS"},
		"flv":    {append([]byte("FLV\x01\x05\x00\x00\x00\x09"), random...), "FLV"},
	} {
		d := NewDemuxer(Handler{OnFrame: func(uint16, media.Frame) { t.Fatal("frame from garbage") }})
		err := d.Feed(c.in)
		if !errors.Is(err, ErrNotTS) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrNotTS naming %q", name, err, c.want)
		}
	}
	// Short garbage is reported by Flush.
	d := NewDemuxer(Handler{})
	if err := d.Feed([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatalf("short text: %v", err)
	}
	if err := d.Flush(); !errors.Is(err, ErrNotTS) || !strings.Contains(err.Error(), "GET") {
		t.Fatalf("flush: %v", err)
	}
	// A TS that turns into garbage for 64 KiB errors too, after frames.
	msgs, _, _ := muxAV(t, 0, 5)
	d = NewDemuxer(Handler{})
	for _, m := range msgs {
		if err := d.Feed(m); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	for i := 0; i < 40 && err == nil; i++ {
		err = d.Feed(random)
	}
	if !errors.Is(err, ErrNotTS) || !strings.Contains(err.Error(), "lost packet sync") || d.Stats().Resyncs != 1 {
		t.Fatalf("garbage after TS: %v, %+v", err, d.Stats())
	}
	// A two-packet stream is accepted at Flush.
	d = NewDemuxer(Handler{})
	if err := d.Feed(msgs[0][:2*PacketSize]); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil || d.Stats().Packets != 2 {
		t.Fatalf("two packets: %v, %+v", err, d.Stats())
	}
}

func TestResync(t *testing.T) {
	msgs, w, _ := muxAV(t, 0, 40)
	rng := rand.New(rand.NewPCG(12, 13))
	g, h := collect()
	d := NewDemuxer(h)
	// Leading partial packet, then garbage inserted between two messages
	// (whole messages: no frame is cut).
	var junk int64
	if err := d.Feed(rawAU(rng, 100)); err != nil {
		t.Fatal(err)
	}
	junk += 100
	for i, m := range msgs {
		if i == len(msgs)/2 {
			j := bytes.ReplaceAll(rawAU(rng, 500), []byte{syncByte}, []byte{0})
			if err := d.Feed(j); err != nil {
				t.Fatal(err)
			}
			junk += 500
		}
		if err := d.Feed(m); err != nil {
			t.Fatal(err)
		}
	}
	d.Flush()
	s := d.Stats()
	if s.Resyncs != 1 || s.SkippedBytes != junk || s.CCErrors != 0 {
		t.Fatalf("stats %+v, want 1 resync, %d bytes skipped", s, junk)
	}
	checkFrames(t, g, w)
}

// TestCCGap drops one packet of a multi-packet PES (video, then audio;
// the middle of the PES, then its first packet): that frame is dropped,
// counted, and every other frame comes through.
func TestCCGap(t *testing.T) {
	msgs, w, _ := muxAV(t, 0, 30)
	var ts []byte
	for _, m := range msgs {
		ts = append(ts, m...)
	}
	pkts := parsePackets(t, ts)
	for _, c := range []struct {
		pid      uint16
		nth      int // the nth PES of the PID (1-based)
		which    int // 0: its first packet, 1: its second
		dropped  int64
		ccErrors int64
	}{
		{pidVideo, 9, 1, 1, 1}, // the 5000-byte frame
		{pidAudio, 20, 1, 1, 1},
		{pidAudio, 21, 0, 0, 1}, // PES start lost: the rest is ignored, nothing to drop
		{pidVideo, 7, 0, 1, 1},  // start of the 200 kB frame lost: its tail joins the previous (unbounded) PES
	} {
		seen, drop := 0, -1
		for i, p := range pkts {
			if pktPID(p) == c.pid && p[1]&0x40 != 0 {
				seen++
				if seen == c.nth {
					drop = i + c.which
					break
				}
			}
		}
		if pktPID(pkts[drop]) != c.pid || (c.which == 1 && pkts[drop][1]&0x40 != 0) {
			t.Fatalf("%+v: PES %d is a one-packet PES", c, c.nth)
		}
		var cut []byte
		for i, p := range pkts {
			if i != drop {
				cut = append(cut, p...)
			}
		}
		g, h := collect()
		d := NewDemuxer(h)
		if err := d.Feed(cut); err != nil {
			t.Fatal(err)
		}
		d.Flush()
		if s := d.Stats(); s.CCErrors != c.ccErrors || s.DroppedPES != c.dropped {
			t.Fatalf("%+v: stats %+v", c, s)
		}
		var want []written
		n := 0
		lost := c.nth
		if c.pid == pidVideo && c.which == 0 {
			lost = c.nth - 1 // the frame before absorbs the tail and is dropped...
		}
		for _, x := range w {
			if x.pid == c.pid {
				n++
				if n == lost || (c.pid == pidVideo && c.which == 0 && n == c.nth) {
					continue // ...and the frame whose start was lost is gone too
				}
			}
			want = append(want, x)
		}
		checkFrames(t, g, want)
	}
}

func TestBadCRC(t *testing.T) {
	msgs, w, _ := muxAV(t, 0, 20)
	var ts []byte
	for _, m := range msgs {
		ts = append(ts, m...)
	}
	pkts := parsePackets(t, ts)
	// Corrupt the first PMT: nothing can be demuxed until the next one.
	corrupted := false
	for _, p := range pkts {
		if pktPID(p) == DefaultPMTPID && !corrupted {
			p[10] ^= 0x01
			corrupted = true
		}
	}
	g, h := collect()
	d := NewDemuxer(h)
	if err := d.Feed(ts); err != nil {
		t.Fatal(err)
	}
	d.Flush()
	if s := d.Stats(); s.CRCErrors != 1 {
		t.Fatalf("stats %+v", s)
	}
	if len(g.frames[pidAudio]) == 0 || len(g.frames[pidAudio]) >= len(w) {
		t.Fatalf("%d audio frames", len(g.frames[pidAudio]))
	}
}

func TestCRC32(t *testing.T) {
	// The PAT ffmpeg writes (TSID 1, program 1 → PMT 0x1000).
	pat := unhex("00b00d0001c100000001f0002ab104b2")
	if CRC32(pat) != 0 || CRC32(pat[:len(pat)-4]) != 0x2AB104B2 {
		t.Fatalf("CRC %08x", CRC32(pat[:len(pat)-4]))
	}
	// Our PAT and PMT for one AAC track on PID 0x100 are byte for byte
	// the ones ffmpeg writes.
	pmt := unhex("02b0120001c10000e100f0000fe100f000b69bc0d9")
	m := NewMuxer([]Track{{PID: 0x100, Kind: media.KindAudio, Audio: aacCfg(48000, 2)}}, func([]byte) error { return nil })
	if err := m.start(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.psi[5:5+len(pat)], pat) || !bytes.Equal(m.psi[PacketSize+5:PacketSize+5+len(pmt)], pmt) {
		t.Fatalf("PSI differs from ffmpeg's:\n% x\n% x", m.psi[5:5+len(pat)], m.psi[PacketSize+5:PacketSize+5+len(pmt)])
	}
}

type probePacket struct {
	kind     string
	pts, dts int64
	key      bool
}

func ffprobePackets(t *testing.T, ffprobe, path string) []probePacket {
	t.Helper()
	out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "packet=codec_type,pts,dts,flags", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var ps []probePacket
	for _, l := range strings.Fields(string(out)) {
		f := strings.Split(l, ",")
		if len(f) < 4 {
			continue
		}
		pts, _ := strconv.ParseInt(f[1], 10, 64)
		dts, _ := strconv.ParseInt(f[2], 10, 64)
		ps = append(ps, probePacket{f[0], pts, dts, strings.HasPrefix(f[3], "K")})
	}
	return ps
}

// TestFFprobeReadsMux muxes real H.264 (x264, with B-frames) and silent
// AAC and checks that ffprobe sees every packet with our timestamps.
func TestFFprobeReadsMux(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	ffprobe := testenv.Need(t, "ffprobe")
	dir := t.TempDir()
	raw := filepath.Join(dir, "v.h264")
	if out, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=2",
		"-c:v", "libx264", "-g", "12", "-bf", "0", "-x264-params", "aud=1", "-f", "h264", raw).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot encode H.264 with ffmpeg: %v: %s", err, out)
		}
		t.Skipf("cannot encode H.264 with ffmpeg: %v: %s", err, out)
	}
	es, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var aus [][]byte
	for i, au := range bytes.Split(es, h264.AUD[:5]) {
		if i > 0 {
			aus = append(aus, append(bytes.Clone(h264.AUD[:5]), au...))
		}
	}
	acfg := aacCfg(48000, 2)
	silent, _ := adts.SilentFrame(acfg)
	var ts []byte
	m := NewMuxer(avTracks(), func(b []byte) error { ts = append(ts, b...); return nil })
	base := int64(900000)
	var want []probePacket
	ai := int64(0)
	for i, au := range aus {
		vp := base + int64(i)*3600
		for base+acfg.FramePTS(ai) <= vp {
			p := base + acfg.FramePTS(ai)
			if err := m.WriteFrame(pidAudio, media.Frame{PTS: p, DTS: p, Key: true, Data: silent}); err != nil {
				t.Fatal(err)
			}
			want = append(want, probePacket{"audio", p, p, true})
			ai++
		}
		key := h264.IsKeyframe(au)
		if err := m.WriteFrame(pidVideo, media.Frame{PTS: vp, DTS: vp, Key: key, Data: au}); err != nil {
			t.Fatal(err)
		}
		want = append(want, probePacket{"video", vp, vp, key})
		if i%5 == 0 {
			if err := m.WriteData(pidData, vp, []byte(`{"peak":-12.5}`)); err != nil {
				t.Fatal(err)
			}
			want = append(want, probePacket{"data", vp, vp, false})
		}
	}
	path := filepath.Join(dir, "mux.ts")
	if err := os.WriteFile(path, ts, 0o644); err != nil {
		t.Fatal(err)
	}
	gotPk := ffprobePackets(t, ffprobe, path)
	split := func(ps []probePacket, kind string) []probePacket {
		var out []probePacket
		for _, p := range ps {
			if p.kind == kind {
				out = append(out, p)
			}
		}
		return out
	}
	for _, kind := range []string{"audio", "video", "data"} {
		g, w := split(gotPk, kind), split(want, kind)
		if kind == "data" {
			for i := range g {
				g[i].key = false // ffmpeg flags data packets as keyframes
			}
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Fatalf("%s packets differ:\n got %d %v\nwant %d %v", kind, len(g), g[:min(len(g), 5)], len(w), w[:min(len(w), 5)])
		}
	}
	// And ffmpeg decodes it without complaint.
	if out, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-i", path, "-map", "0:v", "-map", "0:a", "-f", "null", "-").CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("ffmpeg decode: %v: %s", err, out)
	}
}

// TestDemuxFFmpeg demuxes transport streams written by ffmpeg and compares
// every packet with ffprobe's view.
func TestDemuxFFmpeg(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	ffprobe := testenv.Need(t, "ffprobe")
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		tol  int64 // ffmpeg interpolates later frames of a multi-frame PES by duration
	}{
		{"aac48k", []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3", "-c:a", "aac"}, 0},
		{"aac44k", []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3", "-ac", "2", "-c:a", "aac"}, 1},
		{"h264+aac", []string{"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=3", "-f", "lavfi", "-i", "sine=sample_rate=48000:duration=3",
			"-c:v", "libx264", "-g", "12", "-bf", "2", "-c:a", "aac"}, 0},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name+".ts")
		args := append([]string{"-nostdin", "-v", "error", "-y"}, c.args...)
		args = append(args, "-f", "mpegts", path)
		if out, err := exec.Command(ffmpeg, args...).CombinedOutput(); err != nil {
			if strings.Contains(c.name, "h264") {
				t.Logf("%s: skipped, ffmpeg cannot encode it: %v: %s", c.name, err, out)
				continue
			}
			t.Fatalf("ffmpeg: %v: %s", err, out)
		}
		want := ffprobePackets(t, ffprobe, path)
		ts, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var gotPk []probePacket
		var tracks []TrackInfo
		d := NewDemuxer(Handler{
			OnTrack: func(ti TrackInfo) { tracks = append(tracks, ti) },
			OnFrame: func(pid uint16, f media.Frame) {
				if f.Kind == media.KindAudio {
					gotPk = append(gotPk, probePacket{"audio", f.PTS, f.DTS, f.Key})
				} else {
					gotPk = append(gotPk, probePacket{"video", f.PTS, f.DTS, f.Key})
				}
			},
		})
		for b := ts; len(b) > 0; b = b[min(len(b), MaxMessage):] {
			if err := d.Feed(b[:min(len(b), MaxMessage)]); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, kind := range []string{"audio", "video"} {
			var g, w []probePacket
			for _, p := range gotPk {
				if p.kind == kind {
					g = append(g, p)
				}
			}
			for _, p := range want {
				if p.kind == kind {
					w = append(w, p)
				}
			}
			if len(g) != len(w) {
				t.Fatalf("%s %s: %d frames, ffprobe has %d", c.name, kind, len(g), len(w))
			}
			for i := range g {
				dp, dd := g[i].pts-w[i].pts, g[i].dts-w[i].dts
				if dp < -c.tol || dp > c.tol || dd < -c.tol || dd > c.tol || g[i].key != w[i].key {
					t.Fatalf("%s %s frame %d: got %+v, ffprobe %+v", c.name, kind, i, g[i], w[i])
				}
			}
		}
		if s := d.Stats(); s.CCErrors+s.CRCErrors+s.DroppedPES+s.Resyncs != 0 {
			t.Fatalf("%s: stats %+v", c.name, s)
		}
		for _, ti := range tracks {
			if ti.Kind == media.KindVideo && (ti.Video.Width != 320 || ti.Video.Height != 240) {
				t.Fatalf("%s: video track %+v", c.name, ti)
			}
			if ti.Kind == media.KindAudio && ti.Audio.SampleRate == 0 {
				t.Fatalf("%s: audio track %+v", c.name, ti)
			}
		}
	}
}

func TestDemuxAllocs(t *testing.T) {
	msgs, _, _ := muxAV(t, 0, 60)
	var ts []byte
	for _, m := range msgs {
		ts = append(ts, m...)
	}
	d := NewDemuxer(Handler{OnFrame: func(uint16, media.Frame) {}})
	d.Feed(ts) // warm up buffers
	var frames int
	d = NewDemuxer(Handler{OnFrame: func(uint16, media.Frame) { frames++ }})
	d.Feed(ts)
	frames = 0
	pk := d.Stats().Packets
	allocs := testing.AllocsPerRun(5, func() { d.Feed(ts) })
	perFrame := allocs / float64(frames/6)
	t.Logf("%.0f allocs for %d packets, %d frames: %.2f per frame", allocs, pk, frames/6, perFrame)
	if perFrame > 1.5 {
		t.Fatalf("%.2f allocs per frame", perFrame)
	}
}

func BenchmarkDemux(b *testing.B) {
	// Audio-heavy and video-heavy mix like a live feed.
	msgs, _, _ := muxAV(b, 0, 250)
	var ts []byte
	for _, m := range msgs {
		ts = append(ts, m...)
	}
	d := NewDemuxer(Handler{OnFrame: func(uint16, media.Frame) {}, OnData: func(uint16, int64, []byte) {}})
	b.SetBytes(int64(len(ts)))
	b.ReportAllocs()
	for b.Loop() {
		for m := ts; len(m) > 0; m = m[min(len(m), MaxMessage):] {
			d.Feed(m[:min(len(m), MaxMessage)])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ts)/PacketSize), "ns/packet")
}

func BenchmarkDemuxAudioOnly(b *testing.B) {
	cfg := aacCfg(48000, 2)
	var ts []byte
	m := NewMuxer([]Track{{PID: pidAudio, Kind: media.KindAudio, Audio: cfg}}, func(p []byte) error { ts = append(ts, p...); return nil })
	rng := rand.New(rand.NewPCG(1, 1))
	for i := int64(0); i < 1000; i++ {
		m.WriteFrame(pidAudio, media.Frame{PTS: cfg.FramePTS(i), Data: rawAU(rng, 300+rng.IntN(100))})
	}
	d := NewDemuxer(Handler{OnFrame: func(uint16, media.Frame) {}})
	b.SetBytes(int64(len(ts)))
	b.ReportAllocs()
	for b.Loop() {
		for p := ts; len(p) > 0; p = p[min(len(p), MaxMessage):] {
			d.Feed(p[:min(len(p), MaxMessage)])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ts)/PacketSize), "ns/packet")
}

func BenchmarkMux(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	var n int
	m := NewMuxer(avTracks(), func(p []byte) error { n += len(p); return nil })
	audio := rawAU(rng, 380)
	video := fakeAU(rng, 20000, false, true)
	acfg := aacCfg(48000, 2)
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		p := acfg.FramePTS(i)
		m.WriteFrame(pidAudio, media.Frame{PTS: p, DTS: p, Data: audio})
		if i%2 == 0 {
			m.WriteFrame(pidVideo, media.Frame{PTS: p, DTS: p, Data: video})
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n/PacketSize), "ns/packet")
}

// TestConfigChange: the same PID switches sample rate mid-stream (a new
// encoder behind the same muxer layout); OnTrack is called again.
func TestConfigChange(t *testing.T) {
	var ts []byte
	emit := func(b []byte) error { ts = append(ts, b...); return nil }
	for _, rate := range []int{48000, 44100} {
		cfg := aacCfg(rate, 2)
		m := NewMuxer([]Track{{PID: pidAudio, Kind: media.KindAudio, Audio: cfg}}, emit)
		for i := int64(0); i < 10; i++ {
			if err := m.WriteFrame(pidAudio, media.Frame{PTS: cfg.FramePTS(i), Data: []byte{1, 2, 3}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	g, h := collect()
	d := NewDemuxer(h)
	if err := d.Feed(ts); err != nil {
		t.Fatal(err)
	}
	if len(g.tracks) != 2 || g.tracks[0].Audio.SampleRate != 48000 || g.tracks[1].Audio.SampleRate != 44100 {
		t.Fatalf("tracks %+v", g.tracks)
	}
	if n := len(g.frames[pidAudio]); n != 20 {
		t.Fatalf("%d frames", n)
	}
	if f := g.frames[pidAudio][11]; f.PTS != aacCfg(44100, 2).FramePTS(1) {
		t.Fatalf("PTS after the change: %d", f.PTS)
	}
}
