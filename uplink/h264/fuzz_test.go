package h264

import (
	"bytes"
	"testing"

	"tandem/uplink/media"
)

func FuzzParseSPS(f *testing.F) {
	for _, v := range spsVectors {
		f.Add(unhex(v.hex))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseSPS(b)
		if err != nil {
			return
		}
		if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > 16384 || cfg.Height > 32768 {
			t.Fatalf("size %dx%d from % x", cfg.Width, cfg.Height, b)
		}
		// A parsable SPS round-trips through a decoder config record.
		cfg.PPS = []byte{0x68, 0xEE, 0x3C, 0x80}
		rec, err := AppendAVCDecoderConfig(nil, cfg)
		if err != nil {
			t.Fatalf("AppendAVCDecoderConfig: %v", err)
		}
		got, err := ParseAVCDecoderConfig(rec)
		if err != nil || got.Width != cfg.Width || got.Height != cfg.Height {
			t.Fatalf("record round trip: %+v %v", got, err)
		}
	})
}

func FuzzParseAVCDecoderConfig(f *testing.F) {
	for _, v := range spsVectors[:3] {
		rec, _ := AppendAVCDecoderConfig(nil, media.VideoConfig{SPS: unhex(v.hex), PPS: []byte{0x68, 0xEE, 0x3C, 0x80}})
		f.Add(rec)
	}
	f.Add([]byte{1, 0x64, 0, 0x28, 0xFF, 0xE0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseAVCDecoderConfig(b)
		if err != nil {
			return
		}
		if len(cfg.SPS) == 0 || len(cfg.PPS) == 0 || cfg.Width <= 0 {
			t.Fatalf("bad config %+v", cfg)
		}
	})
}

func FuzzAnnexB(f *testing.F) {
	f.Add(unhex("00000001091000000001676400280000016800000165880000"), 4)
	f.Add(unhex("0002091000016500"), 2)
	f.Fuzz(func(t *testing.T, b []byte, size int) {
		// Annex-B → AVCC → Annex-B keeps the NAL units (modulo trailing
		// zero bytes, which Annex-B cannot tell apart from padding).
		nals := SplitAnnexB(b)
		back, err := AVCCToAnnexB(nil, AnnexBToAVCC(nil, b), 4)
		if err != nil {
			t.Fatalf("AVCCToAnnexB of own output: %v", err)
		}
		again := SplitAnnexB(back)
		for i, n := range nals {
			if bytes.Contains(n, []byte{0, 0, 1}) {
				t.Fatalf("NAL %d contains a start code", i)
			}
		}
		if len(again) != len(nals) {
			t.Fatalf("%d NAL units, %d after round trip", len(nals), len(again))
		}
		for i := range nals {
			if !bytes.Equal(nals[i], again[i]) {
				t.Fatalf("NAL %d differs", i)
			}
		}
		IsKeyframe(b)
		ConfigFromAU(b)
		AVCCToAnnexB(nil, b, size)
	})
}
