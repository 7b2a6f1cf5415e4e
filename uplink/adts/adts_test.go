package adts

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"tandem/scripts/testenv"
	"tandem/uplink/media"
)

func aac(rate, ch int) media.AudioConfig {
	return media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: rate, Channels: ch}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, rate := range sampleRates {
		for _, ch := range []int{1, 2, 3, 4, 5, 6, 8} {
			for _, aot := range []int{1, 2, 3, 4} {
				cfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: aot, SampleRate: rate, Channels: ch}
				for _, n := range []int{1, 200, 1500, MaxFrameLength - 7} {
					hb, err := HeaderBytes(cfg, n)
					if err != nil {
						t.Fatalf("HeaderBytes(%v, %d): %v", cfg, n, err)
					}
					h, err := ParseHeader(hb[:])
					if err != nil {
						t.Fatalf("ParseHeader(%x): %v", hb, err)
					}
					want := Header{Config: cfg, FrameLength: n + 7, HeaderLength: 7, BufferFullness: 0x7FF, RawBlocks: 1}
					if h != want {
						t.Fatalf("got %+v, want %+v", h, want)
					}
					// PatchLength from another length gives the same bytes.
					hb2, _ := HeaderBytes(cfg, 3)
					if err := PatchLength(&hb2, n); err != nil || hb2 != hb {
						t.Fatalf("PatchLength: %x, want %x (%v)", hb2, hb, err)
					}
				}
			}
		}
	}
}

func TestHeaderKnownBytes(t *testing.T) {
	// ffmpeg's header for AAC-LC 48 kHz stereo, 371-byte frame.
	hb, err := HeaderBytes(aac(48000, 2), 371-7)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0xFF, 0xF1, 0x4C, 0x80, 0x2E, 0x7F, 0xFC}
	if !bytes.Equal(hb[:], want) {
		t.Fatalf("header % x, want % x", hb, want)
	}
}

func TestParseHeaderErrors(t *testing.T) {
	good, _ := HeaderBytes(aac(48000, 2), 100)
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good[:]...)
		f(b)
		return b
	}
	cases := []struct {
		name string
		b    []byte
		is   error
		msg  string
	}{
		{"short", good[:5], ErrShort, "need 7"},
		{"nosync", mod(func(b []byte) { b[1] = 0x71 }), ErrNoSync, "syncword"},
		{"layer", mod(func(b []byte) { b[1] |= 0x06 }), ErrInvalid, "layer"},
		{"rate", mod(func(b []byte) { b[2] = b[2]&^0x3C | 13<<2 }), ErrInvalid, "sampling frequency index 13"},
		{"chan0", mod(func(b []byte) { b[2] &^= 1; b[3] &^= 0xC0 }), ErrUnsupported, "channel configuration 0"},
		{"blocks", mod(func(b []byte) { b[6] |= 1 }), ErrUnsupported, "2 raw data blocks"},
		{"len", mod(func(b []byte) { b[3] &^= 3; b[4] = 0; b[5] = b[5]&0x1F | 6<<5 }), ErrInvalid, "frame length 6"},
		{"crcshort", mod(func(b []byte) { b[1] &^= 1 }), ErrShort, "need 9"},
	}
	for _, c := range cases {
		_, err := ParseHeader(c.b)
		if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err %v, want %v containing %q", c.name, err, c.is, c.msg)
		}
	}
	// With CRC and 9 bytes it parses.
	b := append(mod(func(b []byte) { b[1] &^= 1 }), 0, 0)
	h, err := ParseHeader(b)
	if err != nil || h.HeaderLength != 9 || h.PayloadLength() != 98 {
		t.Fatalf("crc header: %+v %v", h, err)
	}
}

func TestHeaderBytesErrors(t *testing.T) {
	for _, cfg := range []media.AudioConfig{
		{Codec: media.CodecMP3, ObjectType: 2, SampleRate: 48000, Channels: 2},
		{Codec: media.CodecAAC, ObjectType: 5, SampleRate: 48000, Channels: 2},
		{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 44000, Channels: 2},
		{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 7},
		{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 0},
	} {
		if _, err := HeaderBytes(cfg, 10); err == nil {
			t.Errorf("HeaderBytes(%v) succeeded", cfg)
		}
	}
	if _, err := HeaderBytes(aac(48000, 2), MaxFrameLength); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized payload: %v", err)
	}
	if _, err := AppendFrame(nil, aac(48000, 2), make([]byte, 9000)); err == nil {
		t.Error("AppendFrame accepted 9000 bytes")
	}
}

func makeStream(t testing.TB, cfg media.AudioConfig, n int, rng *rand.Rand) ([]byte, [][]byte) {
	var out []byte
	var payloads [][]byte
	for i := 0; i < n; i++ {
		p := make([]byte, 10+rng.IntN(700))
		for j := range p {
			p[j] = byte(rng.IntN(256))
		}
		var err error
		out, err = AppendFrame(out, cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, p)
	}
	return out, payloads
}

func TestSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s, payloads := makeStream(t, aac(44100, 2), 5, rng)
	frames, rest, err := Split(s[:len(s)-3])
	if err != nil || len(frames) != 4 || len(rest) != len(payloads[4])+7-3 {
		t.Fatalf("split: %d frames, rest %d, %v", len(frames), len(rest), err)
	}
	for i, f := range frames {
		if !bytes.Equal(f[7:], payloads[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	frames, rest, err = Split(s)
	if err != nil || len(frames) != 5 || rest != nil {
		t.Fatalf("split all: %d, %d, %v", len(frames), len(rest), err)
	}
	bad := append(append([]byte(nil), s[:len(frames[0])]...), "garbage"...)
	frames, rest, err = Split(bad)
	if !errors.Is(err, ErrNoSync) || len(frames) != 1 || string(rest) != "garbage" {
		t.Fatalf("split bad: %d, %q, %v", len(frames), rest, err)
	}
}

func readAll(t testing.TB, r *Reader) ([][]byte, error) {
	var got [][]byte
	for {
		_, p, err := r.ReadFrame()
		if err != nil {
			return got, err
		}
		got = append(got, append([]byte(nil), p...))
	}
}

func TestReaderClean(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s, payloads := makeStream(t, aac(48000, 2), 200, rng)
	for name, src := range map[string]io.Reader{
		"whole":   bytes.NewReader(s),
		"onebyte": iotest.OneByteReader(bytes.NewReader(s)),
		"half":    iotest.HalfReader(bytes.NewReader(s)),
		"dataerr": iotest.DataErrReader(bytes.NewReader(s)),
	} {
		r := NewReader(src)
		got, err := readAll(t, r)
		if err != io.EOF {
			t.Fatalf("%s: end error %v", name, err)
		}
		if len(got) != len(payloads) || r.Skipped() != 0 || r.Frames() != int64(len(payloads)) {
			t.Fatalf("%s: %d frames, skipped %d", name, len(got), r.Skipped())
		}
		for i := range got {
			if !bytes.Equal(got[i], payloads[i]) {
				t.Fatalf("%s: frame %d differs", name, i)
			}
		}
	}
}

func TestReaderResync(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cfg := aac(44100, 1)
	var s []byte
	var payloads [][]byte
	var garbage int64
	junk := func(n int) {
		for i := 0; i < n; i++ {
			// Includes 0xFF bytes and fake syncwords.
			c := byte(rng.IntN(256))
			if i%17 == 0 {
				c = 0xFF
			}
			s = append(s, c)
		}
		garbage += int64(n)
	}
	junk(333)
	for i := 0; i < 100; i++ {
		p := make([]byte, 50+rng.IntN(300))
		for j := range p {
			p[j] = byte(rng.IntN(256))
		}
		s, _ = AppendFrame(s, cfg, p)
		payloads = append(payloads, p)
		if i%10 == 9 {
			junk(1 + rng.IntN(2000))
		}
	}
	r := NewReader(bytes.NewReader(s))
	got, err := readAll(t, r)
	if err != io.EOF {
		t.Fatalf("end error %v", err)
	}
	if len(got) != len(payloads) {
		t.Fatalf("got %d frames, want %d", len(got), len(payloads))
	}
	for i := range got {
		if !bytes.Equal(got[i], payloads[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if r.Skipped() != garbage {
		t.Fatalf("skipped %d, want %d", r.Skipped(), garbage)
	}
}

func TestReaderTruncated(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s, _ := makeStream(t, aac(48000, 2), 3, rng)
	r := NewReader(bytes.NewReader(s[:len(s)-5]))
	got, err := readAll(t, r)
	if err != io.ErrUnexpectedEOF || len(got) != 2 {
		t.Fatalf("%d frames, err %v", len(got), err)
	}
}

func TestReaderNotADTS(t *testing.T) {
	text := []byte(strings.Repeat("GET / HTTP/1.1\r\nHost: example\r\n\r\n", 10))
	_, _, err := NewReader(bytes.NewReader(text)).ReadFrame()
	if !errors.Is(err, ErrNotADTS) {
		t.Fatalf("text: %v", err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	junk := make([]byte, 200<<10)
	for i := range junk {
		junk[i] = byte(rng.IntN(256))
	}
	r := NewReader(bytes.NewReader(junk))
	_, _, err = r.ReadFrame()
	if !errors.Is(err, ErrNotADTS) || !strings.Contains(err.Error(), "no frame in 65536 bytes") {
		t.Fatalf("random: %v", err)
	}
	if r.Skipped() < MaxSyncSearch {
		t.Fatalf("skipped %d", r.Skipped())
	}
	// An empty input is just EOF.
	if _, _, err := NewReader(bytes.NewReader(nil)).ReadFrame(); err != io.EOF {
		t.Fatalf("empty: %v", err)
	}
	// A failing reader's error comes through.
	boom := errors.New("boom")
	if _, _, err := NewReader(iotest.ErrReader(boom)).ReadFrame(); err != boom {
		t.Fatalf("error reader: %v", err)
	}
}

func TestReaderAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	s, _ := makeStream(t, aac(48000, 2), 2000, rng)
	br := bytes.NewReader(s)
	r := NewReader(br)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs per frame", allocs)
	}
}

func TestASC(t *testing.T) {
	cases := []struct {
		b   []byte
		cfg media.AudioConfig
	}{
		{[]byte{0x12, 0x10}, aac(44100, 2)},
		{[]byte{0x11, 0x90}, aac(48000, 2)},
		{[]byte{0x11, 0x88}, aac(48000, 1)},
		{[]byte{0x11, 0xB0}, aac(48000, 6)},
		{[]byte{0x11, 0xB8}, aac(48000, 8)},
	}
	for _, c := range cases {
		got, err := ParseASC(c.b)
		if err != nil || got != c.cfg {
			t.Errorf("ParseASC(% x) = %v, %v; want %v", c.b, got, err, c.cfg)
		}
		if w := AppendASC(nil, c.cfg); !bytes.Equal(w, c.b) {
			t.Errorf("AppendASC(%v) = % x, want % x", c.cfg, w, c.b)
		}
	}
	// Explicit rate, escaped object type, and round trips.
	for _, cfg := range []media.AudioConfig{
		aac(44000, 2),
		{Codec: media.CodecAAC, ObjectType: 42, SampleRate: 48000, Channels: 2},
		{Codec: media.CodecAAC, ObjectType: 1, SampleRate: 8000, Channels: 1},
	} {
		b := AppendASC([]byte{0xAA}, cfg)
		got, err := ParseASC(b[1:])
		if err != nil || got != cfg || b[0] != 0xAA {
			t.Errorf("round trip %v: % x → %v, %v", cfg, b, got, err)
		}
	}
	// HE-AAC v1 explicit: SBR, core 24 kHz, stereo, extension 48 kHz, AAC-LC.
	he := []byte{0x2B, 0x11, 0x88, 0x00}
	got, err := ParseASC(he)
	want := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 5, SampleRate: 24000, Channels: 2}
	if err != nil || got != want {
		t.Errorf("HE-AAC: %v, %v; want %v", got, err, want)
	}
	for _, bad := range [][]byte{nil, {0x12}, {0x17, 0x90}, {0x12, 0x00}, {0xF8}, {0x07, 0x80, 0, 0, 0x10}} {
		if _, err := ParseASC(bad); err == nil {
			t.Errorf("ParseASC(% x) succeeded", bad)
		}
	}
}

func TestSilentFrameBits(t *testing.T) {
	// Mono: SCE(3) tag(4) gain(8) ics_info(11) pulse/tns/gain(3) END(3) = 32 bits.
	f, err := SilentFrame(aac(48000, 1))
	if err != nil || !bytes.Equal(f, []byte{0x00, 0xC8, 0x00, 0x07}) {
		t.Fatalf("mono silent frame % x, %v", f, err)
	}
	for _, ch := range []int{1, 2, 3, 4, 5, 6, 8} {
		if _, err := SilentFrame(aac(48000, ch)); err != nil {
			t.Errorf("%d channels: %v", ch, err)
		}
	}
	if _, err := SilentFrame(aac(48000, 7)); err == nil {
		t.Error("7 channels accepted")
	}
	if _, err := SilentFrame(media.AudioConfig{Codec: media.CodecAAC, ObjectType: 5, SampleRate: 48000, Channels: 2}); err == nil {
		t.Error("HE-AAC accepted")
	}
}

// TestSilentFrameDecodes writes silent frames as ADTS and decodes them with
// ffmpeg: no decoder errors, and every sample is (near) zero.
func TestSilentFrameDecodes(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	dir := t.TempDir()
	type tc struct{ rate, ch int }
	cases := []tc{{44100, 1}, {44100, 2}, {48000, 1}, {48000, 2}, {32000, 2}, {22050, 1}, {48000, 3}, {48000, 4}, {48000, 5}, {48000, 6}, {48000, 8}}
	const nframes = 200
	for _, c := range cases {
		cfg := aac(c.rate, c.ch)
		sf, err := SilentFrame(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var s []byte
		for i := 0; i < nframes; i++ {
			s, _ = AppendFrame(s, cfg, sf)
		}
		path := filepath.Join(dir, "s.aac")
		if err := os.WriteFile(path, s, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-i", path, "-f", "s16le", "-")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		pcm, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("%d Hz %d ch: ffmpeg: %v: %s", c.rate, c.ch, err, stderr.String())
		}
		// The decoder drops the first frame's priming samples: at least
		// nframes-1 frames must come out.
		if min := (nframes - 1) * 1024 * c.ch * 2; len(pcm) < min {
			t.Fatalf("%d Hz %d ch: %d bytes of PCM, want ≥ %d", c.rate, c.ch, len(pcm), min)
		}
		for i := 0; i+1 < len(pcm); i += 2 {
			v := int16(uint16(pcm[i]) | uint16(pcm[i+1])<<8)
			if v > 1 || v < -1 {
				t.Fatalf("%d Hz %d ch: sample %d = %d", c.rate, c.ch, i/2, v)
			}
		}
	}
}

// TestReaderFFmpeg reads an ADTS stream made by ffmpeg's AAC encoder and
// compares the frame count with ffprobe's.
func TestReaderFFmpeg(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	ffprobe := testenv.Need(t, "ffprobe")
	path := filepath.Join(t.TempDir(), "sine.aac")
	out, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3",
		"-ac", "2", "-c:a", "aac", "-b:a", "96k", "-f", "adts", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	out, err = exec.Command(ffprobe, "-v", "error", "-count_packets", "-select_streams", "a:0",
		"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	want := strings.TrimSpace(string(out))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := NewReader(f)
	n := 0
	for {
		h, p, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Config != aac(44100, 2) || len(p) != h.PayloadLength() {
			t.Fatalf("frame %d: %+v", n, h)
		}
		n++
	}
	if got := strconv.Itoa(n); got != want || r.Skipped() != 0 {
		t.Fatalf("read %s frames (skipped %d), ffprobe counts %s", got, r.Skipped(), want)
	}
}

func BenchmarkReader(b *testing.B) {
	rng := rand.New(rand.NewPCG(13, 14))
	s, _ := makeStream(b, aac(48000, 2), 1000, rng)
	br := bytes.NewReader(s)
	r := NewReader(br)
	b.SetBytes(int64(len(s) / 1000))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.ReadFrame(); err != nil {
			br.Reset(s)
			r = NewReader(br)
		}
	}
}
