package switcher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"tandem/scripts/e2e"
	"testing"
	"time"

	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
	"tandem/uplink/switcher"
	"tandem/uplink/telemetry"
	"tandem/uplink/testpub"
)

func TestThirdPartyFFmpegPublisherIsHeard(t *testing.T) {
	ffmpeg := e2e.Need(t, "ffmpeg")
	srv := startSwitcher(t, nil)
	url := fmt.Sprintf("srt://%s?streamid=#!::r=live/x,m=publish&latency=120000", srv.SRTAddr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "sine=frequency=997:sample_rate=48000", "-ac", "2",
		"-c:a", "aac", "-b:a", "128k", "-f", "mpegts", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()

	base := "http://" + srv.HTTPAddr().String()
	l := e2e.Listen(t, base+"/live/x.aac", nil)
	time.Sleep(6 * time.Second)
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatal(err)
	}
	r := e2e.ToneOf(t, frames, 997)
	t.Logf("third-party ffmpeg publisher: %d frames heard: %v", len(frames), r)
	// ffmpeg's first AAC frame is encoder priming and decodes to silence:
	// silence is only allowed before the tone starts.
	if r.FrequencyHz < 996.5 || r.FrequencyHz > 997.5 || r.SilentAfterStart() > 0 || r.FirstSound > 5 || r.PhaseJumps > 0 {
		t.Fatalf("expected a clean 997 Hz tone, got %v (ffmpeg said %q)", r, stderr.String())
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/x")
	if st != nil && st.Output.HolesFilled != 0 {
		t.Fatalf("%d holes filled for a single steady publisher", st.Output.HolesFilled)
	}
	if st == nil || st.State != "online" || len(st.Inputs) != 1 || st.Inputs[0].Role != "primary" || st.Mode != "single" {
		t.Fatalf("API shows %+v, want live/x online with one primary input", st)
	}
}

func TestBadInputsAreRefusedAndStreamUndisturbed(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.Streams = map[string]switcher.StreamConfig{
			"live/main": {Key: "mainkey", Passphrase: "correct-horse-1"},
			"live/junk": {Key: "junkkey"},
		}
	})
	base := "http://" + srv.HTTPAddr().String()
	addr := srv.SRTAddr().String()
	runPublisher(t, testpub.Config{Addr: addr, App: "live", Name: "main", Key: "mainkey", Passphrase: "correct-horse-1",
		Feeds: []testpub.Feed{{Role: streamid.RolePrimary, Bitrate: 128000}}})
	l := e2e.Listen(t, base+"/live/main.aac", nil)

	dial := func(sid, pass string) (*srt.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srt.Dial(ctx, addr, srt.Options{StreamID: sid, Passphrase: pass})
	}
	expectRefused := func(what, sid, pass string, code int, mention string) {
		t.Helper()
		c, err := dial(sid, pass)
		if err == nil {
			c.Close()
			t.Fatalf("%s: connection accepted", what)
		}
		var se *srt.Error
		if !errors.As(err, &se) || (code != 0 && se.Reject != code) {
			t.Fatalf("%s: error %v, want SRT reject code %d", what, err, code)
		}
		if mention != "" && !strings.Contains(strings.ToLower(err.Error()), mention) {
			t.Fatalf("%s: error %q does not mention %q", what, err, mention)
		}
		t.Logf("%s refused: %v", what, err)
	}
	expectRefused("wrong key", "#!::r=live/main_fallback,m=publish,k=nope", "correct-horse-1", srt.RejectUnauthorized, "")
	expectRefused("missing key", "#!::r=live/main_fallback,m=publish", "correct-horse-1", srt.RejectUnauthorized, "")
	expectRefused("unconfigured stream", "#!::r=live/other,m=publish", "", srt.RejectForbidden, "")
	expectRefused("malformed stream id", "#!::m=publish,x", "", srt.RejectBadRequest, "")
	expectRefused("wrong passphrase", "#!::r=live/main_fallback,m=publish,k=mainkey", "wrong-horse-99", 0, "")

	// Non-TS payload on a valid connection: reported and dropped.
	c, err := dial("#!::r=live/junk,m=publish,k=junkkey", "")
	if err != nil {
		t.Fatalf("valid junk publisher refused: %v", err)
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20; i++ {
		b := make([]byte, 1316)
		rng.Read(b)
		if err := c.WriteMessage(b); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()

	// A fallback at another sample rate is refused with the mismatch named.
	runPublisher(t, testpub.Config{Addr: addr, App: "live", Name: "main", Key: "mainkey", Passphrase: "correct-horse-1",
		SampleRate: 44100, Feeds: []testpub.Feed{{Role: streamid.RoleFallback, Bitrate: 64000}}})

	if !e2e.WaitFor(10*time.Second, func() bool {
		return hasEvent(e2e.GetEvents(t, base, nil), "input-refused", "sample rate") && hasEvent(e2e.GetEvents(t, base, nil), "input-refused", "MPEG-TS")
	}) {
		t.Fatalf("expected refusal events naming the sample rate and the non-TS payload; events: %+v", e2e.GetEvents(t, base, nil))
	}
	for _, e := range e2e.GetEvents(t, base, nil) {
		t.Logf("event: %s %s %s: %s", e.Stream, e.Input, e.Kind, e.Reason)
	}
	for _, want := range []string{"wrong key", "needs a key", "not configured", "malformed"} {
		if !hasEvent(e2e.GetEvents(t, base, nil), "publish-refused", want) {
			t.Errorf("no publish-refused event mentioning %q", want)
		}
	}
	time.Sleep(2 * time.Second)
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatalf("the playing stream's listener dropped: %v", err)
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/main")
	if st == nil || st.Output.HolesFilled != 0 || st.State != "online" {
		t.Fatalf("live/main disturbed: %+v", st)
	}
	if r := e2e.ToneOf(t, frames, 440); r.PhaseJumps != 0 || r.SilentBlocks != 0 {
		t.Fatalf("live/main audio disturbed: %v", r)
	}
	if s := e2e.GetStreams(t, base, nil); len(s.Streams) > 2 {
		t.Fatalf("unexpected streams: %+v", s.Streams)
	}
	for _, s := range e2e.GetStreams(t, base, nil).Streams {
		if strings.HasSuffix(s.Name, "_fallback") {
			t.Fatalf("a fallback shows as a stream: %s", s.ID)
		}
	}
}

func hasEvent(evs []switcher.Event, kind, mention string) bool {
	for _, e := range evs {
		if e.Kind == kind && strings.Contains(e.Reason, mention) {
			return true
		}
	}
	return false
}

func TestInBandTelemetryShowsInAPI(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	frames := encodedTone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := srt.Dial(ctx, srv.SRTAddr().String(), srt.Options{StreamID: "#!::r=live/tel,m=publish,s=abc"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	audio := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
	mux := mpegts.NewMuxer([]mpegts.Track{
		{PID: 0x100, Kind: media.KindAudio, Audio: audio},
		{PID: telemetry.PID, StreamType: mpegts.StreamTypePrivate, FormatID: mpegts.FormatTandem},
	}, func(msg []byte) error { return c.WriteMessage(msg) })
	start := time.Now()
	for n := int64(0); n < 150; n++ {
		time.Sleep(time.Until(start.Add(time.Duration(n) * 1024 * time.Second / 48000)))
		pts := audio.FramePTS(n)
		if err := mux.WriteFrame(0x100, media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: frames[n]}); err != nil {
			t.Fatal(err)
		}
		if n%47 == 0 {
			b, _ := telemetry.Marshal(telemetry.Report{Feed: "primary", Encoder: "running",
				Levels: []telemetry.ChannelLevel{{PeakDBFS: -12, RMSDBFS: -15}, {PeakDBFS: -12.5, RMSDBFS: -15.5}},
				Link:   telemetry.LinkStatus{Name: "a", Up: true}})
			if err := mux.WriteData(telemetry.PID, pts, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/tel")
	if st == nil || len(st.Inputs) != 1 || st.Inputs[0].Telemetry == nil {
		t.Fatalf("no telemetry in the API: %+v", st)
	}
	tel := st.Inputs[0].Telemetry
	if len(tel.Levels) != 2 || tel.Levels[1].PeakDBFS != -12.5 || tel.Encoder != "running" || !tel.Link.Up || tel.AgeMs > 3000 {
		t.Fatalf("telemetry in the API: %+v", tel)
	}
}

func TestManualSwitchAPI(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	runPublisher(t, testpub.Config{Addr: srv.SRTAddr().String(), App: "live", Name: "m",
		Feeds: []testpub.Feed{{Role: streamid.RolePrimary, Bitrate: 128000}, {Role: streamid.RoleFallback, Bitrate: 64000}}})
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/m")
		return st != nil && st.Mode == "aligned" && st.Active == "primary"
	}) {
		t.Fatalf("stream not aligned on the primary: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/m"))
	}
	l := e2e.Listen(t, base+"/live/m.aac", nil)
	post := func(body string) (int, string) {
		resp, err := http.Post(base+"/api/v1/streams/live/m/active", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(`{"input":"fallback"}`); code != 200 || !strings.Contains(body, `"active_input": "fallback"`) || !strings.Contains(body, `"pinned": true`) {
		t.Fatalf("pin fallback: %d %s", code, body)
	}
	time.Sleep(2 * time.Second)
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/m")
	if st.Active != "fallback" || st.Output.FramesFromFallback < 80 {
		t.Fatalf("after pinning the fallback: active %s, %d frames from the fallback", st.Active, st.Output.FramesFromFallback)
	}
	if code, body := post(`{"input":"auto"}`); code != 200 || !strings.Contains(body, `"active_input": "primary"`) || !strings.Contains(body, `"pinned": false`) {
		t.Fatalf("auto: %d %s", code, body)
	}
	for _, bad := range []struct {
		body string
		code int
	}{{`{"input":"third"}`, 400}, {`{"inptu":"primary"}`, 400}, {`not json`, 400}} {
		if code, body := post(bad.body); code != bad.code {
			t.Errorf("POST %s: %d %s, want %d", bad.body, code, body, bad.code)
		}
	}
	resp, _ := http.Post(base+"/api/v1/streams/live/nope/active", "application/json", strings.NewReader(`{"input":"primary"}`))
	if resp.StatusCode != 404 {
		t.Errorf("unknown stream: %d, want 404", resp.StatusCode)
	}
	resp.Body.Close()
	time.Sleep(time.Second)
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if r := e2e.ToneOf(t, frames, 440); r.PhaseJumps != 0 || r.SilentAfterStart() != 0 {
		t.Fatalf("manual switches were not seamless: %v", r)
	}
	if !hasEvent(e2e.GetEvents(t, base, nil), "manual", "operator chose the fallback") {
		t.Fatalf("no manual event: %+v", e2e.GetEvents(t, base, nil))
	}
}

func TestMetricsExposeStreamsAndInputs(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	runPublisher(t, testpub.Config{Addr: srv.SRTAddr().String(), App: "live", Name: "met",
		Feeds: []testpub.Feed{{Role: streamid.RolePrimary, Bitrate: 128000}, {Role: streamid.RoleFallback, Bitrate: 64000}}})
	l := e2e.Listen(t, base+"/live/met.aac", nil)
	time.Sleep(2 * time.Second)
	body, err := e2e.HTTPGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`tandem_stream_online{stream="live/met"} 1`,
		`tandem_stream_listeners{stream="live/met"} 1`,
		`tandem_stream_active_input{input="primary",stream="live/met"} 1`,
		`tandem_input_connected{input="fallback",stream="live/met"} 1`,
		`tandem_input_health{input="primary",stream="live/met"} 0`,
		`tandem_stream_holes_filled_total{stream="live/met"} 0`,
		`tandem_input_srt_rtt_seconds{input="primary",stream="live/met"}`,
		`tandem_input_bitrate_bits_per_second{input="fallback",stream="live/met"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `stream="live/met_fallback"`) {
		t.Error("the fallback appears as a stream in /metrics")
	}
	l.Close()
}

func TestSRTPullAcrossPrimaryLoss(t *testing.T) {
	ffmpeg := e2e.Need(t, "ffmpeg")
	ffprobe := e2e.Need(t, "ffprobe")
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	epoch := time.Now()
	cfg := testpub.Config{Addr: srv.SRTAddr().String(), App: "live", Name: "pull", Session: "pullsess", Epoch: epoch}
	pc, fc := cfg, cfg
	pc.Feeds = []testpub.Feed{{Role: streamid.RolePrimary, Bitrate: 128000}}
	fc.Feeds = []testpub.Feed{{Role: streamid.RoleFallback, Bitrate: 64000}}
	_, stopPrimary := runStoppablePublisher(t, pc)
	runPublisher(t, fc)
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/pull")
		return st != nil && st.Mode == "aligned"
	}) {
		t.Fatal("stream never aligned")
	}
	// The fallback is not a stream: pulling it is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := srt.Dial(ctx, srv.SRTAddr().String(), srt.Options{StreamID: "#!::r=live/pull_fallback,m=request"}); err == nil {
		c.Close()
		t.Fatal("pulling the fallback as a stream was accepted")
	}
	out := filepath.Join(t.TempDir(), "pull.ts")
	url := fmt.Sprintf("srt://%s?streamid=#!::r=live/pull,m=request&latency=120000", srv.SRTAddr())
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-i", url, "-t", "8", "-c", "copy", "-copyts", "-f", "mpegts", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	stopPrimary() // the primary publisher dies mid-stream
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ffmpeg pull: %v: %s", err, stderr.String())
	}
	// Timestamps: one frame every 1920 ticks, never a gap or a step back.
	probe, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "a", "-show_entries", "packet=pts,size", "-of", "csv=p=0", out).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var pts []string
	for _, line := range strings.Fields(string(probe)) {
		pts = append(pts, strings.Split(line, ",")[0])
	}
	t.Logf("first packets (pts,size): %v", strings.Fields(string(probe))[:5])
	// Seen twice in about ten runs: ffmpeg reports the very first packet
	// of a live SRT input with PTS 0, the rest on the timeline. Skip such a
	// leading packet, but say so (docs/notes: not yet explained).
	if len(pts) > 1 && pts[0] == "0" && pts[1] != "1920" {
		t.Logf("ffmpeg reported the first pulled packet with PTS 0 (next %s); skipping it", pts[1])
		pts = pts[1:]
	}
	if len(pts) < 300 {
		t.Fatalf("only %d packets pulled in 8 s", len(pts))
	}
	for i := 1; i < len(pts); i++ {
		a, _ := strconv.ParseInt(pts[i-1], 10, 64)
		b, _ := strconv.ParseInt(pts[i], 10, 64)
		if b-a != 1920 {
			t.Fatalf("pulled PTS step %d at packet %d (%d -> %d), want 1920", b-a, i, a, b)
		}
	}
	data, _ := os.ReadFile(out)
	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	defer dcancel()
	pcm, err := testpub.DecodeToMono(dctx, ffmpeg, data, 48000)
	if err != nil {
		t.Fatalf("pulled TS does not decode cleanly: %v", err)
	}
	r := testpub.AnalyzeTone(pcm, 48000, 440)
	t.Logf("pulled %d packets; tone: %v", len(pts), r)
	if r.PhaseJumps != 0 || r.SilentAfterStart() != 0 {
		t.Fatalf("pulled audio not continuous across the primary's loss: %v", r)
	}
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/pull")
	if st.Active != "fallback" || st.Output.HolesFilled != 0 {
		t.Fatalf("after the primary died: %+v", st.Output)
	}
}

func TestHLSOutputPlaysThroughASwitch(t *testing.T) {
	ffmpeg, ffprobe := e2e.Need(t, "ffmpeg"), e2e.Need(t, "ffprobe")
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	cfg := testpub.Config{Addr: srv.SRTAddr().String(), App: "live", Name: "hls", Session: "hlssess", Epoch: time.Now()}
	pc, fc := cfg, cfg
	pc.Feeds = []testpub.Feed{{Role: streamid.RolePrimary, Bitrate: 128000}}
	fc.Feeds = []testpub.Feed{{Role: streamid.RoleFallback, Bitrate: 64000}}
	_, stopPrimary := runStoppablePublisher(t, pc)
	runPublisher(t, fc)
	playlist := base + "/live/hls/index.m3u8"
	if !e2e.WaitFor(20*time.Second, func() bool { b, err := e2e.HTTPGet(playlist); return err == nil && strings.Contains(b, "#EXTINF") }) {
		t.Fatal("no HLS playlist with a segment")
	}
	time.Sleep(3 * time.Second)
	stopPrimary() // a switch to the fallback happens inside the window
	time.Sleep(7 * time.Second)
	body, _ := e2e.HTTPGet(playlist)
	if strings.Contains(body, "DISCONTINUITY") {
		t.Errorf("aligned output needs no discontinuity:\n%s", body)
	}
	for _, line := range strings.Split(body, "\n") {
		if d, ok := strings.CutPrefix(line, "#EXTINF:"); ok {
			var sec float64
			fmt.Sscanf(d, "%f", &sec)
			if sec > 2.0 || sec < 1.9 {
				t.Errorf("segment of %.3f s, want within the 2 s target", sec)
			}
		}
	}
	// A live playlist has no end: read a bounded stretch of it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-read_intervals", "%+8", "-show_entries", "packet=pts", "-of", "csv=p=0", playlist).CombinedOutput()
	if err != nil || strings.Contains(string(out), "rror") {
		t.Fatalf("ffprobe of the playlist: %v: %.300s", err, out)
	}
	if out, err := exec.CommandContext(ctx, ffmpeg, "-v", "error", "-i", playlist, "-t", "8", "-f", "null", "-").CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("ffmpeg decoding the playlist: %v: %s", err, out)
	}
	pts := strings.Fields(string(out))
	t.Logf("HLS window: %d packets through the switch, playlist:\n%s", len(pts), body)
	if resp, _ := http.Get(base + "/live/hls_fallback/index.m3u8"); resp.StatusCode != 404 {
		t.Errorf("the fallback has an HLS playlist of its own: %d", resp.StatusCode)
	}
}

// A feed that redials with the same session takes its slot over at once;
// a stranger without a session cannot.
func TestSameFeedReconnectTakesOverItsSlot(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	addr := srv.SRTAddr().String()
	inbandPublisher(t, addr, "#!::r=live/re,m=publish,s=r1,role=primary", "primary", func(time.Time) bool { return false })
	if !e2e.WaitFor(10*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/re")
		return st != nil && st.State == "online"
	}) {
		t.Fatal("not online")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A stranger on the primary's name with no session becomes the fallback
	// (two publishers on one name pair up); a third is refused.
	c1, err := srt.Dial(ctx, addr, srt.Options{StreamID: "#!::r=live/re,m=publish"})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	time.Sleep(300 * time.Millisecond)
	c2, err := srt.Dial(ctx, addr, srt.Options{StreamID: "#!::r=live/re,m=publish"})
	if err == nil {
		buf := make([]byte, 1500)
		rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err = c2.ReadMessage(rctx, buf)
		rcancel()
		c2.Close()
		if err == nil {
			t.Error("a third publisher was kept")
		}
	}
	// The primary's feed redials with its session: it takes over at once.
	start := time.Now()
	inbandPublisher(t, addr, "#!::r=live/re,m=publish,s=r1,role=primary", "primary", func(time.Time) bool { return false })
	if !e2e.WaitFor(3*time.Second, func() bool {
		for _, e := range e2e.GetEvents(t, base, nil) {
			if e.Kind == "input-replaced" {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the redialled primary did not take over: %+v", e2e.GetEvents(t, base, nil))
	}
	t.Logf("same-session reconnect took the slot over in %v", time.Since(start).Round(time.Millisecond))
}

// Extra SRT ports accept the same publishers and pullers as the main one:
// a stream's primary and fallback may arrive on different ports.
func TestExtraSRTPortsServeTheSameStreams(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) { c.SRTExtraAddrs = []string{"127.0.0.1:0"} })
	base := "http://" + srv.HTTPAddr().String()
	extra := srv.SRTExtraAddrs()
	if len(extra) != 1 {
		t.Fatalf("%d extra SRT ports bound, want 1", len(extra))
	}
	cfg := testpub.Config{Addr: srv.SRTAddr().String(), App: "live", Name: "ports", Session: "portsess", Epoch: time.Now()}
	pc, fc := cfg, cfg
	fc.Addr = extra[0].String()
	pc.Feeds = []testpub.Feed{{Role: streamid.RolePrimary, Bitrate: 128000}}
	fc.Feeds = []testpub.Feed{{Role: streamid.RoleFallback, Bitrate: 64000}}
	runPublisher(t, pc)
	runPublisher(t, fc)
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/ports")
		return st != nil && st.Mode == "aligned" && len(st.Inputs) == 2
	}) {
		t.Fatalf("feeds on two ports did not pair: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/ports"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := srt.Dial(ctx, extra[0].String(), srt.Options{StreamID: "#!::r=live/ports,m=request"})
	if err != nil {
		t.Fatalf("pull over the extra port: %v", err)
	}
	defer c.Close()
	buf := make([]byte, srt.MaxMessageSize)
	if n, err := c.ReadMessage(ctx, buf); err != nil || n == 0 {
		t.Fatalf("pull over the extra port delivered nothing: %d bytes, %v", n, err)
	}
}
