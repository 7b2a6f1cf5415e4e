package hls

import (
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"testing"

	"tandem/uplink/h264"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
)

// An x264 SPS (640x360 baseline) and a PPS: the merge puts both in every
// keyframe it emits.
var (
	spsNAL, _ = hex.DecodeString("6742c01ed900a02ff97011000003000100000300320f162e48")
	ppsNAL    = []byte{0x68, 0xCE, 0x3C, 0x80}
	video360  = media.VideoConfig{Codec: media.CodecH264, Width: 640, Height: 360, SPS: spsNAL, PPS: ppsNAL}
)

// feedAV writes seconds of 48 kHz audio and 25 fps video with a keyframe
// every gop frames, in timestamp order as the merge emits them, starting at
// output PTS origin. Video frame i carries i in its slice data.
func feedAV(s *Segmenter, origin int64, seconds, gop int) {
	audio := synthFrames(1)
	nA := int64(seconds) * 48000 / 1024
	nV := int64(seconds) * 25
	a, v := int64(0), int64(0)
	for a < nA || v < nV {
		aPTS := origin + aac48.FramePTS(a)
		vPTS := origin + v*3600
		if v < nV && (a >= nA || vPTS < aPTS) {
			key := v%int64(gop) == 0
			au := []byte{0, 0, 0, 1, 0x41, 0x9a, byte(v), byte(v >> 8)}
			if key {
				au = h264.WithParameterSets([]byte{0, 0, 0, 1, 0x65, 0x88, byte(v), byte(v >> 8)}, spsNAL, ppsNAL)
			}
			s.WriteFrame(media.Frame{Kind: media.KindVideo, PTS: vPTS, DTS: vPTS, Key: key, Data: au})
			v++
			continue
		}
		s.WriteFrame(media.Frame{Kind: media.KindAudio, PTS: aPTS, DTS: aPTS, Key: true, Data: audio[0]})
		a++
	}
}

type avSegment struct {
	audio, video []media.Frame
}

func demuxAV(t *testing.T, data []byte) avSegment {
	t.Helper()
	var seg avSegment
	d := mpegts.NewDemuxer(mpegts.Handler{OnFrame: func(pid uint16, f media.Frame) {
		if f.Kind == media.KindVideo {
			seg.video = append(seg.video, f)
		} else {
			seg.audio = append(seg.audio, f)
		}
	}})
	if err := d.Feed(data); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	return seg
}

func TestVideoSegmentsStartAtKeyframes(t *testing.T) {
	for _, gop := range []int{25, 15, 50} { // 1 s, 0.6 s and a GOP longer than the target
		t.Run(fmt.Sprintf("gop%d", gop), func(t *testing.T) {
			const origin = 1 << 32 // past 33-bit wrap territory is the muxer's job
			s := New(Config{Audio: aac48, Video: video360, Window: 20})
			srv := httptest.NewServer(s)
			defer srv.Close()
			feedAV(s, origin, 20, gop)
			s.Close()
			p := getPlaylist(t, srv.URL+"/")
			if p.target != 2 {
				t.Fatalf("target duration %d, want 2", p.target)
			}
			nextV := int64(0)
			for i, sg := range p.segs {
				if sg.ms > 2000+21 {
					t.Errorf("segment %s lasts %d ms, more than the 2 s target", sg.uri, sg.ms)
				}
				_, _, data := get(t, srv.URL+"/"+sg.uri)
				seg := demuxAV(t, data)
				if len(seg.video) == 0 || len(seg.audio) == 0 {
					t.Fatalf("segment %s: %d audio, %d video frames", sg.uri, len(seg.audio), len(seg.video))
				}
				first := seg.video[0]
				if gop*3600 <= 2*media.ClockRate && !first.Key {
					t.Errorf("segment %s starts with a non-key video frame", sg.uri)
				}
				if i < len(p.segs)-1 && gop == 25 && sg.ms != 2000 {
					t.Errorf("segment %s lasts %d ms, want 2000 with a 1 s GOP", sg.uri, sg.ms)
				}
				for _, f := range seg.video {
					if f.DTS != (origin+nextV*3600)&(1<<33-1) {
						t.Fatalf("segment %s: video DTS %d, want frame %d", sg.uri, f.DTS, nextV)
					}
					nextV++
				}
			}
			if nextV != 20*25 {
				t.Fatalf("segments hold %d video frames, want %d", nextV, 20*25)
			}
		})
	}
}
