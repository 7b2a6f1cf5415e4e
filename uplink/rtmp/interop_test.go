package rtmp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/scripts/testenv"
	"tandem/uplink/h264"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
)

// tsSource is an ffmpeg encode demuxed by uplink/mpegts (independent of
// this package): configs and frames as the switcher would hand them over.
type tsSource struct {
	audio  media.AudioConfig
	video  media.VideoConfig
	frames []media.Frame
}

func encodeTS(t testing.TB, seconds int) tsSource {
	t.Helper()
	ffmpeg := testenv.Need(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), "src.ts")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := runCmd(ctx, ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
		"-t", fmt.Sprint(seconds), "-c:v", "libx264", "-g", "50", "-bf", "2", "-preset", "veryfast",
		"-c:a", "aac", "-ac", "2", "-f", "mpegts", path)
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var src tsSource
	d := mpegts.NewDemuxer(mpegts.Handler{
		OnTrack: func(ti mpegts.TrackInfo) {
			switch ti.Kind {
			case media.KindAudio:
				src.audio = ti.Audio
			case media.KindVideo:
				src.video = ti.Video
			}
		},
		OnFrame: func(_ uint16, f media.Frame) { src.frames = append(src.frames, f) },
	})
	if err := d.Feed(b); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if src.audio.SampleRate != 48000 || src.video.Width != 320 {
		t.Fatalf("source configs %v %+v", src.audio, src.video)
	}
	return src
}

func floorDiv90(v int64) int64 {
	q := v / 90
	if v%90 != 0 && v < 0 {
		q--
	}
	return q
}

// checkFLVOutput checks an FLV file ffmpeg wrote from what was sent:
// streams and codec parameters, every packet's timestamps (ms relative to
// the first frame sent), keyframes, data (NAL units, AAC access units),
// and that ffmpeg decodes it without a single error.
func checkFLVOutput(t *testing.T, path string, src tsSource) {
	t.Helper()
	probe := ffprobe(t, path)
	var sawA, sawV bool
	for _, s := range probe.Streams {
		switch s.CodecType {
		case "video":
			sawV = true
			if s.CodecName != "h264" || s.Width != 320 || s.Height != 240 {
				t.Errorf("video stream %+v", s)
			}
		case "audio":
			sawA = true
			if s.CodecName != "aac" || s.SampleRate != "48000" || s.Channels != 2 || s.Profile != "LC" {
				t.Errorf("audio stream %+v", s)
			}
		}
	}
	if !sawA || !sawV {
		t.Fatalf("streams %+v", probe.Streams)
	}
	base := src.frames[0].DTS
	audio, video := split(src.frames)
	pa, pv := probeSplit(probe.Packets)
	if len(pa) != len(audio) || len(pv) != len(video) {
		t.Fatalf("output has %d audio + %d video packets, sent %d + %d", len(pa), len(pv), len(audio), len(video))
	}
	for i, f := range audio {
		p := pa[i]
		if ms := floorDiv90(f.DTS - base); p.DTS != ms || p.PTS != ms || p.size() != len(f.Data) {
			t.Fatalf("audio packet %d: %+v, sent %s (%d ms)", i, p, describeFrame(f), ms)
		}
	}
	for i, f := range video {
		p := pv[i]
		dms, pms := floorDiv90(f.DTS-base), floorDiv90(f.PTS-base)
		if p.DTS != dms || p.PTS != pms || strings.HasPrefix(p.Flags, "K") != f.Key {
			t.Fatalf("video packet %d: %+v, sent %s (dts %d ms, pts %d ms)", i, p, describeFrame(f), dms, pms)
		}
	}
	// Data, read back with this package's FLV reader.
	fc := readFLVFile(t, path)
	ga, gv := split(fc.frames)
	for i := range audio {
		if !bytes.Equal(ga[i].Data, audio[i].Data) {
			t.Fatalf("audio frame %d differs", i)
		}
	}
	for i := range video {
		want, got := h264.SplitAnnexB(video[i].Data), h264.SplitAnnexB(gv[i].Data)
		if len(want) != len(got) {
			t.Fatalf("video frame %d: %d NAL units, sent %d", i, len(got), len(want))
		}
		for j := range want {
			if !bytes.Equal(want[j], got[j]) {
				t.Fatalf("video frame %d NAL unit %d differs", i, j)
			}
		}
	}
	ffmpeg := testenv.Need(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := runCmd(ctx, ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-i", path, "-f", "null", "-")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("decoding %s: %v\n%s", path, err, out)
	}
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestClientToFFmpeg: the Client publishes to ffmpeg acting as an RTMP
// server, which writes what it receives to an FLV file.
func TestClientToFFmpeg(t *testing.T) {
	t.Parallel()
	ffmpeg := testenv.Need(t, "ffmpeg")
	src := encodeTS(t, 3)
	addr := freePort(t)
	out := filepath.Join(t.TempDir(), "out.flv")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	done := make(chan error, 1)
	var ffout string
	go func() {
		var err error
		ffout, err = runCmd(ctx, ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-y", "-listen", "1",
			"-i", "rtmp://"+addr+"/live/x", "-c", "copy", "-copyts", "-f", "flv", out)
		done <- err
	}()
	_, log := newLog()
	var cl *Client
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		cl, err = Dial(ctx, ClientConfig{URL: "rtmp://" + addr + "/live/x", Audio: &src.audio, Video: &src.video, Logger: log})
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "refused") {
			t.Logf("Dial: %v", err)
		}
	}
	if err != nil {
		cancel()
		<-done
		t.Fatalf("Dial to ffmpeg: %v\nffmpeg: %s", err, ffout)
	}
	for _, f := range src.frames {
		if err := cl.WriteFrame(f); err != nil {
			t.Fatalf("WriteFrame: %v", err)
		}
	}
	if err := cl.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ffmpeg listener: %v\n%s", err, ffout)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ffmpeg listener did not finish")
	}
	if st := cl.Stats(); st.Clamped != 0 || st.WaitingForKey != 0 {
		t.Errorf("client stats %+v", st)
	}
	checkFLVOutput(t, out, src)
}

// TestFFmpegPlays: ffmpeg plays a stream from the Server, fed through
// OnPlay by a Player.
func TestFFmpegPlays(t *testing.T) {
	t.Parallel()
	ffmpeg := testenv.Need(t, "ffmpeg")
	src := encodeTS(t, 3)
	fed := make(chan error, 1)
	logs, log := newLog()
	_, addr := startServer(t, ServerConfig{
		Logger: log,
		OnPlay: func(p *Player) error {
			if p.Name != "x" || p.Key != "pk" {
				return fmt.Errorf("no stream %s", p.Name)
			}
			go func() {
				err := p.WriteAudioConfig(src.audio)
				if err == nil {
					err = p.WriteVideoConfig(src.video)
				}
				for _, f := range src.frames {
					if err != nil {
						break
					}
					err = p.WriteFrame(f)
				}
				if err == nil {
					err = p.Close()
				}
				fed <- err
			}()
			return nil
		},
	})
	out := filepath.Join(t.TempDir(), "out.flv")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	ffout, err := runCmd(ctx, ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-y",
		"-i", "rtmp://"+addr+"/live/x?key=pk", "-c", "copy", "-copyts", "-f", "flv", out)
	if err != nil {
		t.Fatalf("ffmpeg player: %v\n%s\nserver log:\n%s", err, ffout, logs)
	}
	if err := <-fed; err != nil {
		t.Fatalf("feeding the player: %v", err)
	}
	checkFLVOutput(t, out, src)

	// A stream OnPlay refuses: ffmpeg reports the server's reason.
	ffout, err = runCmd(ctx, ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-y",
		"-i", "rtmp://"+addr+"/live/nope", "-c", "copy", "-f", "flv", out)
	if err == nil || !strings.Contains(ffout, "no stream nope") {
		t.Errorf("ffmpeg playing a refused stream: %v\n%s", err, ffout)
	}
}
