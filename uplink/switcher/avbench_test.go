package switcher_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/media"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
	"tandem/uplink/testpub"
)

// BenchmarkAVIngest measures the switcher's CPU and memory per A/V stream
// (H.264 + AAC at 2 Mbit/s) ingested over SRT and over RTMP: 100 streams
// of one publisher each, replayed in real time from one ffmpeg-encoded
// clip by our own SRT caller and RTMP client, measured over 10 s after a
// 5 s warm-up. Run with -benchtime=1x.
func BenchmarkAVIngest(b *testing.B) {
	rec := encodeBenchClip(b)
	streams := 100
	if n, err := strconv.Atoi(os.Getenv("TANDEM_BENCH_AV_STREAMS")); err == nil && n > 0 {
		streams = n
	}
	protos := []string{"srt", "rtmp"}
	if p := os.Getenv("TANDEM_BENCH_AV_PROTO"); p != "" {
		protos = []string{p}
	}
	// SRT publishers spread over this many switcher ports
	// (srt_extra_addrs), each read by its own libsrt thread.
	srtPorts := []int{1, 2}
	if v := os.Getenv("TANDEM_BENCH_AV_SRT_PORTS"); v != "" {
		srtPorts = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(f); err == nil && n > 0 {
				srtPorts = append(srtPorts, n)
			}
		}
	}
	for _, proto := range protos {
		if proto != "srt" {
			b.Run(fmt.Sprintf("proto=%s/streams=%d", proto, streams), func(b *testing.B) { benchAVIngest(b, rec, proto, streams, 1) })
			continue
		}
		for _, ports := range srtPorts {
			b.Run(fmt.Sprintf("proto=srt/ports=%d/streams=%d", ports, streams), func(b *testing.B) { benchAVIngest(b, rec, proto, streams, ports) })
		}
	}
}

// encodeBenchClip encodes 10 s of 640x360 test pattern with noise (so that
// x264 needs the bitrate) at a constant 1.87 Mbit/s plus 128 kbit/s AAC.
func encodeBenchClip(b *testing.B) *testpub.Recording {
	ffmpeg := e2e.Need(b, "ffmpeg")
	out := filepath.Join(b.TempDir(), "av2m.ts")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "10", "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
		"-b:v", "1870k", "-minrate", "1870k", "-maxrate", "1870k", "-bufsize", "1870k", "-x264-params", "nal-hrd=cbr", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "mpegts", out)
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("encode the 2 Mbit/s clip: %v: %s", err, o)
	}
	rec, err := testpub.LoadTS(out, 8*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	var bytes int64
	for _, f := range rec.Frames {
		bytes += int64(len(f.Data))
	}
	b.Logf("clip: %d frames, %.2f Mbit/s of audio and video payload", len(rec.Frames), float64(bytes)*8/8/1e6)
	return rec
}

func benchAVIngest(b *testing.B, rec *testpub.Recording, proto string, streams, ports int) {
	rtmpPort := e2e.FreeTCPPort(b)
	var srtPorts []int
	var extra []string
	for range ports - 1 {
		p := e2e.FreeUDPPort(b)
		srtPorts = append(srtPorts, p)
		extra = append(extra, fmt.Sprintf("127.0.0.1:%d", p))
	}
	// Ingest alone: the level decoders a third-party input gets (one
	// ffmpeg each, ~1.4 % of a core) are a separate cost, off here.
	base, srtPort, pid := startBenchSwitcher(b, fmt.Sprintf("TANDEM_SWITCHER_RTMP_ADDR=127.0.0.1:%d", rtmpPort),
		"TANDEM_SWITCHER_SRT_EXTRA_ADDRS="+strings.Join(extra, ","), "TANDEM_SWITCHER_LEVEL_DECODER=")
	srtPorts = append([]int{srtPort}, srtPorts...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Dial every publisher, then start them all on one clock.
	senders := make([]func(media.Frame) error, streams)
	closers := make([]func() error, streams)
	var dialErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	genPorts := []int{e2e.FreeUDPPort(b), e2e.FreeUDPPort(b), e2e.FreeUDPPort(b), e2e.FreeUDPPort(b)}
	for i := range streams {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			defer dcancel()
			switch proto {
			case "srt":
				id := streamid.ID{App: "bench", Name: fmt.Sprintf("av%d", i), Mode: streamid.ModePublish}
				// Callers share a few local ports (libsrt multiplexers) so
				// the load generator does not saturate the machine first.
				s, err := testpub.DialSRT(dctx, fmt.Sprintf("127.0.0.1:%d", srtPorts[i%len(srtPorts)]), srt.Options{StreamID: id.String(), LocalAddr: fmt.Sprintf("127.0.0.1:%d", genPorts[i%len(genPorts)])}, rec)
				if err != nil {
					dialErr.Store(err)
					return
				}
				senders[i], closers[i] = s.Send, s.Close
			case "rtmp":
				c, err := testpub.DialRTMP(dctx, fmt.Sprintf("rtmp://127.0.0.1:%d/bench/av%d", rtmpPort, i), rec)
				if err != nil {
					dialErr.Store(err)
					return
				}
				senders[i], closers[i] = c.WriteFrame, c.Close
			}
		}()
	}
	wg.Wait()
	if err := dialErr.Load(); err != nil {
		b.Fatalf("dial %s: %v", proto, err)
	}
	var sendErrs atomic.Int64
	sctx, scancel := context.WithCancel(ctx)
	var swg sync.WaitGroup
	start := time.Now().Add(100 * time.Millisecond)
	for i := range streams {
		swg.Add(1)
		go func() {
			defer swg.Done()
			// Publishers start spread over a second, as real ones do.
			at := start.Add(time.Duration(i) * time.Second / time.Duration(streams))
			err := rec.Replay(sctx, at, int64(i)*90000, senders[i])
			if err != nil && sctx.Err() == nil {
				sendErrs.Add(1)
			}
		}()
	}
	defer func() {
		scancel()
		swg.Wait()
		for _, c := range closers {
			if c != nil {
				c()
			}
		}
	}()

	time.Sleep(5 * time.Second)
	if p := os.Getenv("TANDEM_BENCH_PROFILE"); p != "" {
		go exec.Command("curl", "-s", "-o", p+"."+proto, "http://127.0.0.1:6060/debug/pprof/profile?seconds=8").Run()
	}
	self := os.Getpid()
	cpu0, gen0, wall0 := procCPU(b, pid), procCPU(b, self), time.Now()
	rcvbuf0 := udpRcvbufErrors()
	swDrops0, genDrops0 := udpDrops(srtPorts...), udpDrops(genPorts...)
	body0, err := e2e.HTTPGet(base + "/api/v1/streams")
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	cpu1, gen1, wall1 := procCPU(b, pid), procCPU(b, self), time.Now()
	rss := procRSS(b, pid)
	rcvbufErrs := udpRcvbufErrors() - rcvbuf0
	swDrops, genDrops := udpDrops(srtPorts...)-swDrops0, udpDrops(genPorts...)-genDrops0
	if os.Getenv("TANDEM_BENCH_THREADS") != "" {
		b.Log(threadCPU(pid))
	}
	body, err := e2e.HTTPGet(base + "/api/v1/streams")
	if err != nil {
		b.Fatal(err)
	}
	secs := wall1.Sub(wall0).Seconds()
	cores := (cpu1 - cpu0).Seconds() / secs
	gen := (gen1 - gen0).Seconds() / secs
	online := strings.Count(body, `"state": "online"`)
	holes := sumField(body, `"holes_filled": `) - sumField(body0, `"holes_filled": `)
	var kbps float64
	for _, part := range strings.Split(body, `"bitrate_kbps": `)[1:] {
		var v float64
		fmt.Sscanf(part, "%g", &v)
		kbps += v
	}
	late := sumField(body, `"late": `) - sumField(body0, `"late": `)
	srtDrops := sumField(body, `"recv_drop": `) - sumField(body0, `"recv_drop": `)
	srtLoss := sumField(body, `"recv_loss": `) - sumField(body0, `"recv_loss": `)

	b.ReportMetric(cores*100/float64(streams), "%-of-core/stream")
	b.ReportMetric(float64(rss)/float64(1<<20)/float64(streams), "MB-RSS/stream")
	b.ReportMetric(cores*100, "cpu-%-of-core")
	b.Logf("%d %s A/V streams at 2 Mbit/s: switcher %.1f%% of a core (%.2f%% per stream), RSS %.0f MB (%.2f MB per stream); load generator %.0f%% of a core; %d/%d online, %d holes, %d late frames, SRT %d packets lost (recovered or not) and %d dropped as too late in the window, %d UDP datagrams dropped by full receive buffers (whole machine; %d on the switcher's port, %d on the publishers'); inputs report %.0f Mbit/s in all, %d send errors",
		streams, proto, cores*100, cores*100/float64(streams), float64(rss)/(1<<20), float64(rss)/(1<<20)/float64(streams), gen*100, online, streams, holes, late, srtLoss, srtDrops, rcvbufErrs, swDrops, genDrops, kbps/1000, sendErrs.Load())
	if online != streams {
		b.Errorf("only %d of %d streams online", online, streams)
	}
	// The CPU figure is a throughput only if the switcher kept up.
	if expected := int64(float64(streams) * 46.875 * secs); holes > expected/100 {
		b.Errorf("switcher did not keep up: %d holes filled in the window (%.1f%% of the audio frames)", holes, 100*float64(holes)/float64(expected))
	}
}

// udpRcvbufErrors is the kernel's count of UDP datagrams dropped because a
// socket's receive buffer was full (all sockets of the machine).
func udpRcvbufErrors() int64 {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

// udpDrops sums the kernel's per-socket drop counts of the UDP sockets
// bound to the given local ports (/proc/net/udp, last column).
func udpDrops(ports ...int) int64 {
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0
	}
	var total int64
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 {
			continue
		}
		_, hexPort, _ := strings.Cut(f[1], ":")
		port, _ := strconv.ParseInt(hexPort, 16, 32)
		for _, p := range ports {
			if int(port) == p {
				n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
				total += n
			}
		}
	}
	return total
}
