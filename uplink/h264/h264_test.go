package h264

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"tandem/scripts/testenv"
	"tandem/uplink/media"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// SPS NAL units written by x264 (through ffmpeg 5.1), with the values
// ffprobe reports for the streams they came from.
var spsVectors = []struct {
	name                  string
	hex                   string
	profile, level        int
	width, height         int
	chroma, depth         int
	frameMBSOnly, scaling bool
}{
	{"1080p high", "67640028acd940780227e5c044000003000400000300c83c60c658", 100, 40, 1920, 1080, 1, 8, true, false},
	{"360p baseline", "6742c01ed900a02ff97011000003000100000300320f162e48", 66, 30, 640, 360, 1, 8, true, false},
	{"642x362 main", "674d401eeca05217f1126022000003000200000300641e2c5b2c", 77, 30, 642, 362, 1, 8, true, false},
	{"high10", "676e000da6cd94141fb011000003000100000300320f142996", 110, 13, 320, 240, 1, 10, true, false},
	{"high422", "677a000cbcd941419f89c044000003000400000300c83c50a658", 122, 12, 320, 184, 2, 8, true, false},
	{"high444 330x190", "67f4000d919b282a33cf7808800000030080000019078a14cb", 244, 13, 330, 190, 3, 8, true, false},
	{"576i", "6764001eacd940b424d8088000000300800000190f8a14cb", 100, 30, 720, 576, 1, 8, false, false},
	{"720p jvt cqm", "6764001facd9405005bb011000000300100000030320f1831960", 100, 31, 1280, 720, 1, 8, true, true},
}

func TestParseSPSVectors(t *testing.T) {
	for _, v := range spsVectors {
		nal := unhex(v.hex)
		s, err := DecodeSPS(nal)
		if err != nil {
			t.Errorf("%s: %v", v.name, err)
			continue
		}
		if s.ProfileIDC != v.profile || s.LevelIDC != v.level || s.Width != v.width || s.Height != v.height ||
			s.ChromaFormatIDC != v.chroma || s.BitDepthLuma != v.depth || s.FrameMBSOnly != v.frameMBSOnly {
			t.Errorf("%s: got %+v", v.name, s)
		}
		cfg, err := ParseSPS(nal)
		if err != nil || cfg.Width != v.width || cfg.Height != v.height || cfg.Codec != media.CodecH264 ||
			cfg.ProfileIDC != v.profile || cfg.LevelIDC != v.level || !bytes.Equal(cfg.SPS, nal) {
			t.Errorf("%s: ParseSPS %+v, %v", v.name, cfg, err)
		}
		nal[len(nal)-1] ^= 0xFF // the copy must not alias the input
		if bytes.Equal(cfg.SPS, nal) {
			t.Errorf("%s: SPS aliases its input", v.name)
		}
		// Every truncation fails cleanly (VUI is not read, so only the
		// part before it must be present).
		for n := 0; n < 6; n++ {
			if _, err := ParseSPS(unhex(v.hex)[:n]); err == nil {
				t.Errorf("%s: %d-byte prefix accepted", v.name, n)
			}
		}
	}
}

func TestUnescape(t *testing.T) {
	cases := []struct{ in, out string }{
		{"0102", "0102"},
		{"000003", "0000"},
		{"00000301", "000001"},
		{"0000030000030003", "000000000003"}, // the zero count restarts after an escape
		{"0000000003", "00000000"},
		{"6700000300", "67000000"},
	}
	for _, c := range cases {
		if got := hex.EncodeToString(Unescape(unhex(c.in))); got != c.out {
			t.Errorf("Unescape(%s) = %s, want %s", c.in, got, c.out)
		}
	}
}

func TestParseSPSErrors(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		msg  string
	}{
		{"empty", nil, "SPS of 0 bytes"},
		{"pps", unhex("68ee3c80"), "not an SPS"},
		{"forbidden", unhex("e7640028"), "forbidden_zero_bit"},
		{"short", unhex("67640028"), "ends early"},
		{"long ue", unhex("6764002800000000000000"), "ends early"},
	}
	for _, c := range cases {
		_, err := ParseSPS(c.b)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.name, err, c.msg)
		}
	}
}

func TestSplitAnnexB(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"0102", nil},
		{"00000165aa", []string{"65aa"}},
		{"0000000165aa", []string{"65aa"}},
		{"ff000001090000000167aa0000016800000165bb00", []string{"09", "67aa", "68", "65bb"}},
		{"000001000001", nil},
		{"0000016100000000", []string{"61"}},
	}
	for _, c := range cases {
		got := SplitAnnexB(unhex(c.in))
		var gs []string
		for _, n := range got {
			gs = append(gs, hex.EncodeToString(n))
		}
		if fmt.Sprint(gs) != fmt.Sprint(c.want) {
			t.Errorf("SplitAnnexB(%s) = %v, want %v", c.in, gs, c.want)
		}
	}
}

func TestKeyframe(t *testing.T) {
	idr := unhex("00000001091000000001" + spsVectors[0].hex + "0000000168ee3c800000016588840021")
	p := unhex("00000001093000000001419a")
	if !IsKeyframe(idr) || IsKeyframe(p) || IsKeyframe(nil) {
		t.Fatal("IsKeyframe wrong")
	}
	if !HasAUD(idr) || HasAUD(idr[10:]) {
		t.Fatal("HasAUD wrong")
	}
	if NALType(nil) != 0 || NALType([]byte{0x65}) != NALIDR {
		t.Fatal("NALType wrong")
	}
	cfg, ok, err := ConfigFromAU(idr)
	if err != nil || !ok || cfg.Width != 1920 || cfg.Height != 1080 || !bytes.Equal(cfg.PPS, unhex("68ee3c80")) {
		t.Fatalf("ConfigFromAU: %+v %v %v", cfg, ok, err)
	}
	if _, ok, err := ConfigFromAU(p); ok || err != nil {
		t.Fatalf("ConfigFromAU(P): %v %v", ok, err)
	}
	if _, ok, err := ConfigFromAU(unhex("0000000167640028")); ok || err == nil {
		t.Fatalf("ConfigFromAU(bad SPS): %v %v", ok, err)
	}
}

func TestAVCC(t *testing.T) {
	for _, v := range spsVectors {
		cfg, err := ParseSPS(unhex(v.hex))
		if err != nil {
			t.Fatal(err)
		}
		cfg.PPS = unhex("68ee3c80")
		rec, err := AppendAVCDecoderConfig([]byte{0xAB}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rec[0] != 0xAB {
			t.Fatal("dst prefix lost")
		}
		rec = rec[1:]
		if n, err := NALLengthSize(rec); n != 4 || err != nil {
			t.Fatalf("NALLengthSize %d %v", n, err)
		}
		got, err := ParseAVCDecoderConfig(rec)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if got.Width != cfg.Width || got.Height != cfg.Height || !bytes.Equal(got.SPS, cfg.SPS) || !bytes.Equal(got.PPS, cfg.PPS) {
			t.Fatalf("%s: round trip %+v", v.name, got)
		}
		hasExt := v.profile == 100 || v.profile == 110 || v.profile == 122
		if wantLen := 6 + 2 + len(cfg.SPS) + 1 + 2 + len(cfg.PPS) + 4*boolInt(hasExt); len(rec) != wantLen {
			t.Fatalf("%s: record of %d bytes, want %d", v.name, len(rec), wantLen)
		}
		if hasExt && (rec[len(rec)-4]&3 != byte(v.chroma) || rec[len(rec)-3]&7 != byte(v.depth-8)) {
			t.Fatalf("%s: extension % x", v.name, rec[len(rec)-4:])
		}
		// Truncated records fail.
		for n := 0; n < len(rec)-4*boolInt(hasExt); n++ {
			if _, err := ParseAVCDecoderConfig(rec[:n]); err == nil {
				t.Fatalf("%s: %d-byte prefix accepted", v.name, n)
			}
		}
	}
	if _, err := AppendAVCDecoderConfig(nil, media.VideoConfig{}); err == nil {
		t.Fatal("empty config accepted")
	}

	au := unhex("0000000109100000000167640028000001680000016588")
	avcc := AnnexBToAVCC(nil, au)
	want := unhex("00000002" + "0910" + "00000004" + "67640028" + "00000001" + "68" + "00000002" + "6588")
	if !bytes.Equal(avcc, want) {
		t.Fatalf("AnnexBToAVCC % x, want % x", avcc, want)
	}
	back, err := AVCCToAnnexB(nil, avcc, 4)
	if err != nil || !bytes.Equal(back, unhex("00000001091000000001676400280000000168000000016588")) {
		t.Fatalf("AVCCToAnnexB % x %v", back, err)
	}
	two := unhex("000209100001650001")
	if _, err := AVCCToAnnexB(nil, two, 2); err == nil {
		t.Fatal("truncated AVCC accepted")
	}
	if b, err := AVCCToAnnexB(nil, two[:7], 2); err != nil || !bytes.Equal(b, unhex("0000000109100000000165")) {
		t.Fatalf("2-byte lengths: % x %v", b, err)
	}
	if _, err := AVCCToAnnexB(nil, two, 3); err == nil {
		t.Fatal("length size 3 accepted")
	}
}

// TestFFmpegStreams encodes short clips with libx264 and checks the SPS
// fields against ffprobe, the keyframe flags against ffprobe's, and the
// decoder config against the one ffmpeg writes into FLV.
func TestFFmpegStreams(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	ffprobe := testenv.Need(t, "ffprobe")
	if out, _ := exec.Command(ffmpeg, "-hide_banner", "-encoders").Output(); !bytes.Contains(out, []byte("libx264")) {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg has no libx264")
		}
		t.Skip("ffmpeg has no libx264 encoder")
	}
	dir := t.TempDir()
	for _, c := range []struct{ size, pixfmt, extra string }{
		{"1920x1080", "yuv420p", ""},
		{"854x480", "yuv420p", ""},
		{"250x130", "yuv444p", ""},
		{"720x576", "yuv420p", "-flags +ildct+ilme"},
	} {
		path := filepath.Join(dir, "v.h264")
		flv := filepath.Join(dir, "v.flv")
		enc := []string{"-pix_fmt", c.pixfmt, "-c:v", "libx264", "-g", "10", "-bf", "2", "-x264-params", "aud=1"}
		enc = append(enc, strings.Fields(c.extra)...)
		// Two outputs, two encodes with the same settings: raw Annex-B and
		// FLV (whose sequence header holds ffmpeg's decoder config record).
		args := []string{"-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=" + c.size + ":rate=25:duration=0.6"}
		args = append(args, enc...)
		args = append(args, "-f", "h264", path)
		args = append(args, enc...)
		args = append(args, "-f", "flv", flv)
		if out, err := exec.Command(ffmpeg, args...).CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v: %s", err, out)
		}
		out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "stream=width,height,level", "-of", "csv=p=0", path).Output()
		if err != nil {
			t.Fatal(err)
		}
		var w, h, level int
		fmt.Sscanf(strings.TrimSpace(string(out)), "%d,%d,%d", &w, &h, &level)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, ok, err := ConfigFromAU(data)
		if err != nil || !ok {
			t.Fatalf("%s: ConfigFromAU %v %v", c.size, ok, err)
		}
		if cfg.Width != w || cfg.Height != h || cfg.LevelIDC != level {
			t.Fatalf("%s: parsed %dx%d level %d, ffprobe says %dx%d level %d", c.size, cfg.Width, cfg.Height, cfg.LevelIDC, w, h, level)
		}

		// Keyframes: split the raw stream into access units at AUDs and
		// compare with ffprobe's packet flags (ffprobe's order is decode
		// order, like the stream).
		out, err = exec.Command(ffprobe, "-v", "error", "-show_entries", "packet=flags", "-of", "csv=p=0", path).Output()
		if err != nil {
			t.Fatal(err)
		}
		var want []bool
		for _, l := range strings.Fields(string(out)) {
			want = append(want, strings.HasPrefix(l, "K"))
		}
		var got []bool
		aus := bytes.Split(data, []byte{0, 0, 0, 1, NALAUD})
		for _, au := range aus[1:] {
			got = append(got, IsKeyframe(append([]byte{0, 0, 0, 1, NALAUD}, au...)))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: keyframes\n got %v\nwant %v", c.size, got, want)
		}

		// FLV sequence header: ffmpeg's AVCDecoderConfigurationRecord.
		rec := flvAVCRecord(t, flv)
		fcfg, err := ParseAVCDecoderConfig(rec)
		if err != nil {
			t.Fatalf("%s: ffmpeg's record % x: %v", c.size, rec, err)
		}
		if fcfg.Width != w || fcfg.Height != h || !bytes.Equal(fcfg.SPS, cfg.SPS) || !bytes.Equal(fcfg.PPS, cfg.PPS) {
			t.Fatalf("%s: record config %+v differs", c.size, fcfg)
		}
		mine, err := AppendAVCDecoderConfig(nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		n := 6 + 2 + len(cfg.SPS) + 1 + 2 + len(cfg.PPS)
		if len(rec) < n || !bytes.Equal(mine[:n], rec[:n]) {
			t.Fatalf("%s: record\n mine % x\nffmpeg % x", c.size, mine, rec)
		}
	}
}

// flvAVCRecord returns the AVCDecoderConfigurationRecord of the first AVC
// sequence header tag in an FLV file.
func flvAVCRecord(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 13 || string(b[:3]) != "FLV" {
		t.Fatal("not FLV")
	}
	p := b[int(b[5])<<24|int(b[6])<<16|int(b[7])<<8|int(b[8])+4:]
	for len(p) >= 11 {
		typ := p[0]
		size := int(p[1])<<16 | int(p[2])<<8 | int(p[3])
		if len(p) < 11+size {
			break
		}
		data := p[11 : 11+size]
		if typ == 9 && len(data) > 5 && data[0]&0x0F == 7 && data[1] == 0 {
			return data[5:]
		}
		p = p[11+size+4:]
	}
	t.Fatal("no AVC sequence header in FLV")
	return nil
}
