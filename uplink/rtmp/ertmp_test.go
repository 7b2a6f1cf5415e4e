package rtmp

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"tandem/uplink/flv"
	"tandem/uplink/h264"
	"tandem/uplink/media"
)

// sendRaw publishes app/name with a Client that has no track configs (so
// it sends nothing by itself) and then sends the given video tag bodies
// as raw RTMP video messages at the given timestamps.
func sendRaw(t *testing.T, addr, name string, typ uint8, tags [][]byte, ts []uint32) *Client {
	t.Helper()
	cl, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/" + name})
	if err != nil {
		t.Fatal(err)
	}
	for i, body := range tags {
		if err := cl.c.write(tagMessage(cl.streamID, flv.Tag{Type: typ, Timestamp: ts[i], Body: body})); err != nil {
			t.Fatalf("sending tag %d: %v", i, err)
		}
	}
	return cl
}

func si24(v int32) []byte { return []byte{byte(v >> 16), byte(v >> 8), byte(v)} }

// TestEnhancedRTMP: E-RTMP ExVideoTagHeader 'avc1' packets, crafted by
// hand, give the same configs and frames as the legacy AVC tags; 'hvc1'
// is refused with an error naming it.
func TestEnhancedRTMP(t *testing.T) {
	ss := newSinks()
	_, addr := startServer(t, ServerConfig{OnPublish: ss.onPublish})
	vcfg := testVideoConfig(t)
	rec, err := h264.AppendAVCDecoderConfig(nil, vcfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	type vf struct {
		key bool
		cts int32
		au  []byte
	}
	var frames []vf
	for i := 0; i < 30; i++ {
		frames = append(frames, vf{i%10 == 0, []int32{0, 80, 40, -40}[i%4], fakeAU(rng, 50+rng.IntN(9000), i%10 == 0)})
	}
	var legacy, enhanced [][]byte
	var ts []uint32
	legacy = append(legacy, append([]byte{0x17, 0, 0, 0, 0}, rec...))
	// ExVideoTagHeader: IsExHeader | FrameType 1 (key) | PacketType 0 (SequenceStart), FourCC.
	enhanced = append(enhanced, append([]byte{0x80 | 1<<4 | 0, 'a', 'v', 'c', '1'}, rec...))
	ts = append(ts, 1000)
	// Extras the server must ignore: a Metadata packet (colorInfo), a
	// command frame.
	meta := []byte{0x80 | 1<<4 | 4, 'a', 'v', 'c', '1', 0x02, 0, 9, 'c', 'o', 'l', 'o', 'r', 'I', 'n', 'f', 'o', 0x03, 0, 0, 9}
	enhanced = append(enhanced, meta, []byte{0x80 | 5<<4 | 1, 0})
	legacy = append(legacy, []byte{0x57, 0}, []byte{0x57, 1}) // legacy command frames
	ts = append(ts, 1000, 1000)
	for i, f := range frames {
		avcc := h264.AnnexBToAVCC(nil, f.au)
		ft := byte(2)
		if f.key {
			ft = 1
		}
		legacy = append(legacy, append(append([]byte{ft<<4 | 7, 1}, si24(f.cts)...), avcc...))
		if f.cts == 0 {
			// CodedFramesX: no composition time field.
			enhanced = append(enhanced, append([]byte{0x80 | ft<<4 | 3, 'a', 'v', 'c', '1'}, avcc...))
		} else {
			enhanced = append(enhanced, append(append([]byte{0x80 | ft<<4 | 1, 'a', 'v', 'c', '1'}, si24(f.cts)...), avcc...))
		}
		ts = append(ts, 1000+uint32(i)*40)
	}
	legacy = append(legacy, []byte{0x17, 2, 0, 0, 0})
	enhanced = append(enhanced, []byte{0x80 | 1<<4 | 2, 'a', 'v', 'c', '1'})
	ts = append(ts, ts[len(ts)-1])

	got := map[string][]media.Frame{}
	for _, c := range []struct {
		name string
		tags [][]byte
	}{{"legacy", legacy}, {"enhanced", enhanced}} {
		cl := sendRaw(t, addr, c.name, flv.TagVideo, c.tags, ts)
		sink := ss.wait(t, time.Second)
		cl.Close()
		if err := sink.waitClosed(t, 5*time.Second); err != nil {
			t.Fatalf("%s: OnClose(%v)", c.name, err)
		}
		_, v, fr := sink.snapshot()
		if len(v) != 1 || !bytes.Equal(v[0].SPS, vcfg.SPS) || !bytes.Equal(v[0].PPS, vcfg.PPS) {
			t.Fatalf("%s: video configs %+v", c.name, v)
		}
		got[c.name] = fr
	}
	if len(got["legacy"]) != len(frames) || len(got["enhanced"]) != len(frames) {
		t.Fatalf("legacy %d frames, enhanced %d, sent %d", len(got["legacy"]), len(got["enhanced"]), len(frames))
	}
	for i, f := range frames {
		a, b := got["legacy"][i], got["enhanced"][i]
		wantDTS := int64(ts[i+3]) * 90
		if a.DTS != wantDTS || a.PTS != wantDTS+int64(f.cts)*90 || a.Key != f.key || !bytes.Equal(a.Data, f.au) {
			t.Fatalf("legacy frame %d: %s", i, describeFrame(a))
		}
		if a.Kind != b.Kind || a.PTS != b.PTS || a.DTS != b.DTS || a.Key != b.Key || !bytes.Equal(a.Data, b.Data) {
			t.Fatalf("frame %d: enhanced %s, legacy %s", i, describeFrame(b), describeFrame(a))
		}
	}

	// Other FourCCs are refused, naming the codec.
	for _, c := range []struct {
		fourcc, name string
	}{{"hvc1", "HEVC"}, {"av01", "AV1"}, {"vp09", "VP9"}} {
		cl := sendRaw(t, addr, c.fourcc, flv.TagVideo, [][]byte{append([]byte{0x80 | 1<<4 | 0}, c.fourcc...)}, []uint32{0})
		sink := ss.wait(t, time.Second)
		err := sink.waitClosed(t, 5*time.Second)
		if !errors.Is(err, flv.ErrUnsupported) || !strings.Contains(err.Error(), `"`+c.fourcc+`" (`+c.name+`)`) || !strings.Contains(err.Error(), "only H.264") {
			t.Errorf("%s: OnClose(%v)", c.fourcc, err)
		}
		cl.Close()
	}
	// Legacy non-AVC codecs and enhanced audio are refused too.
	for _, c := range []struct {
		typ  uint8
		body []byte
		want string
	}{
		{flv.TagVideo, []byte{0x12, 0}, "Sorenson H.263"},
		{flv.TagVideo, []byte{0x1C, 0, 0, 0, 0}, "codec id 12"},
		{flv.TagAudio, []byte{0x2F, 0xFF}, "MP3"},
		{flv.TagAudio, []byte{0x90, 'm', 'p', '4', 'a'}, "ExAudioTagHeader"},
		{flv.TagVideo, []byte{0x80 | 1<<4 | 6, 0, 'a', 'v', 'c', '1'}, "multitrack"},
	} {
		cl := sendRaw(t, addr, "x", c.typ, [][]byte{c.body}, []uint32{0})
		sink := ss.wait(t, time.Second)
		if err := sink.waitClosed(t, 5*time.Second); !errors.Is(err, flv.ErrUnsupported) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("% x: OnClose(%v), want %q", c.body, err, c.want)
		}
		cl.Close()
	}
}
