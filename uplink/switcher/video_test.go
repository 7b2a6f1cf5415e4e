package switcher_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/switcher"
)

// avSource runs ffmpeg as a third-party A/V encoder: a test pattern and a
// sine, H.264 with a keyframe every second and AAC, sent to url in the
// given muxer format (mpegts over SRT, flv over RTMP). It is killed when
// the test ends.
func avSource(t *testing.T, url, pattern string, freq int, format string) *exec.Cmd {
	t.Helper()
	ffmpeg := e2e.Need(t, "ffmpeg")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", pattern+"=size=320x240:rate=25",
		"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=48000", freq),
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", format, url)
	cmd.Stderr = e2e.LogWriter(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// videoPackets is what ffprobe says of a file's video packets.
type videoPackets struct {
	dts      []int64
	key      []bool
	keys     int
	firstKey bool // the first video packet is a keyframe
}

func probeVideo(t *testing.T, input string) videoPackets {
	t.Helper()
	ffprobe := e2e.Need(t, "ffprobe")
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "v", "-show_entries", "packet=dts,flags", "-of", "csv=p=0", input).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", input, err)
	}
	var v videoPackets
	for _, line := range strings.Fields(string(out)) {
		f := strings.Split(line, ",")
		d, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue // N/A
		}
		key := len(f) > 1 && strings.HasPrefix(f[1], "K")
		if key {
			v.keys++
		}
		if len(v.dts) == 0 {
			v.firstKey = key
		}
		v.dts = append(v.dts, d)
		v.key = append(v.key, key)
	}
	return v
}

// decodeErrors decodes input with ffmpeg and returns what it reported at
// level error (nothing for a clean stream).
func decodeErrors(t *testing.T, args ...string) string {
	t.Helper()
	ffmpeg := e2e.Need(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffmpeg, append(append([]string{"-v", "error"}, args...), "-f", "null", "-")...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// checkAVFailover pulls the stream over SRT while the primary publisher is
// killed, then checks the pulled TS and the HLS output: both decode with
// no error, video goes on across the switch with rising DTS, and HLS
// segments start on keyframes within the target.
func checkAVFailover(t *testing.T, srv *switcher.Server, stream string, primary *exec.Cmd) {
	t.Helper()
	ffmpeg := e2e.Need(t, "ffmpeg")
	base := "http://" + srv.HTTPAddr().String()
	out := filepath.Join(t.TempDir(), "pull.ts")
	url := fmt.Sprintf("srt://%s?streamid=#!::r=%s,m=request&latency=120000", srv.SRTAddr(), stream)
	pull := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-i", url, "-t", "10", "-map", "0", "-c", "copy", "-copyts", "-f", "mpegts", out)
	var stderr strings.Builder
	pull.Stderr = &stderr
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	killedAt := time.Now()
	primary.Process.Signal(syscall.SIGKILL)
	if err := pull.Wait(); err != nil {
		t.Fatalf("ffmpeg pull: %v: %s", err, stderr.String())
	}
	after := time.Since(killedAt)

	v := probeVideo(t, out)
	// One splice: every DTS step is one frame (3600 ticks at 25 fps)
	// except at most one, the switch, where the fallback's video starts at
	// its next keyframe: no more than a GOP plus the stall detection.
	splice := -1
	for i := 1; i < len(v.dts); i++ {
		d := v.dts[i] - v.dts[i-1]
		switch {
		case d <= 0:
			t.Fatalf("pulled video DTS not rising at packet %d: %d then %d", i, v.dts[i-1], v.dts[i])
		case d == 3600:
		case splice < 0 && d <= 3*90000/2:
			splice = i
			t.Logf("pulled video: the splice skips %d ms of video at frame %d", (d-3600)/90, i)
		default:
			t.Fatalf("pulled video: DTS step of %d ticks at frame %d (splice at %d)", d, i, splice)
		}
	}
	t.Logf("pulled %d video frames (%d keyframes) in %.1f s, the kill %.1f s before the end", len(v.dts), v.keys, float64(v.dts[len(v.dts)-1]-v.dts[0])/90000, after.Seconds())
	if splice < 0 {
		splice = 0 // the sources' video met without a gap
	} else if !v.key[splice] {
		t.Errorf("the video after the splice starts with a frame that is not a keyframe (frame %d)", splice)
	}
	// Video before the kill and for the seconds after it, on the fallback.
	if splice < 25 || len(v.dts)-splice < int((after.Seconds()-2)*25) {
		t.Errorf("video frames: %d before the splice, %d after it (%.1f s after the kill)", splice, len(v.dts)-splice, after.Seconds())
	}
	if errs := decodeErrors(t, "-i", out); errs != "" {
		t.Errorf("pulled A/V across the kill does not decode cleanly:\n%.2000s", errs)
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), stream)
	if st == nil || st.Active != "fallback" {
		t.Fatalf("after the primary died: %+v", st)
	}

	playlist := base + "/" + stream + "/index.m3u8"
	body, err := e2e.HTTPGet(playlist)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, line := range strings.Split(body, "\n") {
		if d, ok := strings.CutPrefix(line, "#EXTINF:"); ok {
			var sec float64
			fmt.Sscanf(d, "%f", &sec)
			if sec > 2.05 {
				t.Errorf("HLS segment of %.3f s, want within the 2 s target", sec)
			}
		}
		if strings.HasSuffix(line, ".ts") {
			segs = append(segs, line)
		}
	}
	if len(segs) < 3 {
		t.Fatalf("HLS playlist with %d segments:\n%s", len(segs), body)
	}
	// Segments start on keyframes; only the splice's video gap may leave
	// one (short) segment with audio alone.
	noVideo := 0
	for _, seg := range segs[1:] { // the first may start before any keyframe
		sv := probeVideo(t, base+"/"+stream+"/"+seg)
		switch {
		case len(sv.dts) == 0:
			noVideo++
		case !sv.firstKey:
			t.Errorf("HLS %s starts with a video frame that is not a keyframe", seg)
		}
	}
	if noVideo > 1 {
		t.Errorf("%d HLS segments without video, want at most the splice's", noVideo)
	}
	if errs := decodeErrors(t, "-i", playlist, "-t", "8"); errs != "" {
		t.Errorf("HLS across the kill does not decode cleanly:\n%.2000s\nplaylist:\n%s", errs, body)
	}
	t.Logf("HLS playlist:\n%s", body)
}

func TestAVFailoverSRT(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	pub := func(name, pattern string, freq int) *exec.Cmd {
		url := fmt.Sprintf("srt://%s?streamid=#!::r=live/%s,m=publish&latency=120000", srv.SRTAddr(), name)
		return avSource(t, url, pattern, freq, "mpegts")
	}
	primary := pub("av", "testsrc", 440)
	time.Sleep(300 * time.Millisecond)
	pub("av_fallback", "testsrc2", 660)
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/av")
		return st != nil && len(st.Inputs) == 2 && st.Mode == "splice" && st.Active == "primary"
	}) {
		t.Fatalf("A/V inputs not paired: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/av"))
	}
	time.Sleep(2 * time.Second)
	checkAVFailover(t, srv, "live/av", primary)
}

func TestAVFailoverRTMP(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	rt := "rtmp://" + srv.RTMPAddr().String()
	primary := avSource(t, rt+"/live/avr", "testsrc", 440, "flv")
	time.Sleep(300 * time.Millisecond)
	avSource(t, rt+"/live/avr_fallback", "testsrc2", 660, "flv")
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/avr")
		return st != nil && len(st.Inputs) == 2 && st.Active == "primary"
	}) {
		t.Fatalf("RTMP A/V inputs not paired: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/avr"))
	}
	time.Sleep(2 * time.Second)
	checkAVFailover(t, srv, "live/avr", primary)
}
