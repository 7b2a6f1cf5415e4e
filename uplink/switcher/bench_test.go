package switcher_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"tandem/scripts/e2e"
	"tandem/scripts/netlab"
	"testing"
	"time"

	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
	"tandem/uplink/switcher"
	"tandem/uplink/testpub"
)

// BenchmarkLabLatency measures, in the two-ISP lab with default settings,
// the time from a frame's send at the publisher to its arrival at an HTTP
// listener. Run with -benchtime=1x: one 20 s measurement. With a few
// listeners (up to listener_batch_above) each frame is written at once;
// above that, listeners get each frame 0-480 ms later than this.
func BenchmarkLabLatency(b *testing.B) {
	r := &labRig{e2e.NewRig(b, netlab.Options{})}
	sendLog := filepath.Join(b.TempDir(), "send.log")
	r.publish(b, []string{"-sendlog", sendLog}, "both")
	r.waitAligned(b)
	l := r.listen(b)
	time.Sleep(20 * time.Second)
	frames, arrived, err := l.Stop()
	if err != nil {
		b.Fatal(err)
	}
	sent := readSendLog(b, sendLog)
	var lat []time.Duration
	for i, f := range frames {
		if i < switcher.DefaultConfig().ListenerBurst { // the connect burst was buffered, not live
			continue
		}
		if at, ok := sent[testpub.FrameHash(f[adts.HeaderLength:])]; ok {
			lat = append(lat, arrived[i].Sub(at))
		}
	}
	if len(lat) < len(frames)/2 {
		b.Fatalf("matched only %d of %d frames to their send time", len(lat), len(frames))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	med, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(ms(med), "median-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(220, "playout-delay-ms")
	b.Logf("send->listener latency over %d frames: median %v, p99 %v, min %v, max %v (playout delay 220ms, target median <= 270ms)",
		len(lat), med.Round(time.Millisecond/10), p99.Round(time.Millisecond/10), lat[0].Round(time.Millisecond/10), lat[len(lat)-1].Round(time.Millisecond/10))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func readSendLog(b testing.TB, path string) map[string]time.Time {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string]time.Time{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue
		}
		ns, _ := strconv.ParseInt(fs[2], 10, 64)
		at := time.Unix(0, ns)
		if prev, ok := out[fs[1]]; !ok || at.Before(prev) {
			out[fs[1]] = at
		}
	}
	return out
}

// BenchmarkSwitcherPairs measures the switcher's CPU and memory per aligned
// stream pair at 128 kbit/s: a switcher process ingests N pairs sent by an
// in-process load generator (pre-encoded AAC, paced in real time, two SRT
// connections per pair). Run with -benchtime=1x.
//
// TANDEM_BENCH_PACK=1,2,3 also measures senders that pack that many
// frames per SRT message (as an appliance with max_pack_delay does: 2
// frames for 25 ms, 3 for 50 ms), as sub-benchmarks pack=<frames>; unset,
// one frame per message.
func BenchmarkSwitcherPairs(b *testing.B) {
	packs := []int{1}
	if v := os.Getenv("TANDEM_BENCH_PACK"); v != "" {
		packs = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 3 {
				b.Fatalf("TANDEM_BENCH_PACK=%q: %q is not a frame count 1..3 (7 TS packets hold at most 3 frames at 128 kbit/s)", v, f)
			}
			packs = append(packs, n)
		}
	}
	for _, pairs := range []int{100, 200, 500} {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) {
			if len(packs) == 1 && packs[0] == 1 {
				benchPairs(b, pairs, 1)
				return
			}
			for _, n := range packs {
				b.Run(fmt.Sprintf("pack=%d", n), func(b *testing.B) { benchPairs(b, pairs, n) })
			}
		})
	}
}

func benchPairs(b *testing.B, pairs, pack int) {
	frames := encodedTone(b)
	// The generator stands in for appliances, which send in-band levels:
	// it sends none, so do not decode 2N inputs instead.
	base, port, pid := startBenchSwitcher(b, "TANDEM_SWITCHER_LEVEL_DECODER=")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	audio := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
	genPorts := []int{e2e.FreeUDPPort(b), e2e.FreeUDPPort(b), e2e.FreeUDPPort(b), e2e.FreeUDPPort(b)}
	type conn struct {
		c    *srt.Conn
		mux  *mpegts.Muxer
		pack *mpegts.Packer
	}
	conns := make([][2]conn, pairs)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var dialErr atomic.Value
	for i := 0; i < pairs; i++ {
		for role := 0; role < 2; role++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				id := streamid.ID{App: "bench", Name: fmt.Sprintf("p%d", i), Mode: streamid.ModePublish, Session: fmt.Sprintf("s%d", i), Role: streamid.RolePrimary}
				if role == 1 {
					id.Role = streamid.RoleFallback
				}
				dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
				defer dcancel()
				// Callers bound to one local port share one libsrt
				// multiplexer (two threads) instead of one each: without
				// that, the load generator, not the switcher, saturates
				// this 2-core machine.
				local := fmt.Sprintf("127.0.0.1:%d", genPorts[(2*i+role)%len(genPorts)])
				c, err := srt.Dial(dctx, fmt.Sprintf("127.0.0.1:%d", port), srt.Options{StreamID: id.String(), LocalAddr: local})
				if err != nil {
					dialErr.Store(err)
					return
				}
				p := mpegts.NewPacker(c.WriteMessage)
				m := mpegts.NewMuxer([]mpegts.Track{{PID: 0x100, Kind: media.KindAudio, Audio: audio}}, p.Write)
				m.PSIInterval = media.ClockRate / 2
				conns[i][role] = conn{c, m, p}
			}()
		}
	}
	wg.Wait()
	if err := dialErr.Load(); err != nil {
		b.Fatalf("dial: %v", err)
	}
	defer func() {
		for _, p := range conns {
			for _, c := range p {
				c.c.Close()
			}
		}
	}()

	// One sender goroutine per pair, each on the shared capture clock.
	epoch := time.Now()
	var sendErrs atomic.Int64
	sctx, scancel := context.WithCancel(ctx)
	var swg sync.WaitGroup
	for i := range conns {
		swg.Add(1)
		go func() {
			defer swg.Done()
			for n := int64(0); ; n++ {
				due := epoch.Add(time.Duration(n * 1024 * int64(time.Second) / 48000))
				select {
				case <-time.After(time.Until(due)):
				case <-sctx.Done():
					return
				}
				pts := audio.FramePTS(n)
				f := media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: frames[n%int64(len(frames))]}
				for _, c := range conns[i] {
					if err := c.mux.WriteFrame(0x100, f); err != nil {
						sendErrs.Add(1)
					}
					// Every pack-th frame closes the message (the
					// appliance's timer would); a frame that does not fit
					// has sent the others already.
					if (n+1)%int64(pack) == 0 {
						if err := c.pack.Flush(); err != nil {
							sendErrs.Add(1)
						}
					}
				}
			}
		}()
	}
	defer func() { scancel(); swg.Wait() }()

	time.Sleep(5 * time.Second) // warm up: every stream online and steady
	if p := os.Getenv("TANDEM_BENCH_PROFILE"); p != "" {
		go exec.Command("curl", "-s", "-o", p, "http://127.0.0.1:6060/debug/pprof/profile?seconds=8").Run()
	}
	cpu0, wall0 := procCPU(b, pid), time.Now()
	time.Sleep(10 * time.Second)
	cpu1, wall1 := procCPU(b, pid), time.Now()
	rss := procRSS(b, pid)
	if os.Getenv("TANDEM_BENCH_THREADS") != "" {
		b.Log(threadCPU(pid))
	}
	cores := (cpu1 - cpu0).Seconds() / wall1.Sub(wall0).Seconds()

	body, err := e2e.HTTPGet(base + "/api/v1/streams")
	if err != nil {
		b.Fatal(err)
	}
	online := strings.Count(body, `"state": "online"`)
	holes := sumField(body, `"holes_filled": `)
	threads := procThreads(b, pid)

	b.ReportMetric(cores*100, "cpu-%-of-core")
	b.ReportMetric(cores*1000/float64(pairs), "milli-core/pair")
	b.ReportMetric(float64(pairs)/cores, "pairs/core")
	b.ReportMetric(float64(rss)/float64(1<<20)/float64(pairs), "MB-RSS/pair")
	b.Logf("%d pairs, %d frames per message: switcher used %.1f%% of a core (%.2f milli-core/pair, %.0f pairs/core), RSS %.1f MB (%.3f MB/pair), %d threads; %d/%d streams online, %d holes filled during the run, %d send errors",
		pairs, pack, cores*100, cores*1000/float64(pairs), float64(pairs)/cores, float64(rss)/(1<<20), float64(rss)/(1<<20)/float64(pairs), threads, online, pairs, holes, sendErrs.Load())
	if online != pairs {
		b.Errorf("only %d of %d streams online", online, pairs)
	}
	// CPU per pair means nothing if the switcher did not keep up.
	if expected := int64(float64(pairs) * 46.875 * 15); holes > expected/100 {
		b.Errorf("switcher did not keep up with %d pairs: %d holes filled (%.0f%% of the frames since start); the CPU figure above is not a throughput",
			pairs, holes, 100*float64(holes)/float64(expected))
	}
}

// encodedTone returns 10 s of a 440 Hz stereo tone as raw AAC frames at 128 kbit/s.
func encodedTone(b testing.TB) [][]byte {
	return e2e.EncodeAAC(b, "sine=f=440:sample_rate=48000:duration=10,aformat=channel_layouts=stereo")
}

// startBenchSwitcher runs the built switcher binary, as in production, with
// env over the test defaults; TANDEM_BENCH_PROFILE opens its profiler on
// 127.0.0.1:6060. It returns the HTTP base, the SRT port and the pid.
func startBenchSwitcher(b *testing.B, env ...string) (base string, srtPort, pid int) {
	b.Helper()
	if os.Getenv("TANDEM_BENCH_PROFILE") != "" {
		env = append(env, "TANDEM_SWITCHER_DEBUG_ADDR=127.0.0.1:6060")
	}
	base, srtAddr, pid := e2e.StartSwitcherProcess(b, env...)
	_, p, _ := strings.Cut(srtAddr, ":")
	srtPort, err := strconv.Atoi(p)
	if err != nil {
		b.Fatalf("switcher SRT address %q: %v", srtAddr, err)
	}
	return base, srtPort, pid
}

// procCPU is a process's CPU time so far.
func procCPU(b testing.TB, pid int) time.Duration {
	st, err := e2e.ReadProcStat(pid)
	if err != nil {
		b.Fatal(err)
	}
	return st.CPU
}

func procStatus(b testing.TB, pid int, key string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func procRSS(b testing.TB, pid int) int64   { return procStatus(b, pid, "VmRSS") * 1024 }
func procThreads(b testing.TB, pid int) int { return int(procStatus(b, pid, "Threads")) }

func sumField(body, key string) int64 {
	var total int64
	for _, part := range strings.Split(body, key)[1:] {
		end := strings.IndexAny(part, ",\n}")
		n, _ := strconv.ParseInt(strings.TrimSpace(part[:end]), 10, 64)
		total += n
	}
	return total
}

// threadCPU sums CPU time per thread name (libsrt names its threads SRT:*).
func threadCPU(pid int) string {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	by := map[string]int64{}
	for _, d := range dirs {
		data, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		name := s[strings.IndexByte(s, '(')+1 : strings.LastIndexByte(s, ')')]
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(fs[11], 10, 64)
		st, _ := strconv.ParseInt(fs[12], 10, 64)
		by[name] += ut + st
	}
	var parts []string
	for k, v := range by {
		parts = append(parts, fmt.Sprintf("%s=%.1fs", k, float64(v)/100))
	}
	sort.Strings(parts)
	return "cpu by thread name since start: " + strings.Join(parts, " ")
}

// BenchmarkDetectionToSwitch measures, per failure signal, the time to the
// switcher's switch event over repeated trials on loopback: stall (the
// primary stops sending, connection open), disconnect (the primary
// closes), silence (the primary's audio and its in-band levels go
// silent), silence-decoded (a third-party primary with no telemetry goes
// silent: the switcher decodes its audio). Thresholds: stall 500 ms,
// silence 2 s.
//
// Two figures per signal. "from-failure" counts from the failure at the
// publisher; it includes the SRT latency (120 ms), the time the last good
// frame (or the first silent one) takes to reach the switcher. "from-known"
// counts from the moment the switcher could know, as the API reports it:
// the primary's last frame arrival (stall), the silence onset as its
// levels date it (silence), the close (disconnect). Targets: stall
// threshold + 50 ms, silence threshold + 100 ms, from-known.
// Run with -benchtime=1x.
func BenchmarkDetectionToSwitch(b *testing.B) {
	const trials = 5
	for _, signal := range []string{"stall", "disconnect", "silence", "silence-decoded"} {
		b.Run(signal, func(b *testing.B) {
			srv := startSwitcher(b, nil)
			base := "http://" + srv.HTTPAddr().String()
			addr := srv.SRTAddr().String()
			var fromFailure, fromKnown []time.Duration
			for i := 0; i < trials; i++ {
				name := fmt.Sprintf("live/%s%d", strings.ReplaceAll(signal, "-", ""), i)
				var mu sync.Mutex
				var at time.Time
				failing := func(kinds ...string) func(time.Time) bool {
					return func(now time.Time) bool {
						mu.Lock()
						defer mu.Unlock()
						return slices.Contains(kinds, signal) && !at.IsZero() && now.After(at)
					}
				}
				never := func(time.Time) bool { return false }
				sess := fmt.Sprintf("d%d%s", i, signal)
				var stop func()
				mode := "aligned"
				if signal == "silence-decoded" {
					// Third-party publishers: no telemetry, no shared session.
					mode = "splice"
					stop = plainPublisher(b, addr, "#!::r="+name+",m=publish", failing("silence-decoded"), never)
					plainPublisher(b, addr, "#!::r="+name+"_fallback,m=publish", never, never)
				} else {
					stop = inbandPublisherStall(b, addr, "#!::r="+name+",m=publish,s="+sess, "primary", failing("silence"), failing("stall"))
					inbandPublisher(b, addr, "#!::r="+name+"_fallback,m=publish,s="+sess, "fallback", never)
				}
				if !e2e.WaitFor(15*time.Second, func() bool {
					st := e2e.FindStream(e2e.GetStreams(b, base, nil), name)
					return st != nil && st.Mode == mode && st.Active == "primary"
				}) {
					b.Fatalf("%s never %s on the primary", name, mode)
				}
				time.Sleep(6 * time.Second) // past the startup allowance
				mu.Lock()
				at = time.Now()
				mu.Unlock()
				if signal == "disconnect" {
					stop()
				}
				var switched time.Time
				var reason string
				e2e.WaitFor(5*time.Second, func() bool {
					for _, e := range e2e.GetEvents(b, base, nil) {
						if e.Stream == name && e.Kind == "switch" && e.To == "fallback" && e.Time.After(at) {
							switched, reason = e.Time, e.Reason
							return true
						}
					}
					return false
				})
				if switched.IsZero() {
					b.Fatalf("trial %d: no switch after the %s", i, signal)
				}
				known := at
				if in := inputStatus(e2e.FindStream(e2e.GetStreams(b, base, nil), name), "primary"); in != nil {
					switch {
					case signal == "stall":
						known = in.LastFrameAt
					case strings.HasPrefix(signal, "silence") && in.Levels != nil:
						known = in.Levels.SilentSince
					}
				}
				if known.IsZero() {
					b.Fatalf("trial %d: the API does not say when the switcher could know of the %s", i, signal)
				}
				b.Logf("trial %d: %v from the failure, %v from when the switcher could know: %s", i,
					switched.Sub(at).Round(time.Millisecond), switched.Sub(known).Round(time.Millisecond), reason)
				fromFailure = append(fromFailure, switched.Sub(at))
				fromKnown = append(fromKnown, switched.Sub(known))
			}
			stat := func(d []time.Duration) (med, mx time.Duration) {
				slices.Sort(d)
				return d[len(d)/2], d[len(d)-1]
			}
			fm, fx := stat(fromFailure)
			km, kx := stat(fromKnown)
			b.ReportMetric(ms(fm), "from-failure-median-ms")
			b.ReportMetric(ms(fx), "from-failure-max-ms")
			b.ReportMetric(ms(km), "from-known-median-ms")
			b.ReportMetric(ms(kx), "from-known-max-ms")
			b.Logf("%s: detection-to-switch over %d trials: from the failure median %v max %v; from when the switcher could know median %v max %v",
				signal, trials, fm.Round(time.Millisecond), fx.Round(time.Millisecond), km.Round(time.Millisecond), kx.Round(time.Millisecond))
		})
	}
}
