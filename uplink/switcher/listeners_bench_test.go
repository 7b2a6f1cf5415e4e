package switcher_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/scripts/e2e"
)

// BenchmarkListeners1000VsIcecast serves one 128 kbit/s ADTS stream to
// 1000 HTTP listeners from the switcher binary and from icecast2, fed the
// same bytes by one ffmpeg, and compares the servers' CPU (utime+stime from
// /proc over a fixed window; the load client's own CPU is not counted).
// Servers take turns in interleaved rounds so both see the same machine;
// every listener must receive the stream's full rate in every window.
// Target: switcher CPU ≤ icecast2's (ratio ≤ 1.0). Run with -benchtime=1x.
func BenchmarkListeners1000VsIcecast(b *testing.B) {
	listeners := envInt("TANDEM_BENCH_LISTENERS", 1000)
	rounds := envInt("TANDEM_BENCH_ROUNDS", 3)
	window := time.Duration(envInt("TANDEM_BENCH_WINDOW_S", 10)) * time.Second
	ffmpeg := e2e.Need(b, "ffmpeg")

	ice := e2e.StartIcecastWith(b, e2e.IcecastConfig{Clients: listeners + 100})
	env := []string{"TANDEM_SWITCHER_MAX_LISTENERS=" + strconv.Itoa(listeners+100)}
	// TANDEM_BENCH_PROFILE=<file> saves a CPU profile of the switcher's
	// first window, and its heap at the end of it as <file>.heap.
	profile := os.Getenv("TANDEM_BENCH_PROFILE")
	debugAddr := ""
	if profile != "" {
		debugAddr = fmt.Sprintf("127.0.0.1:%d", e2e.FreeTCPPort(b))
		env = append(env, "TANDEM_SWITCHER_DEBUG_ADDR="+debugAddr)
	}
	base, _, swPID := e2e.StartSwitcherProcess(b, env...)
	swAddr := base[len("http://"):]

	src := startRelay(b, ffmpeg, []relayTarget{
		{addr: swAddr, path: "/bench.aac", password: "any"},
		{addr: ice.Addr, path: "/bench.aac", password: e2e.IcecastPassword},
	})
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(b, base, nil), "live/bench")
		return st != nil && st.State == "online"
	}) {
		b.Fatal("switcher stream did not go online")
	}
	time.Sleep(2 * time.Second) // icecast's mount is up by now too

	type server struct {
		name, addr string
		pid        int
		cpu        []float64 // fraction of one core per window
		rss        []int64
		minShare   []float64
	}
	servers := []*server{{name: "switcher", addr: swAddr, pid: swPID}, {name: "icecast2", addr: ice.Addr, pid: ice.PID}}
	// What each costs with the stream running and nobody listening.
	idle := map[string]float64{}
	idleRSS := map[string]int64{}
	for _, s := range servers {
		c0 := e2e.ProcCPU(s.pid)
		time.Sleep(window / 2)
		idle[s.name] = (e2e.ProcCPU(s.pid) - c0).Seconds() / (window / 2).Seconds()
		idleRSS[s.name] = e2e.ProcRSS(s.pid)
	}
	b.Logf("no listeners: switcher %.1f%% of a core, RSS %.1f MB; icecast2 %.1f%%, RSS %.1f MB",
		100*idle["switcher"], float64(idleRSS["switcher"])/(1<<20), 100*idle["icecast2"], float64(idleRSS["icecast2"])/(1<<20))
	var clientCPU []float64
	for r := 0; r < rounds; r++ {
		order := servers
		if r%2 == 1 {
			order = []*server{servers[1], servers[0]}
		}
		for _, s := range order {
			load := connectListeners(b, s.addr, "/bench.aac", listeners)
			time.Sleep(3 * time.Second) // connect bursts are over
			before := load.counts()
			srcBefore := src.bytes.Load()
			cpu0, self0 := e2e.ProcCPU(s.pid), e2e.ProcCPU(os.Getpid())
			if profile != "" && s.pid == swPID && r == 0 {
				go saveProfile(b, debugAddr, fmt.Sprintf("profile?seconds=%d", int((window-time.Second).Seconds())), profile)
			}
			time.Sleep(window)
			cpu1, self1 := e2e.ProcCPU(s.pid), e2e.ProcCPU(os.Getpid())
			if profile != "" && s.pid == swPID && r == 0 {
				saveProfile(b, debugAddr, "heap", profile+".heap")
			}
			after := load.counts()
			srcBytes := src.bytes.Load() - srcBefore
			rss := e2e.ProcRSS(s.pid)
			dead := load.close()

			// Every listener must have kept up: within a second of the
			// stream over the window (servers write in batches, Icecast
			// as the source's reads come, the switcher every
			// listener_write_interval).
			minShare := 1e9
			short := 0
			floor := 1 - time.Second.Seconds()/window.Seconds()
			for i := range after {
				share := float64(after[i]-before[i]) / float64(srcBytes)
				minShare = min(minShare, share)
				if share < floor {
					short++
				}
			}
			if short > 0 || dead > 0 {
				b.Errorf("%s round %d: %d of %d listeners got less than %.0f%% of the stream's %d bytes (lowest %.1f%%), %d connections ended early",
					s.name, r, short, listeners, 100*floor, srcBytes, 100*minShare, dead)
			}
			s.cpu = append(s.cpu, (cpu1-cpu0).Seconds()/window.Seconds())
			s.rss = append(s.rss, rss)
			s.minShare = append(s.minShare, minShare)
			clientCPU = append(clientCPU, (self1-self0).Seconds()/window.Seconds())
			b.Logf("round %d %-8s: CPU %5.1f%% of a core, RSS %5.1f MB, stream %.1f kbit/s, every listener got ≥ %.1f%% of it",
				r, s.name, 100*s.cpu[len(s.cpu)-1], float64(rss)/(1<<20), float64(srcBytes)*8/1000/window.Seconds(), 100*minShare)
			time.Sleep(time.Second)
		}
	}
	sw, ic := median(servers[0].cpu), median(servers[1].cpu)
	ratio := sw / ic
	b.ReportMetric(100*sw, "switcher-cpu-%")
	b.ReportMetric(100*ic, "icecast-cpu-%")
	b.ReportMetric(ratio, "cpu-ratio")
	b.ReportMetric(float64(medianInt(servers[0].rss))/(1<<20), "switcher-rss-MB")
	b.ReportMetric(float64(medianInt(servers[1].rss))/(1<<20), "icecast-rss-MB")
	b.ReportMetric(100*(sw-idle["switcher"]), "switcher-listener-cpu-%")
	b.ReportMetric(100*(ic-idle["icecast2"]), "icecast-listener-cpu-%")
	b.Logf("%d listeners, %d rounds of %v: median CPU switcher %.1f%%, icecast2 %.1f%% of a core, ratio %.2f (target <= 1.0); above idle: %.1f%% vs %.1f%%; RSS %.1f MB vs %.1f MB; load client %.1f%%",
		listeners, rounds, window, 100*sw, 100*ic, ratio, 100*(sw-idle["switcher"]), 100*(ic-idle["icecast2"]),
		float64(medianInt(servers[0].rss))/(1<<20), float64(medianInt(servers[1].rss))/(1<<20), 100*median(clientCPU))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func medianInt(v []int64) int64 {
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

type relayTarget struct{ addr, path, password string }

// relay is one ffmpeg encoding a tone to ADTS in real time, its bytes
// pushed unchanged to every target as an Icecast source (HTTP PUT).
type relay struct {
	bytes atomic.Int64
}

func startRelay(b *testing.B, ffmpeg string, targets []relayTarget) *relay {
	b.Helper()
	var conns []net.Conn
	for _, t := range targets {
		c, err := net.Dial("tcp", t.addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		auth := base64.StdEncoding.EncodeToString([]byte("source:" + t.password))
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: audio/aac\r\nIce-Public: 0\r\nIce-Name: bench\r\nExpect: 100-continue\r\n\r\n", t.path, t.addr, auth)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || (resp.StatusCode != http.StatusContinue && resp.StatusCode != http.StatusOK) {
			b.Fatalf("source login to %s: %v %v", t.addr, err, resp)
		}
		conns = append(conns, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-ac", "2",
		"-c:a", "aac", "-b:a", "128k", "-f", "adts", "pipe:1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = e2e.LogWriter(b)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r := &relay{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			for _, c := range conns {
				if _, werr := c.Write(buf[:n]); werr != nil && ctx.Err() == nil {
					b.Errorf("relay to %s: %v", c.RemoteAddr(), werr)
					return
				}
			}
			r.bytes.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() { cancel(); cmd.Wait(); <-done })
	return r
}

// listenerLoad is many HTTP listeners that read and count bytes, nothing
// else, so the client costs as little as it can.
type listenerLoad struct {
	conns []net.Conn
	n     []atomic.Int64
	ended atomic.Int64
	wg    sync.WaitGroup
	stop  atomic.Bool
}

func connectListeners(b *testing.B, addr, path string, count int) *listenerLoad {
	b.Helper()
	l := &listenerLoad{conns: make([]net.Conn, count), n: make([]atomic.Int64, count)}
	// Icecast's accept backlog is short: connect a few at a time.
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var errs []error
	var dialWG sync.WaitGroup
	for i := 0; i < count; i++ {
		sem <- struct{}{}
		dialWG.Add(1)
		go func(i int) {
			defer func() { <-sem; dialWG.Done() }()
			c, err := dialListener(addr, path)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			l.conns[i] = c
			l.wg.Add(1)
			go l.read(i, c)
		}(i)
	}
	dialWG.Wait()
	if len(errs) > 0 {
		l.close()
		b.Fatalf("%d of %d listeners could not connect to %s, first: %v", len(errs), count, addr, errs[0])
	}
	return l
}

func dialListener(addr, path string) (net.Conn, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: tandem-bench\r\n\r\n", path, addr)
		// Read the header byte by byte so no audio is consumed by a buffer.
		var hdr []byte
		one := make([]byte, 1)
		for len(hdr) < 8192 {
			if _, err := c.Read(one); err != nil {
				lastErr = err
				break
			}
			hdr = append(hdr, one[0])
			if len(hdr) >= 4 && string(hdr[len(hdr)-4:]) == "\r\n\r\n" {
				break
			}
		}
		if len(hdr) < 12 || string(hdr[9:12]) != "200" {
			c.Close()
			if lastErr == nil {
				lastErr = fmt.Errorf("answer %q", hdr)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}
	return nil, lastErr
}

func (l *listenerLoad) read(i int, c net.Conn) {
	defer l.wg.Done()
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		l.n[i].Add(int64(n))
		if err != nil {
			if !l.stop.Load() {
				l.ended.Add(1)
			}
			return
		}
	}
}

func (l *listenerLoad) counts() []int64 {
	out := make([]int64, len(l.n))
	for i := range l.n {
		out[i] = l.n[i].Load()
	}
	return out
}

// close ends every listener and returns how many had ended on their own.
func (l *listenerLoad) close() int {
	l.stop.Store(true)
	ended := int(l.ended.Load())
	for _, c := range l.conns {
		if c != nil {
			c.Close()
		}
	}
	l.wg.Wait()
	return ended
}

// saveProfile stores one of the switcher's pprof profiles (path under
// /debug/pprof/) in file.
func saveProfile(b *testing.B, addr, path, file string) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s", addr, path))
	if err != nil {
		b.Errorf("profile %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		b.Errorf("profile %s: %v", path, err)
		return
	}
	defer f.Close()
	f.ReadFrom(resp.Body)
}
