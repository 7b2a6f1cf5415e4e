package flv

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"tandem/uplink/adts"
	"tandem/uplink/h264"
	"tandem/uplink/media"
	"tandem/uplink/rtmp/amf0"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

var (
	testSPS = unhex("6764000dacd94141fb011000000300100000030320f1429960")
	testPPS = unhex("68ebe3cb22c0")
)

func videoCfg(t testing.TB) media.VideoConfig {
	cfg, err := h264.ParseSPS(testSPS)
	if err != nil {
		t.Fatal(err)
	}
	cfg.PPS = testPPS
	return cfg
}

var aac48 = media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}

func au(key bool, n int) []byte {
	b := []byte{0, 0, 0, 1, 9, 0xF0}
	if key {
		b = append(b, 0, 0, 0, 1)
		b = append(b, testSPS...)
		b = append(b, 0, 0, 0, 1)
		b = append(b, testPPS...)
		b = append(b, 0, 0, 0, 1, 0x65)
	} else {
		b = append(b, 0, 0, 0, 1, 0x41)
	}
	for len(b) < n {
		b = append(b, byte(len(b)%250+1))
	}
	return b
}

func TestParseAudioTag(t *testing.T) {
	tag, err := ParseAudioTag(unhex("af 00 1190"))
	if err != nil || tag.SoundFormat != 10 || tag.SoundRate != 3 || tag.SoundSize != 1 || tag.SoundType != 1 || tag.AACPacketType != 0 || !bytes.Equal(tag.Data, unhex("1190")) {
		t.Errorf("%+v %v", tag, err)
	}
	if tag, err := ParseAudioTag(unhex("2f ff fb")); err != nil || tag.SoundFormat != 2 || len(tag.Data) != 2 {
		t.Errorf("MP3: %+v %v", tag, err)
	}
	for _, c := range []struct {
		b    string
		is   error
		want string
	}{
		{"", ErrTruncated, "audio tag of 0 bytes"},
		{"af", ErrTruncated, "AAC audio tag of 1 byte(s), needs 2"},
		{"af 02", ErrInvalid, "AACPacketType 2"},
	} {
		if _, err := ParseAudioTag(unhex(c.b)); !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v", c.b, err)
		}
	}
}

func TestParseVideoTag(t *testing.T) {
	cases := []struct {
		b    string
		want VideoTag
	}{
		{"17 00 000000 0164", VideoTag{FrameType: 1, CodecID: 7, FourCC: "avc1", PacketType: 0, Data: unhex("0164")}},
		{"27 01 ffffd8 aa", VideoTag{FrameType: 2, CodecID: 7, FourCC: "avc1", PacketType: 1, CompositionTime: -40, Data: unhex("aa")}},
		{"17 02 000000", VideoTag{FrameType: 1, CodecID: 7, FourCC: "avc1", PacketType: 2, Data: []byte{}}},
		{"57 01", VideoTag{FrameType: 5, CodecID: 7, FourCC: "avc1", Command: 1}},
		{"12 55", VideoTag{FrameType: 1, CodecID: 2, Data: unhex("55")}},
		// Enhanced: key frame, SequenceStart, avc1.
		{"90 61766331 01", VideoTag{Enhanced: true, FrameType: 1, FourCC: "avc1", PacketType: 0, Data: unhex("01")}},
		// CodedFrames with composition time 80.
		{"a1 61766331 000050 bb", VideoTag{Enhanced: true, FrameType: 2, FourCC: "avc1", PacketType: 1, CompositionTime: 80, Data: unhex("bb")}},
		// CodedFramesX: no composition time.
		{"a3 61766331 bb", VideoTag{Enhanced: true, FrameType: 2, FourCC: "avc1", PacketType: 3, Data: unhex("bb")}},
		// av01 CodedFrames carries no composition time.
		{"91 61763031 cc", VideoTag{Enhanced: true, FrameType: 1, FourCC: "av01", PacketType: 1, Data: unhex("cc")}},
		// Command frame: a command byte, no FourCC.
		{"d1 00", VideoTag{Enhanced: true, FrameType: 5, PacketType: 1, Command: 0}},
		// Metadata ignores the frame type.
		{"d4 61766331 05", VideoTag{Enhanced: true, FrameType: 5, FourCC: "avc1", PacketType: 4, Data: unhex("05")}},
	}
	for _, c := range cases {
		got, err := ParseVideoTag(unhex(c.b))
		if err != nil {
			t.Errorf("%s: %v", c.b, err)
			continue
		}
		if got.FrameType != c.want.FrameType || got.Enhanced != c.want.Enhanced || got.CodecID != c.want.CodecID ||
			got.FourCC != c.want.FourCC || got.PacketType != c.want.PacketType || got.CompositionTime != c.want.CompositionTime ||
			got.Command != c.want.Command || !bytes.Equal(got.Data, c.want.Data) {
			t.Errorf("%s: %+v, want %+v", c.b, got, c.want)
		}
	}
	errs := []struct {
		b    string
		is   error
		want string
	}{
		{"", ErrTruncated, "0 bytes"},
		{"17 01 00", ErrTruncated, "AVC video tag of 3 byte(s)"},
		{"17 03 000000", ErrInvalid, "AVCPacketType 3"},
		{"07 01 000000", ErrInvalid, "frame type 0"},
		{"91 6176", ErrTruncated, "needs 5"},
		{"91 61766331 00", ErrTruncated, "CodedFrames tag of 6 bytes"},
		{"96 00 61766331", ErrUnsupported, "multitrack"},
		{"97 00", ErrUnsupported, "ModEx"},
		{"98 61766331", ErrInvalid, "packet type 8"},
		{"d1", ErrTruncated, "command frame of 1 byte"},
		{"57", ErrTruncated, "command frame of 1 byte"},
	}
	for _, c := range errs {
		if _, err := ParseVideoTag(unhex(c.b)); !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %v %q", c.b, err, c.is, c.want)
		}
	}
	// The builders produce the layouts parsed above.
	if b := AppendExVideoTag(nil, FrameInter, PacketCodedFrames, FourCCAVC, 80, unhex("bb")); !bytes.Equal(b, unhex("a1 61766331 000050 bb")) {
		t.Errorf("AppendExVideoTag: % x", b)
	}
	if b := AppendExVideoTag(nil, FrameInter, PacketCodedFramesX, FourCCAVC, 0, unhex("bb")); !bytes.Equal(b, unhex("a3 61766331 bb")) {
		t.Errorf("AppendExVideoTag X: % x", b)
	}
	if b := AppendAVCTag(nil, FrameInter, PacketCodedFrames, -40, unhex("aa")); !bytes.Equal(b, unhex("27 01 ffffd8 aa")) {
		t.Errorf("AppendAVCTag: % x", b)
	}
}

type rec struct {
	audio  []media.AudioConfig
	video  []media.VideoConfig
	frames []media.Frame
}

func (r *rec) OnAudioConfig(c media.AudioConfig) { r.audio = append(r.audio, c) }
func (r *rec) OnVideoConfig(c media.VideoConfig) { r.video = append(r.video, c) }
func (r *rec) OnFrame(f media.Frame)             { r.frames = append(r.frames, f) }

// TestMuxDemux: frames through Muxer, an FLV file and Demuxer come back
// with timestamps relative to the first frame, floored to the ms.
func TestMuxDemux(t *testing.T) {
	vcfg := videoCfg(t)
	m, err := NewMuxer(&aac48, &vcfg)
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	w, err := NewWriter(&file, true, true)
	if err != nil {
		t.Fatal(err)
	}
	base := int64(1 << 33)
	var in []media.Frame
	in = append(in, media.Frame{Kind: media.KindVideo, DTS: base + 100, PTS: base + 100, Key: false, Data: au(false, 50)}) // before the first key: dropped
	for i := int64(0); i < 50; i++ {
		in = append(in, media.Frame{Kind: media.KindAudio, DTS: base + aac48.FramePTS(i), PTS: base + aac48.FramePTS(i), Key: true, Data: []byte{byte(i), 1, 2}})
		if i%2 == 0 {
			d := base + i*1800
			in = append(in, media.Frame{Kind: media.KindVideo, DTS: d, PTS: d + 7200, Key: i%20 == 0, Data: au(i%20 == 0, 100+int(i))})
		}
	}
	if err := w.WriteTag(Tag{Type: TagScript, Body: mustAMF(t, m.Metadata())}); err != nil {
		t.Fatal(err)
	}
	for _, f := range in {
		if err := m.WriteFrame(f, w.WriteTag); err != nil {
			t.Fatal(err)
		}
	}
	if st := m.Stats(); st.WaitingForKey != 1 || st.AudioFrames != 50 || st.VideoFrames != 25 {
		t.Errorf("mux stats %+v", st)
	}
	r, err := NewReader(bytes.NewReader(file.Bytes()))
	if err != nil || !r.HasAudio || !r.HasVideo {
		t.Fatal(err)
	}
	got := &rec{}
	d := NewDemuxer(got)
	for {
		tag, err := r.ReadTag()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch tag.Type {
		case TagAudio:
			err = d.Audio(tag.Timestamp, tag.Body)
		case TagVideo:
			err = d.Video(tag.Timestamp, tag.Body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got.audio) != 1 || got.audio[0] != aac48 || len(got.video) != 1 || got.video[0].Width != 320 {
		t.Fatalf("configs %v %v", got.audio, got.video)
	}
	want := in[1:]
	if len(got.frames) != len(want) {
		t.Fatalf("%d frames, want %d", len(got.frames), len(want))
	}
	for i, f := range got.frames {
		w := want[i]
		if f.DTS != (w.DTS-base)/90*90 || f.PTS != (w.PTS-base)/90*90 || f.Key != w.Key || !bytes.Equal(f.Data, w.Data) {
			t.Fatalf("frame %d: %+v, want %+v", i, f, w)
		}
	}
}

func mustAMF(t *testing.T, vals []any) []byte {
	t.Helper()
	b, err := amf0.Encode(vals...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMuxerDetails: clamping, in-band configs, HE-AAC, errors.
func TestMuxerDetails(t *testing.T) {
	m, _ := NewMuxer(&aac48, nil)
	var tags []Tag
	emit := func(tg Tag) error { tags = append(tags, tg); return nil }
	// No video config: the first keyframe's in-band SPS/PPS give it.
	if err := m.WriteFrame(media.Frame{Kind: media.KindVideo, DTS: 9000, PTS: 9000, Key: true, Data: au(true, 40)}, emit); err != nil {
		t.Fatal(err)
	}
	if len(tags) != 2 || tags[0].Body[1] != PacketSequenceStart || !m.HasVideo() {
		t.Fatalf("tags %v", tags)
	}
	// Audio 10 ms before the first frame: sent at 0, counted.
	if err := m.WriteFrame(media.Frame{Kind: media.KindAudio, DTS: 8100, PTS: 8100, Data: []byte{1}}, emit); err != nil {
		t.Fatal(err)
	}
	if tags[len(tags)-1].Timestamp != 0 || m.Stats().Clamped != 1 {
		t.Errorf("clamped frame at %d, stats %+v", tags[len(tags)-1].Timestamp, m.Stats())
	}
	if err := m.WriteFrame(media.Frame{Kind: media.KindVideo, DTS: 9000, PTS: 9000 + 1<<31, Data: au(false, 40)}, emit); err == nil {
		t.Error("composition time beyond 24 bits accepted")
	}
	if err := m.WriteFrame(media.Frame{Kind: 7}, emit); !errors.Is(err, ErrUnsupported) {
		t.Errorf("kind 7: %v", err)
	}
	if _, err := NewMuxer(&media.AudioConfig{Codec: media.CodecMP3, SampleRate: 44100, Channels: 2}, nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("MP3: %v", err)
	}
	if _, err := NewMuxer(&media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 7}, nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("7 channels: %v", err)
	}
	if _, err := NewMuxer(nil, &media.VideoConfig{Codec: media.CodecH264}); err == nil {
		t.Error("video config without SPS accepted")
	}
	// HE-AAC: the ASC is written as AAC-LC at the core rate (implicit SBR).
	he := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 5, SampleRate: 24000, Channels: 2}
	m, _ = NewMuxer(&he, nil)
	tags = nil
	m.WriteFrame(media.Frame{Kind: media.KindAudio, Data: []byte{1}}, emit)
	asc, err := adts.ParseASC(tags[0].Body[2:])
	if err != nil || asc.ObjectType != 2 || asc.SampleRate != 24000 {
		t.Errorf("HE-AAC ASC %v %v", asc, err)
	}
}

// TestDemuxerDetails: frames before configs, empty sequence headers
// (FFmpeg), Annex-B payloads, parameter sets inserted after the AUD.
func TestDemuxerDetails(t *testing.T) {
	r := &rec{}
	d := NewDemuxer(r)
	if err := d.Audio(0, unhex("af 01 aa")); !errors.Is(err, ErrNoConfig) {
		t.Errorf("AAC before config: %v", err)
	}
	if err := d.Audio(0, unhex("af 00")); err != nil || len(r.audio) != 0 {
		t.Errorf("empty AAC sequence header: %v", err)
	}
	if err := d.Video(0, unhex("17 00 000000")); err != nil || len(r.video) != 0 {
		t.Errorf("empty AVC sequence header: %v", err)
	}
	if err := d.Video(0, append(unhex("27 01 000000"), h264.AnnexBToAVCC(nil, au(false, 30))...)); !errors.Is(err, ErrNoConfig) {
		t.Errorf("AVC before config: %v", err)
	}
	// Annex-B with in-band SPS/PPS and no sequence header.
	if err := d.Video(40, append(unhex("17 01 000000"), au(true, 60)...)); err != nil {
		t.Fatal(err)
	}
	if len(r.video) != 1 || len(r.frames) != 1 || !r.frames[0].Key || d.Stats().AnnexB != 1 {
		t.Fatalf("Annex-B keyframe: %d configs, %d frames, %+v", len(r.video), len(r.frames), d.Stats())
	}
	// A keyframe without SPS/PPS gets them after its AUD.
	vcfg := videoCfg(t)
	rec, _ := h264.AppendAVCDecoderConfig(nil, vcfg)
	d.Video(80, append(unhex("17 00 000000"), rec...))
	idr := []byte{0, 0, 0, 1, 9, 0xF0, 0, 0, 0, 1, 0x65, 1, 2, 3}
	if err := d.Video(80, append(unhex("17 01 000000"), h264.AnnexBToAVCC(nil, idr)...)); err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 1, 9, 0xF0, 0, 0, 0, 1}
	want = append(want, testSPS...)
	want = append(want, 0, 0, 0, 1)
	want = append(want, testPPS...)
	want = append(want, 0, 0, 0, 1, 0x65, 1, 2, 3)
	if f := r.frames[len(r.frames)-1]; !bytes.Equal(f.Data, want) || !f.Key || f.DTS != 80*90 {
		t.Errorf("keyframe with inserted parameter sets: % x", f.Data)
	}
	// An IDR declared as an inter frame is still a key frame (counted).
	if err := d.Video(120, append(unhex("27 01 000000"), h264.AnnexBToAVCC(nil, au(true, 40))...)); err != nil || !r.frames[len(r.frames)-1].Key || d.Stats().KeyMismatch != 1 {
		t.Errorf("IDR as inter frame: %v %+v", err, d.Stats())
	}
	// Broken NAL lengths.
	if err := d.Video(160, unhex("27 01 000000 00000010 65")); err == nil || !strings.Contains(err.Error(), "NAL unit of 16 bytes, 1 left") {
		t.Errorf("bad NAL length: %v", err)
	}
}

func TestUnwrapper(t *testing.T) {
	var u Unwrapper
	steps := []struct {
		in   uint32
		want int64
	}{{0xFFFFFF00, 0xFFFFFF00}, {0xFFFFFFF0, 0xFFFFFFF0}, {0x10, 1<<32 + 0x10}, {0xFFFFFFFF, 1<<32 - 1}, {0x20, 1<<32 + 0x20}, {0x80000000, 1<<32 + 0x80000000}, {0xF0000000, 1<<32 + 0xF0000000}, {0x10, 2<<32 + 0x10}}
	for _, s := range steps {
		if got := u.Unwrap(s.in); got != s.want {
			t.Errorf("Unwrap(%#x) = %#x, want %#x", s.in, got, s.want)
		}
	}
}

func TestFileErrors(t *testing.T) {
	if _, err := NewReader(strings.NewReader("FLX\x01\x05\x00\x00\x00\x09")); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad signature: %v", err)
	}
	if _, err := NewReader(strings.NewReader("FLV")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short header: %v", err)
	}
	var b bytes.Buffer
	w, _ := NewWriter(&b, true, false)
	w.WriteTag(Tag{Type: TagAudio, Timestamp: 0x12345678, Body: []byte{0xAF, 1, 9}})
	full := b.Bytes()
	r, _ := NewReader(bytes.NewReader(full))
	if tag, err := r.ReadTag(); err != nil || tag.Timestamp != 0x12345678 || len(tag.Body) != 3 {
		t.Errorf("tag %+v %v", tag, err)
	}
	r, _ = NewReader(bytes.NewReader(full[:len(full)-6]))
	if _, err := r.ReadTag(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut tag: %v", err)
	}
}

func fuzzSeeds(f *testing.F) {
	vcfg := videoCfg(f)
	rec, _ := h264.AppendAVCDecoderConfig(nil, vcfg)
	for _, s := range []string{"af 00 1190", "af 01 aabb", "17 00 000000", "27 01 ffffd8 00000002 4101", "57 01",
		"90 61766331", "a1 61766331 000050 00000002 4101", "a3 61766331 00000002 4101", "d1 00", "96 00 61766331"} {
		f.Add(false, unhex(s))
		f.Add(true, unhex(s))
	}
	f.Add(true, append(unhex("17 00 000000"), rec...))
	f.Add(true, append(unhex("90 61766331"), rec...))
	f.Add(true, append(unhex("17 01 000000"), au(true, 50)...))
}

// FuzzTags: the tag parsers and the Demuxer never panic, and what the
// Demuxer delivers is well formed.
func FuzzTags(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, video bool, b []byte) {
		r := &rec{}
		d := NewDemuxer(r)
		// Give the demuxer configs first so frames get through.
		rec, _ := h264.AppendAVCDecoderConfig(nil, videoCfg(t))
		d.Video(0, append(unhex("17 00 000000"), rec...))
		d.Audio(0, unhex("af 00 1190"))
		if video {
			ParseVideoTag(b)
			d.Video(40, b)
		} else {
			ParseAudioTag(b)
			d.Audio(40, b)
		}
		for _, f := range r.frames {
			if len(f.Data) == 0 || f.DTS != 40*90 {
				t.Fatalf("frame %+v", f)
			}
			if f.Kind == media.KindVideo && f.Key {
				var sps bool
				for nal := range h264.NALUnits(f.Data) {
					sps = sps || h264.NALType(nal) == h264.NALSPS
				}
				if !sps {
					t.Fatalf("keyframe without SPS: % x", f.Data)
				}
			}
		}
	})
}

// FuzzFile: the FLV file reader never panics on arbitrary input.
func FuzzFile(f *testing.F) {
	var b bytes.Buffer
	w, _ := NewWriter(&b, true, true)
	w.WriteTag(Tag{Type: TagAudio, Body: unhex("af 00 1190")})
	w.WriteTag(Tag{Type: TagVideo, Timestamp: 1 << 30, Body: unhex("17 02 000000")})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := NewReader(bytes.NewReader(in))
		if err != nil {
			return
		}
		for i := 0; i < 1000; i++ {
			if _, err := r.ReadTag(); err != nil {
				return
			}
		}
	})
}
