package rtmp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/scripts/testenv"
	"tandem/uplink/flv"
	"tandem/uplink/media"
)

// fileFrames demuxes an FLV file with this package's own Demuxer.
type collector struct {
	audio  []media.AudioConfig
	video  []media.VideoConfig
	frames []media.Frame
}

func (c *collector) OnAudioConfig(a media.AudioConfig) { c.audio = append(c.audio, a) }
func (c *collector) OnVideoConfig(v media.VideoConfig) { c.video = append(c.video, v) }
func (c *collector) OnFrame(f media.Frame)             { c.frames = append(c.frames, f) }

func readFLVFile(t testing.TB, path string) *collector {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := flv.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	d := flv.NewDemuxer(c)
	for {
		tag, err := r.ReadTag()
		if errors.Is(err, io.EOF) {
			return c
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		switch tag.Type {
		case flv.TagAudio:
			err = d.Audio(tag.Timestamp, tag.Body)
		case flv.TagVideo:
			err = d.Video(tag.Timestamp, tag.Body)
		}
		if err != nil {
			t.Fatalf("demuxing %s: %v", path, err)
		}
	}
}

// TestFFmpegPublish has ffmpeg publish to the Server:
//   - live: the brief's command (real time, x264 zerolatency), checked for
//     configs, key, keyframe cadence and timeline;
//   - copy: a file encoded with B-frames at 48 kHz stereo, published with
//     -c copy; every frame must equal the file's, as read by ffprobe
//     (timestamps, keys, sizes) and by flv.Demuxer (data);
//   - tee: the tee muxer writing the same encode to RTMP and a file. FFmpeg's
//     FLV muxer then gets no global header and sends an empty sequence
//     header and Annex-B frames: the Server must cope and match the file.
func TestFFmpegPublish(t *testing.T) {
	ffmpeg := testenv.Need(t, "ffmpeg")
	src := []string{"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440"}
	x264 := []string{"-c:v", "libx264", "-g", "50", "-preset", "ultrafast", "-tune", "zerolatency", "-c:a", "aac"}
	cases := []struct {
		name    string
		encode  []string // writes the reference file {file}, if any
		publish []string // publishes to {url}
		dur     float64
	}{
		{"live", nil, concat([]string{"-re"}, src, []string{"-t", "4"}, x264, []string{"-f", "flv", "{url}"}), 4},
		{"copy",
			concat([]string{"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
				"-t", "3", "-c:v", "libx264", "-g", "50", "-bf", "2", "-preset", "veryfast", "-c:a", "aac", "-ac", "2", "-f", "flv", "{file}"}),
			[]string{"-i", "{file}", "-c", "copy", "-f", "flv", "{url}"}, 3},
		{"tee", nil, concat(src, []string{"-t", "2"}, x264, []string{"-map", "0:v", "-map", "1:a", "-f", "tee", "[f=flv]{url}|[f=flv]{file}"}), 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs, log := newLog()
			ss := newSinks()
			var gotKey string
			_, addr := startServer(t, ServerConfig{
				Logger:    log,
				Authorize: func(app, name, key string, _ net.Addr) error { gotKey = key; return nil },
				OnPublish: ss.onPublish,
			})
			file := filepath.Join(t.TempDir(), "ref.flv")
			url := "rtmp://" + addr + "/live/x?key=abc"
			expand := func(args []string) []string {
				out := []string{"-hide_banner", "-v", "error", "-nostdin", "-y"}
				for _, a := range args {
					a = strings.ReplaceAll(a, "{url}", url)
					out = append(out, strings.ReplaceAll(a, "{file}", file))
				}
				return out
			}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			if tc.encode != nil {
				if out, err := runCmd(ctx, ffmpeg, expand(tc.encode)...); err != nil {
					t.Fatalf("ffmpeg encode: %v\n%s", err, out)
				}
			}
			if out, err := runCmd(ctx, ffmpeg, expand(tc.publish)...); err != nil {
				t.Fatalf("ffmpeg publish: %v\n%s\nserver log:\n%s", err, out, logs)
			}
			sink := ss.wait(t, time.Second)
			if err := sink.waitClosed(t, 5*time.Second); err != nil {
				t.Errorf("OnClose(%v), want nil after ffmpeg's clean unpublish", err)
			}
			if sink.pub.App != "live" || sink.pub.Name != "x" || sink.pub.Key != "abc" || gotKey != "abc" {
				t.Errorf("publisher %+v (Authorize key %q), want live/x key abc", sink.pub, gotKey)
			}
			if !strings.Contains(sink.pub.FlashVer, "Lavf") {
				t.Errorf("flashVer %q", sink.pub.FlashVer)
			}
			acfg, vcfg, frames := sink.snapshot()
			if len(acfg) != 1 || len(vcfg) != 1 {
				t.Fatalf("configs: audio %v, video %d; want one each", acfg, len(vcfg))
			}
			if v := vcfg[0]; v.Width != 320 || v.Height != 240 || v.Codec != media.CodecH264 {
				t.Errorf("video config %dx%d %s", v.Width, v.Height, v.Codec)
			}
			wantRate, wantCh := 44100, 1
			if tc.name == "copy" {
				wantRate, wantCh = 48000, 2
			}
			if a := acfg[0]; a.Codec != media.CodecAAC || a.ObjectType != 2 || a.SampleRate != wantRate || a.Channels != wantCh {
				t.Errorf("audio config %v, want AAC-LC %d Hz %dch", a, wantRate, wantCh)
			}
			if sm, ok := sink.meta0(); !ok || sm["width"] != 320.0 {
				t.Errorf("metadata %v", sm)
			}
			audio, video := split(frames)
			checkTimeline(t, audio, video, acfg[0], tc.dur)
			t.Logf("%s: %s", tc.name, fmtStats(audio, video))
			if tc.encode == nil && !strings.Contains(tc.publish[len(tc.publish)-1], "{file}") {
				return
			}

			// Timestamps, keys and sizes against ffprobe's reading of the file.
			probe := ffprobe(t, file)
			pa, pv := probeSplit(probe.Packets)
			if len(audio) != len(pa) || len(video) != len(pv) {
				t.Fatalf("sink got %d audio + %d video frames, file has %d + %d", len(audio), len(video), len(pa), len(pv))
			}
			paramLen := 8 + len(vcfg[0].SPS) + len(vcfg[0].PPS)
			for i, f := range video {
				p := pv[i]
				wantSize := p.size()
				if f.Key && tc.name != "tee" {
					wantSize += paramLen // SPS and PPS inserted in band
				}
				if tc.name == "tee" {
					wantSize = len(f.Data) // 3-byte start codes became 4-byte ones
				}
				if f.DTS != p.DTS*90 || f.PTS != p.PTS*90 || f.Key != strings.HasPrefix(p.Flags, "K") || len(f.Data) != wantSize {
					t.Fatalf("video frame %d: %s; ffprobe: %+v", i, describeFrame(f), p)
				}
			}
			for i, f := range audio {
				p := pa[i]
				if f.DTS != p.DTS*90 || f.PTS != p.PTS*90 || !f.Key || len(f.Data) != p.size() {
					t.Fatalf("audio frame %d: %s; ffprobe: %+v", i, describeFrame(f), p)
				}
			}
			// Data against this package's own reading of the file.
			fc := readFLVFile(t, file)
			if len(fc.frames) != len(frames) {
				t.Fatalf("file demux %d frames, sink %d", len(fc.frames), len(frames))
			}
			for i := range frames {
				a, b := frames[i], fc.frames[i]
				if a.Kind != b.Kind || a.PTS != b.PTS || a.DTS != b.DTS || a.Key != b.Key || !bytes.Equal(a.Data, b.Data) {
					t.Fatalf("frame %d: sink %s, file %s", i, describeFrame(a), describeFrame(b))
				}
			}
		})
	}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// checkTimeline checks what the ffmpeg command implies: 25 fps video
// (3600 ticks per frame, ms-rounded), keyframes every 2 s, audio frames of
// 1024 samples, each track's DTS increasing, PTS ≥ DTS.
func checkTimeline(t *testing.T, audio, video []media.Frame, acfg media.AudioConfig, dur float64) {
	t.Helper()
	if !video[0].Key {
		t.Errorf("first video frame is not a keyframe")
	}
	var keys []int64
	for i, f := range video {
		if f.Key {
			keys = append(keys, f.PTS)
		}
		if f.PTS < f.DTS {
			t.Errorf("video frame %d: PTS %d < DTS %d", i, f.PTS, f.DTS)
		}
		if i > 0 && f.DTS <= video[i-1].DTS {
			t.Errorf("video DTS not increasing at %d: %d after %d", i, f.DTS, video[i-1].DTS)
		}
	}
	for i := 1; i < len(keys); i++ {
		if d := keys[i] - keys[i-1]; d != 2*media.ClockRate {
			t.Errorf("keyframes %d and %d are %d ticks apart, want 2 s", i-1, i, d)
		}
	}
	if want := int(dur / 2); len(keys) < want {
		t.Errorf("%d keyframes in %.0f s, want ≥ %d", len(keys), dur, want)
	}
	// PTS of video frame n (presentation order) is n × 40 ms.
	pts := make(map[int64]bool)
	for _, f := range video {
		pts[f.PTS-video[0].PTS] = true
	}
	for n := int64(0); n < int64(len(video)); n++ {
		if !pts[n*3600] {
			t.Fatalf("no video frame presented at %d ms", n*40)
		}
	}
	frameMs := 1024 * 1000 / float64(acfg.SampleRate)
	for i := 1; i < len(audio); i++ {
		d := float64(audio[i].DTS-audio[i-1].DTS) / 90
		if d < frameMs-1 || d > frameMs+1 {
			t.Fatalf("audio frames %d and %d are %.0f ms apart, want %.2f ± 1", i-1, i, d, frameMs)
		}
	}
	// No drift: audio frame n at n × 1024 samples, within the ms rounding.
	first := audio[0].DTS
	for i, f := range audio {
		want := float64(i) * 1024 * 90000 / float64(acfg.SampleRate)
		if got := float64(f.DTS - first); got < want-90 || got > want+90 {
			t.Fatalf("audio frame %d at %.0f ticks, want %.0f ± 90", i, got, want)
		}
	}
}

func probeSplit(pk []probePacket) (audio, video []probePacket) {
	for _, p := range pk {
		if p.CodecType == "audio" {
			audio = append(audio, p)
		} else {
			video = append(video, p)
		}
	}
	return
}

func (s *recSink) meta0() (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.meta) == 0 {
		return nil, false
	}
	return s.meta[0], true
}

func fmtStats(audio, video []media.Frame) string {
	var keys int
	for _, f := range video {
		if f.Key {
			keys++
		}
	}
	span := func(fs []media.Frame) float64 {
		if len(fs) < 2 {
			return 0
		}
		return float64(fs[len(fs)-1].DTS-fs[0].DTS) / media.ClockRate
	}
	return strings.Join([]string{
		"audio " + strconvItoa(len(audio)) + " frames over " + ftoa(span(audio)) + " s",
		"video " + strconvItoa(len(video)) + " frames (" + strconvItoa(keys) + " key) over " + ftoa(span(video)) + " s",
	}, ", ")
}

func strconvItoa(n int) string { return strconv.Itoa(n) }
func ftoa(f float64) string    { return strconv.FormatFloat(f, 'f', 2, 64) }
