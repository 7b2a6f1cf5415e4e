package switcher_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
	"tandem/uplink/switcher"
	"tandem/uplink/testpub"
)

// avSource runs ffmpeg as a third-party A/V encoder: a test pattern (a
// lavfi source with its options) and a sine, H.264 with a keyframe every second and AAC, sent to url in the
// given muxer format (mpegts over SRT, flv over RTMP). It is killed when
// the test ends.
func avSource(t *testing.T, url, pattern string, freq int, format string) *exec.Cmd {
	t.Helper()
	ffmpeg := e2e.Need(t, "ffmpeg")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", pattern,
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

// pulledVideo is a video frame as the switcher's SRT pull sent it.
type pulledVideo struct {
	dts int64
	key bool
}

// pullVideo reads the stream's SRT pull output with our own demuxer for d
// and returns its video frames on the channel: ffmpeg moves the timestamps
// it copies (by its mux delay), so exact positions come from here.
func pullVideo(t *testing.T, srv *switcher.Server, stream string, d time.Duration) <-chan []pulledVideo {
	res := make(chan []pulledVideo, 1)
	go func() {
		var got []pulledVideo
		defer func() { res <- got }()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		c, err := srt.Dial(ctx, srv.SRTAddr().String(), srt.Options{StreamID: "#!::r=" + stream + ",m=request"})
		if err != nil {
			t.Errorf("pull %s: %v", stream, err)
			return
		}
		defer c.Close()
		dmx := mpegts.NewDemuxer(mpegts.Handler{OnFrame: func(pid uint16, f media.Frame) {
			if f.Kind == media.KindVideo {
				got = append(got, pulledVideo{f.DTS, f.Key})
			}
		}})
		buf := make([]byte, srt.ReadBufferSize)
		for {
			n, err := c.ReadMessage(ctx, buf)
			if err != nil {
				return
			}
			dmx.Feed(buf[:n])
		}
	}()
	return res
}

// videoSwitches are the output DTS of the keyframes where the merge
// changed the video source, from its "video" events.
func videoSwitches(t *testing.T, base string) []int64 {
	var at []int64
	for _, e := range e2e.GetEvents(t, base, nil) {
		if e.Kind != "video" || !strings.Contains(e.Reason, "replaces") {
			continue
		}
		var dts int64
		fmt.Sscanf(e.Reason[strings.LastIndex(e.Reason, " ")+1:], "%d", &dts)
		at = append(at, dts&(1<<33-1))
	}
	return at
}

// checkAVFailover pulls the stream over SRT (ffmpeg and our own puller)
// while the primary publisher is killed, then checks the pulled TS and the
// HLS output: both decode with no error, video goes on across the switch
// with rising DTS from a keyframe of the fallback, and HLS segments start on
// keyframes within the target.
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
	mine := pullVideo(t, srv, stream, 9*time.Second)
	time.Sleep(4 * time.Second)
	killedAt := time.Now()
	primary.Process.Signal(syscall.SIGKILL)
	if err := pull.Wait(); err != nil {
		t.Fatalf("ffmpeg pull: %v: %s", err, stderr.String())
	}
	after := time.Since(killedAt)

	// ffmpeg's copy: DTS rising, one frame (3600 ticks at 25 fps) apart
	// except at the splice, where the fallback's video starts at its next
	// keyframe: no more than a GOP plus the stall detection.
	v := probeVideo(t, out)
	for i := 1; i < len(v.dts); i++ {
		if d := v.dts[i] - v.dts[i-1]; d < 3600 || d > 3*90000/2 {
			t.Fatalf("ffmpeg's pulled video: DTS step of %d ticks at frame %d", d, i)
		}
	}
	t.Logf("ffmpeg pulled %d video frames (%d keyframes) in %.1f s, the kill %.1f s before the end", len(v.dts), v.keys, float64(v.dts[len(v.dts)-1]-v.dts[0])/90000, after.Seconds())

	// Our puller: the switch the merge reports is at a keyframe it got,
	// with video before it and for the seconds after the kill.
	frames := <-mine
	sw := videoSwitches(t, base)
	if len(sw) != 1 {
		t.Fatalf("%d video switches reported, want 1 (to the fallback)", len(sw))
	}
	at := -1
	for i, f := range frames {
		if i > 0 && f.dts-frames[i-1].dts < 3600 {
			t.Fatalf("pulled video: DTS step of %d ticks at frame %d", f.dts-frames[i-1].dts, i)
		}
		if f.dts&(1<<33-1) == sw[0] {
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("the switch at DTS %d is not in the %d pulled video frames", sw[0], len(frames))
	}
	gap := frames[at].dts - frames[at-1].dts - 3600
	t.Logf("video switched at pulled frame %d of %d, after %d ms without video", at, len(frames), gap/90)
	if !frames[at].key {
		t.Errorf("the fallback's video starts with a frame that is not a keyframe (pulled frame %d)", at)
	}
	if at < 25 || len(frames)-at < int((after.Seconds()-2)*25) {
		t.Errorf("video frames: %d before the switch, %d after it (%.1f s after the kill)", at, len(frames)-at, after.Seconds())
	}
	if errs := decodeErrors(t, "-i", out); errs != "" {
		t.Errorf("pulled A/V across the kill does not decode cleanly:\n%.2000s", errs)
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), stream)
	if st == nil || st.Active != "fallback" {
		t.Fatalf("after the primary died: %+v", st)
	}
	if v := st.Output.Video; v == nil || v.Source != "fallback" || v.Codec != "h264" || v.Width != 320 || v.Height != 240 ||
		v.Switches != 1 || v.FramesEmitted < int64(len(frames)) {
		t.Errorf("API output video after the switch: %+v, want h264 320x240 from the fallback, 1 switch, at least %d frames", v, len(frames))
	}
	metrics, err := e2e.HTTPGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("tandem_stream_video_switches_total{stream=%q} 1", stream); !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
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
		return avSource(t, url, pattern+"=size=320x240:rate=25", freq, "mpegts")
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
	// An HTTP listener of an A/V stream gets the same audio burst as one
	// of an audio-only stream: video in the ring does not count.
	l := e2e.Listen(t, base+"/live/av.aac", nil)
	time.Sleep(500 * time.Millisecond)
	_, at, err := l.Stop()
	if err != nil {
		t.Fatal(err)
	}
	burst := 0
	for _, a := range at {
		if a.Sub(at[0]) < 15*time.Millisecond {
			burst++
		}
	}
	if want := switcher.DefaultConfig().ListenerBurst; burst < want {
		t.Errorf("an HTTP listener's connect burst held %d audio frames, want listener_burst (%d)", burst, want)
	}
	checkAVFailover(t, srv, "live/av", primary)
}

func TestAVFailoverRTMP(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	rt := "rtmp://" + srv.RTMPAddr().String()
	primary := avSource(t, rt+"/live/avr", "testsrc=size=320x240:rate=25", 440, "flv")
	time.Sleep(300 * time.Millisecond)
	avSource(t, rt+"/live/avr_fallback", "testsrc2=size=320x240:rate=25", 660, "flv")
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/avr")
		return st != nil && len(st.Inputs) == 2 && st.Active == "primary"
	}) {
		t.Fatalf("RTMP A/V inputs not paired: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/avr"))
	}
	time.Sleep(2 * time.Second)
	checkAVFailover(t, srv, "live/avr", primary)
}

// encodeAV encodes a 10 s test pattern and tone once, like one of the
// appliance's feeds: H.264 with a fixed GOP of 25 frames (one second) and
// B-frames, AAC at 48 kHz. Feeds of different bitrates have the same
// frame types at the same timestamps.
func encodeAV(t *testing.T, videoRate string) *testpub.Recording {
	t.Helper()
	ffmpeg := e2e.Need(t, "ffmpeg")
	out := filepath.Join(t.TempDir(), "av-"+videoRate+".ts")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-b:v", videoRate, "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
		"-bf", "2", "-x264-params", "b-adapt=0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "mpegts", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("encode A/V clip: %v: %s", err, b)
	}
	rec, err := testpub.LoadTS(out, 8*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// Two feeds of one capture session, A/V: an operator's switches move the
// video at the next keyframe with not a frame missing or doubled.
func TestAVAlignedSwitchIsFrameExact(t *testing.T) {
	primaryRec, fallbackRec := encodeAV(t, "600k"), encodeAV(t, "200k")
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, feed := range []struct {
		role streamid.Role
		rec  *testpub.Recording
	}{{streamid.RolePrimary, primaryRec}, {streamid.RoleFallback, fallbackRec}} {
		id := streamid.ID{App: "live", Name: "al", Mode: streamid.ModePublish, Session: "avsess", Role: feed.role}
		s, err := testpub.DialSRT(ctx, srv.SRTAddr().String(), srt.Options{StreamID: id.String()}, feed.rec)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			feed.rec.Replay(ctx, start, 1<<33-5*90000, s.Send) // wraps 5 s in
		}()
	}
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/al")
		return st != nil && st.Mode == "aligned"
	}) {
		t.Fatalf("A/V feeds not aligned: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/al"))
	}
	ffmpeg := e2e.Need(t, "ffmpeg")
	out := filepath.Join(t.TempDir(), "pull.ts")
	if d := os.Getenv("TANDEM_TEST_KEEP"); d != "" {
		out = filepath.Join(d, "aligned-pull.ts")
	}
	url := fmt.Sprintf("srt://%s?streamid=#!::r=live/al,m=request&latency=120000", srv.SRTAddr())
	pull := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-i", url, "-t", "9", "-map", "0", "-c", "copy", "-copyts", "-f", "mpegts", out)
	var stderr strings.Builder
	pull.Stderr = &stderr
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	pulled := pullVideo(t, srv, "live/al", 9*time.Second)
	pin := func(input string) {
		resp, err := http.Post(base+"/api/v1/streams/live/al/active", "application/json", strings.NewReader(`{"input":"`+input+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("pin %s: %d", input, resp.StatusCode)
		}
	}
	time.Sleep(3500 * time.Millisecond)
	pin("fallback")
	time.Sleep(2500 * time.Millisecond)
	pin("auto")
	if err := pull.Wait(); err != nil {
		t.Fatalf("ffmpeg pull: %v: %s", err, stderr.String())
	}

	mine := <-pulled
	v := probeVideo(t, out)
	if len(v.dts) < 100 || len(mine) < 100 {
		t.Fatalf("pulled only %d (ffmpeg) and %d (ours) video frames", len(v.dts), len(mine))
	}
	for i := 1; i < len(v.dts); i++ {
		if v.dts[i]-v.dts[i-1] != 3600 {
			t.Fatalf("ffmpeg's pulled video: DTS step %d at frame %d, a frame missing or doubled", v.dts[i]-v.dts[i-1], i)
		}
	}
	at := map[int64]int{}
	for i, p := range mine {
		at[p.dts&(1<<33-1)] = i
		if i > 0 && p.dts-mine[i-1].dts != 3600 {
			t.Fatalf("pulled video DTS step %d at frame %d: a frame missing or doubled", p.dts-mine[i-1].dts, i)
		}
	}
	// The switches the merge reports happened at keyframes the puller got,
	// right after the previous frame.
	var switches int
	for _, dts := range videoSwitches(t, base) {
		i, ok := at[dts]
		if !ok {
			continue // before or after the pull
		}
		t.Logf("video switch at DTS %d (pulled frame %d)", dts, i)
		switches++
		if !mine[i].key {
			t.Errorf("video switched at pulled frame %d, which is not a keyframe", i)
		}
	}
	if switches != 2 {
		t.Errorf("%d video switches in the pulled stream, want 2 (to the fallback and back)", switches)
	}
	if errs := decodeErrors(t, "-i", out); errs != "" {
		t.Errorf("pulled A/V does not decode cleanly:\n%.2000s", errs)
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/al")
	for _, e := range e2e.GetEvents(t, base, nil) {
		if strings.HasPrefix(e.Kind, "hole") || e.Kind == "hold" || e.Kind == "publish" {
			t.Logf("event %s %s %s", e.Time.Format("15:04:05.000"), e.Kind, e.Reason)
		}
	}
	if st.Output.HolesFilled != 0 {
		t.Errorf("aligned output filled %d holes", st.Output.HolesFilled)
	}
}

// A fallback whose video does not match the primary's is refused with an
// event naming the difference; the stream goes on with the primary.
func TestAVMismatchedFallbackRefused(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	url := func(name string) string {
		return fmt.Sprintf("srt://%s?streamid=#!::r=live/%s,m=publish&latency=120000", srv.SRTAddr(), name)
	}
	avSource(t, url("mm"), "testsrc=size=320x240:rate=25", 440, "mpegts")
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/mm")
		return st != nil && st.State == "online"
	}) {
		t.Fatal("primary never online")
	}
	avSource(t, url("mm_fallback"), "testsrc=size=640x360:rate=25", 660, "mpegts")
	var refusal string
	if !e2e.WaitFor(15*time.Second, func() bool {
		for _, e := range e2e.GetEvents(t, base, nil) {
			if e.Kind == "input-refused" && e.Input == "fallback" {
				refusal = e.Reason
				return true
			}
		}
		return false
	}) {
		t.Fatal("the 640x360 fallback was not refused")
	}
	if !strings.Contains(refusal, "resolution mismatch: primary has 320x240, this input has 640x360") {
		t.Errorf("refusal %q does not name the resolutions", refusal)
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/mm")
	if st.State != "online" || st.Active != "primary" {
		t.Errorf("stream after the refusal: %+v", st)
	}
}
