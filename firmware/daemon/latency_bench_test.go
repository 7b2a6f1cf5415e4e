package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/firmware/api"
	"tandem/scripts/e2e"
	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
)

// BenchmarkCaptureToListenerLatency measures, with default settings, the
// time from the capture of a frame's audio to its arrival at a listener:
// the real daemon (tone source, both feeds over loopback "links") to the
// real switcher, heard by an HTTP listener (/live/<id>.aac, what a player
// uses) and by an SRT pull (m=request, which adds its own 120 ms SRT
// latency). Run with -benchtime=1x. TANDEM_BENCH_VARIANTS (as for
// BenchmarkApplianceVsFFmpeg) measures one sub-benchmark per variant, one
// after the other (add -count to interleave rounds).
//
// Dating a frame: the daemon's status gives session_started, the wall time
// of capture sample 0; the switcher's status gives the inputs' frame_offset
// (output frame index = capture frame index + offset); the SRT pull
// carries each output frame's PTS. Output frame n therefore holds capture
// frame n − offset, whose last sample was captured at session_started +
// (n − offset + 1)·1024 samples. HTTP frames carry no timestamp: each is
// matched to its pull twin by payload (both come from one fan-out). The
// latency of a frame is its arrival (fully read) at the listener minus the
// capture time of its last sample.
func BenchmarkCaptureToListenerLatency(b *testing.B) {
	variants := benchVariants(b)
	if len(variants) == 1 {
		benchLatency(b, variants[0])
		return
	}
	for i, v := range variants {
		b.Run(fmt.Sprintf("v%d", i+1), func(b *testing.B) {
			b.Logf("variant: %s", v)
			benchLatency(b, v)
		})
	}
}

// benchLatency measures with the variant's config keys and environment
// (none: the defaults).
func benchLatency(b *testing.B, variant benchVariant) {
	e2e.Need(b, "ffmpeg")
	const (
		settle  = 8 * time.Second  // the merge's first jitter window narrows the startup hold
		measure = 20 * time.Second // frames measured per listener: about 900
		skip    = 2 * time.Second  // a new listener's first frames are its connect burst, not live
	)
	base, srtAddr := e2e.StartSwitcher(b)
	bin := e2e.Binary(b, "tandem/firmware/cmd/tandem")
	_, socket := startBenchDaemon(b, bin, "lat", srtAddr, variant, "")

	offset := func() (int64, bool) {
		st := e2e.FindStream(e2e.GetStreams(b, base, nil), "live/lat")
		if st == nil || st.Mode != "aligned" || len(st.Inputs) != 2 {
			return 0, false
		}
		a, f := st.Inputs[0].FrameOffset, st.Inputs[1].FrameOffset
		if a == nil || f == nil || *a != *f {
			return 0, false
		}
		return *a, true
	}
	if !e2e.WaitFor(20*time.Second, func() bool { _, ok := offset(); return ok }) {
		b.Fatal("the stream never went online with both feeds aligned")
	}
	time.Sleep(settle)
	st := daemonStatus(b, socket)
	if st.SessionStarted.IsZero() || st.Source.SampleRate <= 0 {
		b.Fatalf("the daemon's status does not date its capture: session_started %v, sample rate %d", st.SessionStarted, st.Source.SampleRate)
	}
	sw := e2e.FindStream(e2e.GetStreams(b, base, nil), "live/lat")
	for _, in := range sw.Inputs {
		if in.Session != st.SessionID {
			b.Fatalf("switcher input %s has session %q, the daemon captures session %q", in.Role, in.Session, st.SessionID)
		}
	}
	off0, _ := offset()

	pull := startPull(b, srtAddr, "#!::r=live/lat,m=request")
	http := e2e.Listen(b, base+"/live/lat.aac", nil)
	time.Sleep(measure + skip)
	frames, arrived, err := http.Stop()
	if err != nil {
		b.Fatal(err)
	}
	pulled, err := pull.stop()
	if err != nil {
		b.Fatal(err)
	}
	off1, ok := offset()
	if !ok || off1 != off0 {
		b.Fatalf("the output timeline was remapped during the measurement (frame offset %d, then %d %v)", off0, off1, ok)
	}

	audio := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: st.Source.SampleRate, Channels: st.Source.Channels}
	captured := func(outIndex int64) time.Time {
		lastEnd := (outIndex - off0 + 1) * int64(audio.FrameSamples())
		return st.SessionStarted.Add(time.Duration(lastEnd) * time.Second / time.Duration(audio.SampleRate))
	}

	// The pull: PTS → output index.
	var pullLat []time.Duration
	byPayload := map[string]int64{} // payload → output index; -1 if it occurs twice
	for _, f := range pulled {
		n := audio.FrameIndex(f.pts)
		if prev, dup := byPayload[f.payload]; dup && prev != n {
			byPayload[f.payload] = -1
		} else {
			byPayload[f.payload] = n
		}
		if f.arrived.Sub(pulled[0].arrived) >= skip {
			pullLat = append(pullLat, f.arrived.Sub(captured(n)))
		}
	}
	// HTTP: consecutive output frames; their place comes from payloads
	// that occur once.
	votes := map[int64]int{}
	for i, f := range frames {
		if n, ok := byPayload[string(f[adts.HeaderLength:])]; ok && n >= 0 {
			votes[n-int64(i)]++
		}
	}
	var first int64
	best := 0
	for k, v := range votes {
		if v > best {
			first, best = k, v
		}
	}
	if best < len(frames)/2 {
		b.Fatalf("only %d of %d listener frames place themselves on the pulled timeline", best, len(frames))
	}
	var httpLat []time.Duration
	for i := range frames {
		if arrived[i].Sub(arrived[0]) >= skip {
			httpLat = append(httpLat, arrived[i].Sub(captured(first+int64(i))))
		}
	}
	if len(httpLat) < 500 || len(pullLat) < 500 {
		b.Fatalf("only %d HTTP and %d pulled frames measured in %v", len(httpLat), len(pullLat), measure)
	}
	hm, hp := quantile(httpLat, 0.5), quantile(httpLat, 0.99)
	pm, pp := quantile(pullLat, 0.5), quantile(pullLat, 0.99)
	b.ReportMetric(ms(hm), "median-ms")
	b.ReportMetric(ms(hp), "p99-ms")
	b.ReportMetric(ms(pm), "pull-median-ms")
	b.ReportMetric(ms(pp), "pull-p99-ms")
	b.ReportMetric(sw.PlayoutDelayMs, "playout-delay-ms")
	b.Logf("capture -> HTTP listener over %d frames: median %v, p99 %v (min %v, max %v); capture -> SRT pull over %d frames: median %v, p99 %v; switcher playout delay %.0f ms",
		len(httpLat), hm.Round(time.Millisecond/10), hp.Round(time.Millisecond/10), slices.Min(httpLat).Round(time.Millisecond/10), slices.Max(httpLat).Round(time.Millisecond/10),
		len(pullLat), pm.Round(time.Millisecond/10), pp.Round(time.Millisecond/10), sw.PlayoutDelayMs)
}

func daemonStatus(b *testing.B, socket string) api.Status {
	b.Helper()
	resp, err := api.Client(socket).Get(api.BaseURL + "/api/v1/status")
	if err != nil {
		b.Fatalf("daemon status: %v", err)
	}
	defer resp.Body.Close()
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		b.Fatalf("daemon status: %v", err)
	}
	return st
}

// pulledFrame is one audio frame of an SRT pull, with its arrival.
type pulledFrame struct {
	pts     int64
	payload string
	arrived time.Time
}

type puller struct {
	conn   *srt.Conn
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	frames []pulledFrame
	err    error
}

// startPull reads a switcher's SRT pull output until stop.
func startPull(b *testing.B, addr, streamID string) *puller {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	conn, err := srt.Dial(dctx, addr, srt.Options{StreamID: streamID})
	if err != nil {
		cancel()
		b.Fatalf("SRT pull %s: %v", streamID, err)
	}
	p := &puller{conn: conn, cancel: cancel, done: make(chan struct{})}
	var arrived time.Time
	dmx := mpegts.NewDemuxer(mpegts.Handler{OnFrame: func(pid uint16, f media.Frame) {
		if f.Kind != media.KindAudio {
			return
		}
		p.mu.Lock()
		p.frames = append(p.frames, pulledFrame{pts: f.PTS, payload: string(f.Data), arrived: arrived})
		p.mu.Unlock()
	}})
	go func() {
		defer close(p.done)
		buf := make([]byte, srt.MaxMessageSize)
		for {
			n, err := conn.ReadMessage(ctx, buf)
			arrived = time.Now()
			if err == nil {
				err = dmx.Feed(buf[:n])
			}
			if err != nil {
				if ctx.Err() == nil {
					p.mu.Lock()
					p.err = err
					p.mu.Unlock()
				}
				return
			}
		}
	}()
	b.Cleanup(func() { p.cancel(); <-p.done; conn.Close() })
	return p
}

// stop ends the pull and returns its frames, or why it ended early.
func (p *puller) stop() ([]pulledFrame, error) {
	p.cancel()
	<-p.done
	p.conn.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, fmt.Errorf("SRT pull ended early: %w", p.err)
	}
	return p.frames, nil
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
