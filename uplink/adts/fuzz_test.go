package adts

import (
	"bytes"
	"io"
	"testing"
)

func seedFrames(f *testing.F) {
	for _, cfg := range []struct{ rate, ch int }{{48000, 2}, {44100, 1}, {8000, 8}} {
		sf, _ := SilentFrame(aac(cfg.rate, cfg.ch))
		s, _ := AppendFrame(nil, aac(cfg.rate, cfg.ch), sf)
		s, _ = AppendFrame(s, aac(cfg.rate, cfg.ch), []byte("payload"))
		f.Add(s)
	}
	f.Add([]byte{0xFF, 0xF0, 0x4C, 0x80, 0x2E, 0x7F, 0xFC, 0x12, 0x34})
	f.Add([]byte("not adts at all"))
}

func FuzzParseHeader(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		if h.FrameLength <= h.HeaderLength || h.FrameLength > MaxFrameLength || h.RawBlocks != 1 ||
			h.Config.SampleRate == 0 || h.Config.Channels == 0 {
			t.Fatalf("inconsistent header %+v from % x", h, b[:7])
		}
		// Re-encoding the config gives the same fixed header fields.
		hb, err := HeaderBytes(h.Config, h.PayloadLength()+h.HeaderLength-7)
		if err != nil {
			t.Fatalf("HeaderBytes(%v): %v", h.Config, err)
		}
		if hb[2] != b[2]&^0x02 || hb[3]&0xC0 != b[3]&0xC0 {
			t.Fatalf("re-encoded % x, parsed from % x", hb, b[:7])
		}
		frames, rest, _ := Split(b)
		n := 0
		for _, fr := range frames {
			n += len(fr)
		}
		if n+len(rest) != len(b) {
			t.Fatalf("Split lost bytes: %d + %d != %d", n, len(rest), len(b))
		}
	})
}

func FuzzReader(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		total := 0
		for i := 0; ; i++ {
			h, p, err := r.ReadFrame()
			if err != nil {
				break
			}
			if len(p) != h.PayloadLength() {
				t.Fatalf("payload %d bytes, header says %d", len(p), h.PayloadLength())
			}
			total += h.FrameLength
			if i > len(b) {
				t.Fatal("more frames than input bytes")
			}
		}
		if int64(total)+r.Skipped() > int64(len(b)) {
			t.Fatalf("frames %d + skipped %d > input %d", total, r.Skipped(), len(b))
		}
		// Reading the input byte by byte gives the same frames.
		r2 := NewReader(&oneByte{b})
		r1 := NewReader(bytes.NewReader(b))
		for {
			_, p1, e1 := r1.ReadFrame()
			_, p2, e2 := r2.ReadFrame()
			if (e1 == nil) != (e2 == nil) || !bytes.Equal(p1, p2) {
				t.Fatalf("byte-wise reading differs: %v / %v", e1, e2)
			}
			if e1 != nil {
				break
			}
		}
	})
}

type oneByte struct{ b []byte }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}

func FuzzParseASC(f *testing.F) {
	f.Add([]byte{0x12, 0x10})
	f.Add([]byte{0x2B, 0x11, 0x88, 0x00})
	f.Add([]byte{0xF8, 0x00, 0x00})
	f.Add(AppendASC(nil, aac(44000, 2)))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseASC(b)
		if err != nil {
			return
		}
		if cfg.SampleRate <= 0 || cfg.Channels <= 0 || cfg.ObjectType <= 0 {
			t.Fatalf("bad config %v from % x", cfg, b)
		}
		if cfg.ObjectType == 5 || cfg.ObjectType == 29 {
			return // explicit SBR/PS is not written back
		}
		got, err := ParseASC(AppendASC(nil, cfg))
		if err != nil || got != cfg {
			t.Fatalf("round trip %v → %v, %v", cfg, got, err)
		}
	})
}
