package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"tandem/scripts/e2e"
)

// cpuSample is the CPU time of the measured processes at one instant.
type cpuSample struct {
	at                   time.Time
	daemon, encoders     time.Duration
	encoderPIDs          []int
	ffmpeg               time.Duration
	daemonRSS, ffmpegRSS int64
}

// sampleCPU reads the daemon, each of its children (its ffmpeg
// encoders) and the single ffmpeg.
func sampleCPU(b *testing.B, daemonPID, ffmpegPID int) cpuSample {
	b.Helper()
	s := cpuSample{at: time.Now(), encoderPIDs: e2e.ChildrenOf(daemonPID)}
	d, err := e2e.ReadProcStat(daemonPID)
	if err != nil {
		b.Fatalf("the daemon is gone: %v", err)
	}
	s.daemon = d.CPU
	for _, c := range s.encoderPIDs {
		if st, err := e2e.ReadProcStat(c); err == nil {
			s.encoders += st.CPU
		}
	}
	f, err := e2e.ReadProcStat(ffmpegPID)
	if err != nil {
		b.Fatalf("the single ffmpeg is gone: %v", err)
	}
	s.ffmpeg = f.CPU
	s.daemonRSS, _ = e2e.ReadProcRSS(daemonPID)
	s.ffmpegRSS, _ = e2e.ReadProcRSS(ffmpegPID)
	return s
}

// cpuWindow is the share of a core each side used between two samples.
type cpuWindow struct {
	daemon, encoders, appliance, ffmpeg, ratio float64 // % of a core; ratio appliance/ffmpeg
}

func windowOf(a, z cpuSample) (cpuWindow, bool) {
	if !slices.Equal(a.encoderPIDs, z.encoderPIDs) {
		return cpuWindow{}, false // an encoder restarted: its CPU is not comparable
	}
	secs := z.at.Sub(a.at).Seconds()
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / secs }
	w := cpuWindow{daemon: pct(z.daemon - a.daemon), encoders: pct(z.encoders - a.encoders), ffmpeg: pct(z.ffmpeg - a.ffmpeg)}
	w.appliance = w.daemon + w.encoders
	w.ratio = w.appliance / w.ffmpeg
	return w, true
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// BenchmarkApplianceVsFFmpeg measures the appliance daemon (tone source,
// two AAC feeds at 128 and 64 kbit/s over SRT to a switcher) against one
// ffmpeg doing the same job (a sine split to two AAC SRT outputs).
// Target: CPU ratio <= 1.2, daemon RSS <= 60 MB (its ffmpeg children
// reported apart). Run with -benchtime=1x.
//
// Both run at the same time, for the whole benchmark, and are sampled
// together over several windows: on a shared machine whatever else runs
// then weighs on both sides alike (they need a few % of a core each, so
// they do not compete with each other on two cores). CPU is utime+stime
// from /proc/<pid>/stat, exact to a clock tick, for the daemon, for its
// children (the encoders) and for the single ffmpeg; the figures are the
// medians over the windows, and the ratio is the median of the windows'
// ratios.
//
// TANDEM_BENCH_WINDOWS (default 6) and TANDEM_BENCH_WINDOW (default 10s)
// change the sampling. TANDEM_BENCH_PROFILE=<file> also writes a CPU
// profile of the daemon (taken after the windows, so the profiler's own
// cost does not count).
func BenchmarkApplianceVsFFmpeg(b *testing.B) {
	ffmpeg := e2e.Need(b, "ffmpeg")
	windows, window := 6, 10*time.Second
	if v := os.Getenv("TANDEM_BENCH_WINDOWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("TANDEM_BENCH_WINDOWS=%q: want a count of windows >= 1", v)
		}
		windows = n
	}
	if v := os.Getenv("TANDEM_BENCH_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			b.Fatalf("TANDEM_BENCH_WINDOW=%q: want a duration >= 1s", v)
		}
		window = d
	}
	profile := os.Getenv("TANDEM_BENCH_PROFILE")
	_, srtAddr := e2e.StartSwitcher(b)

	// The appliance.
	bin := e2e.Binary(b, "tandem/firmware/cmd/tandem")
	dir := b.TempDir()
	debugAddr, debugKey := "", ""
	if profile != "" {
		debugAddr = fmt.Sprintf("127.0.0.1:%d", e2e.FreeTCPPort(b))
		debugKey = fmt.Sprintf(`,"debug":%q`, debugAddr)
	}
	cfgFile := filepath.Join(dir, "tandem.json")
	cfg := fmt.Sprintf(`{"device_id":"bench","state_dir":%q,"api":{"socket":%q,"http":""%s},
		"feeds":{"primary":{"dest":"srt://%s"},"fallback":{"dest":"srt://%s"}}}`,
		dir, filepath.Join(dir, "api.sock"), debugKey, srtAddr, srtAddr)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	daemon := exec.CommandContext(ctx, bin, "run", "-config", cfgFile)
	daemon.Stderr = io.Discard
	if err := daemon.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); daemon.Wait() }() // CommandContext kills it on cancel

	// One ffmpeg doing the same job.
	url := func(name string) string {
		return fmt.Sprintf("srt://%s?streamid=#!::r=live/%s,m=publish", srtAddr, name)
	}
	ff := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
		"-filter_complex", "[0:a]aformat=channel_layouts=stereo,asplit=2[a][b]",
		"-map", "[a]", "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", url("ff"),
		"-map", "[b]", "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", url("ff_fallback"))
	if err := ff.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); ff.Wait() }()

	// Warm up: connections made, encoders past their start.
	time.Sleep(5 * time.Second)
	if n := len(e2e.ChildrenOf(daemon.Process.Pid)); n != 2 {
		b.Fatalf("the daemon runs %d child processes, want its 2 ffmpeg encoders", n)
	}
	var ws []cpuWindow
	var rss []float64
	first := sampleCPU(b, daemon.Process.Pid, ff.Process.Pid)
	prev := first
	for range windows {
		time.Sleep(window)
		cur := sampleCPU(b, daemon.Process.Pid, ff.Process.Pid)
		if w, ok := windowOf(prev, cur); ok {
			ws = append(ws, w)
			b.Logf("window %d: appliance %.2f%% (daemon %.2f%%, encoders %.2f%%), single ffmpeg %.2f%%: ratio %.2f",
				len(ws), w.appliance, w.daemon, w.encoders, w.ffmpeg, w.ratio)
		} else {
			b.Logf("window skipped: the daemon's encoders changed (%v -> %v)", prev.encoderPIDs, cur.encoderPIDs)
		}
		rss = append(rss, float64(cur.daemonRSS)/(1<<20))
		prev = cur
	}
	if len(ws) == 0 {
		b.Fatal("no usable window: the daemon's encoders kept restarting")
	}
	if profile != "" {
		fetchProfile(b, "http://"+debugAddr+"/debug/pprof/profile?seconds=20", profile)
	}
	cancel()

	pick := func(f func(cpuWindow) float64) float64 {
		var xs []float64
		for _, w := range ws {
			xs = append(xs, f(w))
		}
		return median(xs)
	}
	ratio := pick(func(w cpuWindow) float64 { return w.ratio })
	app := pick(func(w cpuWindow) float64 { return w.appliance })
	own := pick(func(w cpuWindow) float64 { return w.daemon })
	kids := pick(func(w cpuWindow) float64 { return w.encoders })
	single := pick(func(w cpuWindow) float64 { return w.ffmpeg })
	b.ReportMetric(ratio, "cpu-ratio")
	b.ReportMetric(app, "appliance-%core")
	b.ReportMetric(own, "daemon-%core")
	b.ReportMetric(kids, "encoders-%core")
	b.ReportMetric(single, "ffmpeg-%core")
	b.ReportMetric(median(rss), "daemon-RSS-MB")
	b.Logf("medians over %d windows of %v: appliance %.2f%% of a core (daemon %.2f%%, its 2 ffmpeg %.2f%%), single ffmpeg %.2f%%: ratio %.2f (target <= 1.2); daemon RSS %.1f MB (target <= 60 MB), single ffmpeg RSS %.1f MB",
		len(ws), window, app, own, kids, single, ratio, median(rss), float64(prev.ffmpegRSS)/(1<<20))
}

// fetchProfile saves a CPU profile from the daemon's profiler.
func fetchProfile(b *testing.B, url, path string) {
	b.Helper()
	resp, err := (&http.Client{Timeout: time.Minute}).Get(url)
	if err != nil {
		b.Fatalf("CPU profile: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("CPU profile: %s", resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatalf("CPU profile: %v", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("daemon CPU profile (20 s) written to %s", path)
}
