package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/scripts/e2e"
)

// cpuSample is the CPU time of the measured processes at one instant.
type cpuSample struct {
	at      time.Time
	daemons []daemonSample // one per daemon under test
	ffmpeg  time.Duration
	// ffmpegRSS is the single ffmpeg's resident set.
	ffmpegRSS int64
}

// daemonSample is one daemon's CPU time, its children's (its ffmpeg
// encoders), and its RSS.
type daemonSample struct {
	daemon, encoders time.Duration
	encoderPIDs      []int
	rss              int64
}

// sampleCPU reads each daemon, each of its children and the single
// ffmpeg.
func sampleCPU(b *testing.B, daemonPIDs []int, ffmpegPID int) cpuSample {
	b.Helper()
	s := cpuSample{at: time.Now()}
	for _, pid := range daemonPIDs {
		ds := daemonSample{encoderPIDs: e2e.ChildrenOf(pid)}
		d, err := e2e.ReadProcStat(pid)
		if err != nil {
			b.Fatalf("the daemon %d is gone: %v", pid, err)
		}
		ds.daemon = d.CPU
		for _, c := range ds.encoderPIDs {
			if st, err := e2e.ReadProcStat(c); err == nil {
				ds.encoders += st.CPU
			}
		}
		ds.rss, _ = e2e.ReadProcRSS(pid)
		s.daemons = append(s.daemons, ds)
	}
	f, err := e2e.ReadProcStat(ffmpegPID)
	if err != nil {
		b.Fatalf("the single ffmpeg is gone: %v", err)
	}
	s.ffmpeg = f.CPU
	s.ffmpegRSS, _ = e2e.ReadProcRSS(ffmpegPID)
	return s
}

// cpuWindow is the share of a core each side used between two samples.
type cpuWindow struct {
	daemon, encoders, appliance, ffmpeg, ratio float64 // % of a core; ratio appliance/ffmpeg
}

// windowOf is daemon i's window between two samples.
func windowOf(a, z cpuSample, i int) (cpuWindow, bool) {
	da, dz := a.daemons[i], z.daemons[i]
	if !slices.Equal(da.encoderPIDs, dz.encoderPIDs) {
		return cpuWindow{}, false // an encoder restarted: its CPU is not comparable
	}
	secs := z.at.Sub(a.at).Seconds()
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / secs }
	w := cpuWindow{daemon: pct(dz.daemon - da.daemon), encoders: pct(dz.encoders - da.encoders), ffmpeg: pct(z.ffmpeg - a.ffmpeg)}
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
// two AAC feeds at 128 and 64 kbit/s over SRT) against one ffmpeg doing the
// same job (a sine split to two AAC SRT outputs), both to one switcher.
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
// TANDEM_BENCH_VARIANTS runs one daemon per variant, all at once against
// the same single ffmpeg, and reports each (metrics suffixed with the
// variant's number): variants are separated by "|", each a list of config
// keys added to the daemon's file, e.g.
// '"source":{"block_frames":1024}|"source":{"block_frames":2048}',
// optionally after environment variables for the daemon
// ('env:GOMAXPROCS=2 "source":{...}'; see benchVariants). Unset, one
// daemon runs with the defaults. TANDEM_BENCH_WINDOWS (default 6) and TANDEM_BENCH_WINDOW
// (default 10s) change the sampling. TANDEM_BENCH_PROFILE=<file> also
// writes a CPU profile of the (first) daemon (taken after the windows, so
// the profiler's own cost does not count).
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
	variants := benchVariants(b)
	profile := os.Getenv("TANDEM_BENCH_PROFILE")
	_, srtAddr := e2e.StartSwitcher(b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bin := e2e.Binary(b, "tandem/firmware/cmd/tandem")
	debugAddr := ""
	var pids []int
	var sockets []string
	for i, variant := range variants {
		apiKeys := ""
		if profile != "" && i == 0 {
			debugAddr = fmt.Sprintf("127.0.0.1:%d", e2e.FreeTCPPort(b))
			apiKeys = fmt.Sprintf(`,"debug":%q`, debugAddr)
		}
		pid, socket := startBenchDaemon(b, bin, fmt.Sprintf("bench%d", i), srtAddr, variant, apiKeys)
		pids = append(pids, pid)
		sockets = append(sockets, socket)
	}

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
	for _, pid := range pids {
		if n := len(e2e.ChildrenOf(pid)); n != 2 {
			b.Fatalf("the daemon runs %d child processes, want its 2 ffmpeg encoders", n)
		}
	}
	ws := make([][]cpuWindow, len(pids))
	rss := make([][]float64, len(pids))
	prev := sampleCPU(b, pids, ff.Process.Pid)
	for range windows {
		time.Sleep(window)
		cur := sampleCPU(b, pids, ff.Process.Pid)
		for i := range pids {
			if w, ok := windowOf(prev, cur, i); ok {
				ws[i] = append(ws[i], w)
				b.Logf("%swindow %d: appliance %.2f%% (daemon %.2f%%, encoders %.2f%%), single ffmpeg %.2f%%: ratio %.2f",
					variantLabel(variants, i), len(ws[i]), w.appliance, w.daemon, w.encoders, w.ffmpeg, w.ratio)
			} else {
				b.Logf("%swindow skipped: the daemon's encoders changed (%v -> %v)", variantLabel(variants, i), prev.daemons[i].encoderPIDs, cur.daemons[i].encoderPIDs)
			}
			rss[i] = append(rss[i], float64(cur.daemons[i].rss)/(1<<20))
		}
		prev = cur
	}
	for i := range pids {
		if len(ws[i]) == 0 {
			b.Fatalf("%sno usable window: the daemon's encoders kept restarting", variantLabel(variants, i))
		}
	}
	perMessage := make([]float64, len(pids))
	for i, socket := range sockets {
		var sent, messages int64
		for _, f := range daemonStatus(b, socket).Feeds {
			sent += f.Sent
			messages += f.SRT.Messages
		}
		if messages > 0 {
			perMessage[i] = float64(sent) / float64(messages)
		}
	}
	if profile != "" {
		fetchProfile(b, "http://"+debugAddr+"/debug/pprof/profile?seconds=20", profile)
	}
	cancel()

	for i := range variants {
		pick := func(f func(cpuWindow) float64) float64 {
			var xs []float64
			for _, w := range ws[i] {
				xs = append(xs, f(w))
			}
			return median(xs)
		}
		ratio := pick(func(w cpuWindow) float64 { return w.ratio })
		app := pick(func(w cpuWindow) float64 { return w.appliance })
		own := pick(func(w cpuWindow) float64 { return w.daemon })
		kids := pick(func(w cpuWindow) float64 { return w.encoders })
		single := pick(func(w cpuWindow) float64 { return w.ffmpeg })
		suffix := ""
		if len(variants) > 1 {
			suffix = fmt.Sprintf("-v%d", i+1)
		}
		b.ReportMetric(ratio, "cpu-ratio"+suffix)
		b.ReportMetric(app, "appliance-%core"+suffix)
		b.ReportMetric(own, "daemon-%core"+suffix)
		b.ReportMetric(kids, "encoders-%core"+suffix)
		b.ReportMetric(single, "ffmpeg-%core"+suffix)
		b.ReportMetric(median(rss[i]), "daemon-RSS-MB"+suffix)
		b.ReportMetric(perMessage[i], "frames/msg"+suffix)
		b.Logf("%smedians over %d windows of %v: appliance %.2f%% of a core (daemon %.2f%%, its 2 ffmpeg %.2f%%), single ffmpeg %.2f%%: ratio %.2f (target <= 1.2); daemon RSS %.1f MB (target <= 60 MB), single ffmpeg RSS %.1f MB; %.2f frames per SRT message",
			variantLabel(variants, i), len(ws[i]), window, app, own, kids, single, ratio, median(rss[i]), float64(prev.ffmpegRSS)/(1<<20), perMessage[i])
	}
}

// startBenchDaemon runs the daemon binary bin as device id with both
// feeds to the switcher at srtAddr, the variant's config keys and
// environment, and apiKeys added to its "api" object (e.g. the profiler).
// It is killed when the benchmark ends. It returns the daemon's pid and
// its API socket.
func startBenchDaemon(b *testing.B, bin, id, srtAddr string, v benchVariant, apiKeys string) (pid int, socket string) {
	b.Helper()
	dir := b.TempDir()
	socket = filepath.Join(dir, "api.sock")
	cfgFile := filepath.Join(dir, "tandem.json")
	cfg := fmt.Sprintf(`{"device_id":%q,"state_dir":%q,"api":{"socket":%q,"http":""%s},
		"feeds":{"primary":{"dest":"srt://%s"},"fallback":{"dest":"srt://%s"}}%s}`,
		id, dir, socket, apiKeys, srtAddr, srtAddr, v.configExtra())
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	daemon := exec.CommandContext(ctx, bin, "run", "-config", cfgFile)
	daemon.Env = append(os.Environ(), v.env...)
	daemon.Stderr = io.Discard
	if err := daemon.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); daemon.Wait() }) // CommandContext kills it on cancel
	return daemon.Process.Pid, socket
}

// benchVariant is one daemon setting to benchmark: config keys added to
// its file and environment variables for its process.
type benchVariant struct {
	keys string   // e.g. "source":{"block_frames":2048}
	env  []string // e.g. GOMAXPROCS=2
}

func (v benchVariant) String() string {
	if len(v.env) == 0 {
		return "{" + v.keys + "}"
	}
	return strings.Join(v.env, " ") + " {" + v.keys + "}"
}

// configExtra is the variant's keys as they follow the file's own.
func (v benchVariant) configExtra() string {
	if v.keys == "" {
		return ""
	}
	return "," + v.keys
}

// benchVariants reads TANDEM_BENCH_VARIANTS: variants separated by "|",
// each an optional "env:K=V,K=V" then config keys, e.g.
// 'env:GOMAXPROCS=2 "source":{"block_frames":2048}'. Unset, it is one
// daemon with the defaults.
func benchVariants(b *testing.B) []benchVariant {
	v := os.Getenv("TANDEM_BENCH_VARIANTS")
	if v == "" {
		return []benchVariant{{}}
	}
	var out []benchVariant
	for _, frag := range strings.Split(v, "|") {
		var bv benchVariant
		frag = strings.TrimSpace(frag)
		if rest, ok := strings.CutPrefix(frag, "env:"); ok {
			envs, keys, _ := strings.Cut(rest, " ")
			for _, kv := range strings.Split(envs, ",") {
				if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
					b.Fatalf("TANDEM_BENCH_VARIANTS: %q in %q is not K=V", kv, frag)
				}
				bv.env = append(bv.env, kv)
			}
			frag = strings.TrimSpace(keys)
		}
		if frag != "" {
			var keys map[string]any
			if err := json.Unmarshal([]byte("{"+frag+"}"), &keys); err != nil || len(keys) == 0 {
				b.Fatalf("TANDEM_BENCH_VARIANTS: %q is not a list of config keys like \"source\":{\"block_frames\":2048} (%v)", frag, err)
			}
		}
		bv.keys = frag
		out = append(out, bv)
	}
	return out
}

// variantLabel prefixes a log line with variant i, when several run.
func variantLabel(variants []benchVariant, i int) string {
	if len(variants) < 2 {
		return ""
	}
	return fmt.Sprintf("v%d %s: ", i+1, variants[i])
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
