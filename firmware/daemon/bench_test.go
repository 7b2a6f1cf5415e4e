package daemon_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/scripts/e2e"
)

// childrenOf lists the pids whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		data, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(data)
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if pp, _ := strconv.Atoi(fs[1]); pp == pid {
			c, _ := strconv.Atoi(strings.Split(strings.TrimPrefix(d, "/proc/"), "/")[0])
			out = append(out, c)
		}
	}
	return out
}

// measure samples the CPU used by pids (and, if withChildren, their child
// processes) over d.
func measure(d time.Duration, pids ...int) (own, children time.Duration) {
	kids := map[int]bool{}
	for _, p := range pids {
		for _, c := range childrenOf(p) {
			kids[c] = true
		}
	}
	var o0, c0 time.Duration
	for _, p := range pids {
		o0 += e2e.ProcCPU(p)
	}
	for c := range kids {
		c0 += e2e.ProcCPU(c)
	}
	time.Sleep(d)
	for _, p := range pids {
		own += e2e.ProcCPU(p)
	}
	for c := range kids {
		children += e2e.ProcCPU(c)
	}
	return own - o0, children - c0
}

// BenchmarkApplianceVsFFmpeg measures, in one run, the appliance daemon
// (tone source, two AAC feeds at 128 and 64 kbit/s over SRT to a switcher)
// against one ffmpeg doing the same job (a sine split to two AAC SRT
// outputs). Target: CPU ratio <= 1.2, daemon RSS <= 60 MB (its ffmpeg
// children reported apart). Run with -benchtime=1x.
func BenchmarkApplianceVsFFmpeg(b *testing.B) {
	_, srtAddr := e2e.StartSwitcher(b)
	const window = 15 * time.Second

	// The appliance.
	bin := e2e.Binary(b, "tandem/firmware/cmd/tandem")
	dir := b.TempDir()
	cfgFile := filepath.Join(dir, "tandem.json")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`{"device_id":"bench","state_dir":%q,"api":{"socket":%q,"http":""},
		"feeds":{"primary":{"dest":"srt://%s"},"fallback":{"dest":"srt://%s"}}}`, dir, filepath.Join(dir, "api.sock"), srtAddr, srtAddr)), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	daemon := exec.CommandContext(ctx, bin, "run", "-config", cfgFile)
	if err := daemon.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	own, kids := measure(window, daemon.Process.Pid)
	rss := e2e.ProcRSS(daemon.Process.Pid)
	cancel()
	daemon.Wait()

	// One ffmpeg doing the same job.
	ffmpeg := e2e.Need(b, "ffmpeg")
	url := func(name string) string {
		return fmt.Sprintf("srt://%s?streamid=#!::r=live/%s,m=publish", srtAddr, name)
	}
	ff := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
		"-filter_complex", "[0:a]aformat=channel_layouts=stereo,asplit=2[a][b]",
		"-map", "[a]", "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", url("ff"),
		"-map", "[b]", "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", url("ff_fallback"))
	if err := ff.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	ffCPU, _ := measure(window, ff.Process.Pid)
	ff.Process.Kill()
	ff.Wait()

	total := own + kids
	ratio := float64(total) / float64(ffCPU)
	b.ReportMetric(ratio, "cpu-ratio")
	b.ReportMetric(float64(rss)/(1<<20), "daemon-RSS-MB")
	b.Logf("over %v: appliance %.2f%% of a core (daemon %.2f%%, its 2 ffmpeg %.2f%%), single ffmpeg %.2f%%: ratio %.2f (target <= 1.2); daemon RSS %.1f MB (target <= 60 MB)",
		window, pct(total, window), pct(own, window), pct(kids, window), pct(ffCPU, window), ratio, float64(rss)/(1<<20))
}

func pct(d, over time.Duration) float64 { return 100 * d.Seconds() / over.Seconds() }
