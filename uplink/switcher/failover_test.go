package switcher_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/switcher"
	"tandem/uplink/switcher/notify"
	"tandem/uplink/telemetry"
	"tandem/uplink/testpub"
)

// ffmpegPublisher starts a third-party style publisher: ffmpeg encoding a
// tone straight to the switcher over SRT, with no Tandem session.
func ffmpegPublisher(t *testing.T, addr, streamID string, freq int) *exec.Cmd {
	return toneSource(t, fmt.Sprintf("srt://%s?streamid=%s&latency=120000", addr, streamID), freq, "mpegts")
}

// toneShare counts the 10 ms blocks where tone a, or tone b, is ten times
// stronger than the other.
func toneShare(pcm []float64, a, b float64) (aBlocks, bBlocks int) {
	n := 480
	for blk := 0; (blk+1)*n <= len(pcm); blk++ {
		pa, pb := power(pcm[blk*n:(blk+1)*n], a), power(pcm[blk*n:(blk+1)*n], b)
		switch {
		case pa > 10*pb:
			aBlocks++
		case pb > 10*pa:
			bBlocks++
		}
	}
	return
}

func power(x []float64, f float64) float64 {
	var i, q float64
	w := 2 * math.Pi * f / 48000
	for k, v := range x {
		i += v * math.Cos(w*float64(k))
		q += v * math.Sin(w*float64(k))
	}
	return i*i + q*q
}

func TestSpliceIndependentPublishersKillPrimary(t *testing.T) {
	srv := startSwitcher(t, nil)
	base := "http://" + srv.HTTPAddr().String()
	addr := srv.SRTAddr().String()
	primary := ffmpegPublisher(t, addr, "#!::r=live/sp,m=publish", 440)
	time.Sleep(500 * time.Millisecond)
	ffmpegPublisher(t, addr, "#!::r=live/sp_fallback,m=publish", 660)
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/sp")
		return st != nil && st.Mode == "splice" && st.Active == "primary" && len(st.Inputs) == 2
	}) {
		t.Fatalf("not spliced on the primary: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/sp"))
	}
	time.Sleep(2 * time.Second)
	l := e2e.Listen(t, base+"/live/sp.aac", nil)
	// Timestamps seen by a puller must never go backwards across the splice.
	ffmpeg, ffprobe := e2e.Need(t, "ffmpeg"), e2e.Need(t, "ffprobe")
	pullFile := t.TempDir() + "/pull.ts"
	pull := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-i",
		fmt.Sprintf("srt://%s?streamid=#!::r=live/sp,m=request", addr), "-t", "7", "-c", "copy", "-copyts", "-f", "mpegts", pullFile)
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	killed := time.Now()
	primary.Process.Signal(syscall.SIGKILL)
	time.Sleep(4 * time.Second)
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatalf("the listener dropped: %v", err)
	}
	pull.Wait()

	var switched time.Time
	for _, e := range e2e.GetEvents(t, base, nil) {
		if e.Kind == "switch" && e.To == "fallback" && e.Time.After(killed) {
			switched = e.Time
			break
		}
	}
	if switched.IsZero() {
		t.Fatalf("no switch to the fallback after the kill: %+v", e2e.GetEvents(t, base, nil))
	}
	took := switched.Sub(killed)
	t.Logf("primary killed; switched to the fallback after %v (stall threshold 500ms)", took.Round(time.Millisecond))
	// Frames ffmpeg sent before it died keep arriving for the SRT latency
	// (120 ms); the stall threshold counts from the last of them.
	if took > 720*time.Millisecond {
		t.Errorf("switch took %v, want within the SRT latency (120 ms) + the 500 ms stall threshold + 100 ms", took)
	}
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	pcm, err := testpub.DecodeToMono(context.Background(), ffmpeg, all, 48000)
	if err != nil {
		t.Fatalf("output does not decode cleanly: %v", err)
	}
	a, b := toneShare(pcm, 440, 660)
	t.Logf("output: %d blocks of the primary's 440 Hz, %d of the fallback's 660 Hz", a, b)
	if a < 250 || b < 300 {
		t.Errorf("output should carry the primary's tone, then the fallback's: %d / %d blocks", a, b)
	}
	probe, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "packet=pts", "-of", "csv=p=0", pullFile).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var prev int64 = -1
	pts := strings.Fields(string(probe))
	for i, p := range pts {
		var v int64
		fmt.Sscan(p, &v)
		if i > 0 && v <= prev {
			t.Fatalf("pulled timestamps went backwards at packet %d: %d after %d", i, v, prev)
		}
		prev = v
	}
	// ffmpeg needs a moment to connect and probe; a few seconds are plenty
	// to see the splice.
	if len(pts) < 150 {
		t.Fatalf("only %d packets pulled", len(pts))
	}
}

// inbandEpoch is the capture clock's origin shared by in-band publishers,
// so two of them carry the same timestamps for the same instant.
var inbandEpoch = time.Now()

// inbandPublisher sends pre-encoded tone frames with in-band telemetry, like
// an appliance; silent(t) says whether the audio is silent at that moment.
func inbandPublisher(t testing.TB, addr, sid, feed string, silent func(time.Time) bool) func() {
	return inbandPublisherStall(t, addr, sid, feed, silent, func(time.Time) bool { return false })
}

// inbandPublisherStall is inbandPublisher whose sending pauses (the
// connection stays open) while stalled(t) holds.
func inbandPublisherStall(t testing.TB, addr, sid, feed string, silent, stalled func(time.Time) bool) func() {
	t.Helper()
	return framePublisher(t, addr, sid, pubOptions{feed: feed, silent: silent, stalled: stalled})
}

// plainPublisher is a third-party style publisher on the same clock: the
// same frames, no in-band telemetry (feed ""), so the switcher decodes
// its audio to judge its levels.
func plainPublisher(t testing.TB, addr, sid string, silent, stalled func(time.Time) bool) func() {
	t.Helper()
	return framePublisher(t, addr, sid, pubOptions{silent: silent, stalled: stalled})
}

// pubOptions shape a framePublisher.
type pubOptions struct {
	// feed is the role named in the in-band telemetry; "" sends none.
	feed string
	// silent and stalled say whether the audio is silent, or sending
	// paused, at a moment.
	silent, stalled func(time.Time) bool
	// video, if set, is the picture state the telemetry reports.
	video func(time.Time) telemetry.VideoStatus
}

// framePublisher sends pre-encoded tone frames on the shared capture
// clock, like an appliance (or, without a feed, a third-party encoder).
func framePublisher(t testing.TB, addr, sid string, o pubOptions) func() {
	t.Helper()
	feed, silent, stalled := o.feed, o.silent, o.stalled
	frames := encodedTone(t)
	audio := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
	silence, _ := adts.SilentFrame(audio)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := srt.Dial(ctx, addr, srt.Options{StreamID: sid})
	if err != nil {
		t.Fatal(err)
	}
	tracks := []mpegts.Track{{PID: 0x100, Kind: media.KindAudio, Audio: audio}}
	if feed != "" {
		tracks = append(tracks, mpegts.Track{PID: telemetry.PID, StreamType: mpegts.StreamTypePrivate, FormatID: mpegts.FormatTandem})
	}
	mux := mpegts.NewMuxer(tracks, c.WriteMessage)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer c.Close()
		epoch := inbandEpoch
		var quietSince time.Time // like the appliance's capture.Stats.SilentFor
		for {
			n := int64(time.Since(epoch)/time.Microsecond) * 48000 / 1024 / 1e6
			due := epoch.Add(time.Duration((n + 1) * 1024 * int64(time.Second) / 48000))
			select {
			case <-time.After(time.Until(due)):
			case <-ctx.Done():
				return
			}
			n++
			if stalled(time.Now()) {
				continue
			}
			pts := audio.FramePTS(n)
			quiet := silent(time.Now())
			data := frames[n%int64(len(frames))]
			if quiet {
				data = silence
				if quietSince.IsZero() {
					quietSince = time.Now()
				}
			} else {
				quietSince = time.Time{}
			}
			if mux.WriteFrame(0x100, media.Frame{Kind: media.KindAudio, PTS: pts & (1<<33 - 1), DTS: pts & (1<<33 - 1), Key: true, Data: data}) != nil {
				return
			}
			if feed != "" && n%5 == 0 {
				lv := -15.0
				var silentMs int64
				if quiet {
					lv = -120
					silentMs = time.Since(quietSince).Milliseconds()
				}
				rep := telemetry.Report{Feed: feed, SilentMs: silentMs, Levels: []telemetry.ChannelLevel{{PeakDBFS: lv + 3, RMSDBFS: lv}, {PeakDBFS: lv + 3, RMSDBFS: lv}}}
				if o.video != nil {
					v := o.video(time.Now())
					rep.Video = &v
				}
				b, _ := telemetry.Marshal(rep)
				mux.WriteData(telemetry.PID, pts&(1<<33-1), b)
			}
		}
	}()
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func TestSilenceOnPrimarySwitchesAndReturns(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) { c.Stable = switcher.Duration(4 * time.Second) })
	base := "http://" + srv.HTTPAddr().String()
	addr := srv.SRTAddr().String()
	var mu sync.Mutex
	var quietFrom, quietTo time.Time
	silentPrimary := func(now time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		return !quietFrom.IsZero() && now.After(quietFrom) && (quietTo.IsZero() || now.Before(quietTo))
	}
	inbandPublisher(t, addr, "#!::r=live/quiet,m=publish,s=q1", "primary", silentPrimary)
	inbandPublisher(t, addr, "#!::r=live/quiet_fallback,m=publish,s=q1", "fallback", func(time.Time) bool { return false })
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/quiet")
		return st != nil && st.Mode == "aligned" && st.Active == "primary"
	}) {
		t.Fatalf("stream never aligned on the primary: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/quiet"))
	}
	time.Sleep(6 * time.Second) // past the startup allowance
	mu.Lock()
	quietFrom = time.Now()
	mu.Unlock()
	time.Sleep(3 * time.Second)
	mu.Lock()
	quietTo = time.Now()
	mu.Unlock()
	time.Sleep(6 * time.Second)

	var away, back time.Time
	for _, e := range e2e.GetEvents(t, base, nil) {
		if e.Kind == "switch" && e.To == "fallback" && away.IsZero() && e.Time.After(quietFrom) {
			away = e.Time
			if !strings.Contains(e.Reason, "silence") {
				t.Errorf("switch reason %q does not name silence", e.Reason)
			}
		}
		if e.Kind == "switch" && e.To == "primary" && !away.IsZero() && back.IsZero() {
			back = e.Time
		}
	}
	if away.IsZero() || back.IsZero() {
		t.Fatalf("want a switch away for silence and one back: %+v", e2e.GetEvents(t, base, nil))
	}
	detect := away.Sub(quietFrom)
	t.Logf("silence detected and switched after %v (threshold 2s); back %v after sound returned (stability window 4s)",
		detect.Round(time.Millisecond), back.Sub(quietTo).Round(time.Millisecond))
	if detect < 2*time.Second || detect > 2*time.Second+300*time.Millisecond {
		t.Errorf("switch %v after the silence began, want the 2 s threshold (+ telemetry interval)", detect)
	}
	if r := back.Sub(quietTo); r < 4*time.Second || r > 4*time.Second+500*time.Millisecond {
		t.Errorf("returned %v after sound came back, want the 4 s stability window", r)
	}
}

func TestWebhooksSignedInOrderAcrossReceiverOutage(t *testing.T) {
	const secret = "hook-secret-123"
	var mu sync.Mutex
	var got []struct {
		seq          uint64
		kind, stream string
	}
	down := true
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if err := notify.Verify(secret, r.Header.Get("X-Tandem-Timestamp"), body, r.Header.Get("X-Tandem-Signature")); err != nil {
			t.Errorf("bad signature: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var e struct {
			ID     uint64 `json:"id"`
			Kind   string `json:"kind"`
			Stream string `json:"stream"`
		}
		if err := jsonUnmarshal(body, &e); err != nil {
			t.Errorf("payload: %v", err)
		}
		got = append(got, struct {
			seq          uint64
			kind, stream string
		}{e.ID, e.Kind, e.Stream})
	}))
	defer recv.Close()
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.Webhooks = []switcher.Webhook{{URL: recv.URL + "/hook", Secret: secret}}
	})
	base := "http://" + srv.HTTPAddr().String()
	stop := inbandPublisher(t, srv.SRTAddr().String(), "#!::r=live/hook,m=publish,s=h1", "primary", func(time.Time) bool { return false })
	inbandPublisher(t, srv.SRTAddr().String(), "#!::r=live/hook_fallback,m=publish,s=h1", "fallback", func(time.Time) bool { return false })
	time.Sleep(3 * time.Second)
	stop() // the primary goes: a switch to the fallback
	time.Sleep(2 * time.Second)
	mu.Lock()
	down = false // the receiver comes back: everything queued arrives
	mu.Unlock()
	if !e2e.WaitFor(20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		kinds := map[string]bool{}
		for _, g := range got {
			kinds[g.kind] = true
		}
		return kinds["publish"] && kinds["switch"]
	}) {
		t.Fatalf("webhook got %+v, want publish and switch events", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, g := range got {
		if i > 0 && g.seq <= got[i-1].seq {
			t.Errorf("webhook events out of order: %d after %d", g.seq, got[i-1].seq)
		}
		if strings.HasSuffix(g.stream, "_fallback") {
			t.Errorf("a webhook named the fallback as a stream: %+v", g)
		}
	}
	t.Logf("webhook received %d events in order after a 5 s outage", len(got))
	for _, s := range e2e.GetStreams(t, base, nil).Streams {
		if strings.HasSuffix(s.Name, "_fallback") {
			t.Errorf("stream list shows the fallback as a stream: %s", s.ID)
		}
	}
}

// TestFrozenVideoInTelemetry: the appliance reports the primary's picture
// frozen (its telemetry's video.frozen_ms) → the output goes to the
// fallback once it has been frozen for frozen_video_for, and returns after
// the stability window once the picture moves again.
func TestFrozenVideoInTelemetry(t *testing.T) {
	const frozenFor, stable = time.Second, time.Second
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.Stable = switcher.Duration(stable)
		c.Health.FrozenVideoFor = switcher.Duration(frozenFor)
	})
	base := "http://" + srv.HTTPAddr().String()
	addr := srv.SRTAddr().String()
	var mu sync.Mutex
	var frozenFrom, frozenTo time.Time
	picture := func(now time.Time) telemetry.VideoStatus {
		mu.Lock()
		defer mu.Unlock()
		if !frozenFrom.IsZero() && now.After(frozenFrom) && (frozenTo.IsZero() || now.Before(frozenTo)) {
			return telemetry.VideoStatus{FrozenMs: now.Sub(frozenFrom).Milliseconds()}
		}
		return telemetry.VideoStatus{}
	}
	never := func(time.Time) bool { return false }
	framePublisher(t, addr, "#!::r=live/frz,m=publish,s=f1", pubOptions{feed: "primary", silent: never, stalled: never, video: picture})
	inbandPublisher(t, addr, "#!::r=live/frz_fallback,m=publish,s=f1", "fallback", never)
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/frz")
		return st != nil && st.Mode == "aligned" && st.Active == "primary"
	}) {
		t.Fatalf("stream never aligned on the primary: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/frz"))
	}
	time.Sleep(time.Second)
	mu.Lock()
	frozenFrom = time.Now()
	mu.Unlock()
	time.Sleep(2 * time.Second)
	mu.Lock()
	frozenTo = time.Now()
	mu.Unlock()
	var away, back time.Time
	if !e2e.WaitFor(5*time.Second, func() bool {
		for _, e := range e2e.GetEvents(t, base, nil) {
			if e.Stream != "live/frz" || e.Kind != "switch" || !e.Time.After(frozenFrom) {
				continue
			}
			if e.To == "fallback" && away.IsZero() {
				away = e.Time
				if !strings.Contains(e.Reason, "video: frozen") {
					t.Errorf("switch reason %q does not name the frozen video", e.Reason)
				}
			}
			if e.To == "primary" && !away.IsZero() && back.IsZero() {
				back = e.Time
			}
		}
		return !back.IsZero()
	}) {
		t.Fatalf("want a switch away for the frozen picture and one back: %+v", e2e.GetEvents(t, base, nil))
	}
	detect := away.Sub(frozenFrom)
	t.Logf("frozen picture: switched %v after it froze (frozen_video_for %v, + the SRT latency); back %v after it moved (stability %v)",
		detect.Round(time.Millisecond), frozenFor, back.Sub(frozenTo).Round(time.Millisecond), stable)
	// The reports travel the SRT latency (120 ms) and are dated back by
	// their frozen_ms.
	if detect < frozenFor || detect > frozenFor+250*time.Millisecond {
		t.Errorf("switched %v after the picture froze, want frozen_video_for (%v) + the SRT latency", detect, frozenFor)
	}
	if r := back.Sub(frozenTo); r < stable || r > stable+400*time.Millisecond {
		t.Errorf("returned %v after the picture moved, want the %v stability window", r, stable)
	}
}
