package srt

import (
	"context"
	"encoding/binary"
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
	"syscall"
	"testing"
	"time"
)

// Ingest benchmark shape: like the switcher's SRT ingest of AAC in TS, one
// ~560-byte message per AAC frame (1024 samples at 48 kHz: 46.9 a second)
// per connection, the connections' phases spread evenly (independent
// publishers), default latency (120 ms).
const (
	ingestConns    = 200
	ingestRate     = 48000.0 / 1024
	ingestMsgBytes = 564 // 3 TS packets
	ingestWarmup   = 3 * time.Second
	ingestWindow   = 6 * time.Second
)

// BenchmarkIngest200Conns measures what receiving costs this process: 200
// accepted connections, each fed 46.9 messages a second by a sender in a
// child process (so the senders' CPU is not counted), one goroutine per
// connection reading with ReadMessage. It reports the process's CPU per
// received message, split into Go threads and libsrt's threads (SRT:*), the
// context switches per message, and the delivery latency (send to
// ReadMessage; SRT latency is 120 ms) with the count of messages later than
// 500 ms. The measurement is a fixed window, so run it with -benchtime=1x.
// TANDEM_SRT_NOSAFETY=1 switches the poller's once-a-second safety-net drain
// off: any lost edge then shows as a late message.
//
// The machine's other load shifts these figures by ±15%: compare variants
// in interleaved runs, not one run each.
func BenchmarkIngest200Conns(b *testing.B) {
	if testing.Short() {
		b.Skip("-short")
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	if os.Getenv("TANDEM_SRT_NOSAFETY") != "" {
		safetyNet.Store(false)
		defer safetyNet.Store(true)
	}
	l := listen(b, ListenConfig{Backlog: ingestConns})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		msgs    atomic.Int64
		lat     = make([][]time.Duration, ingestConns)
		measure atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		conns   []*Conn
	)
	accepted := make(chan error, 1)
	go func() {
		for i := 0; i < ingestConns; i++ {
			s, err := l.Accept(ctx)
			if err != nil {
				accepted <- err
				return
			}
			mu.Lock()
			conns = append(conns, s)
			mu.Unlock()
			wg.Add(1)
			go func(i int, s *Conn) {
				defer wg.Done()
				defer s.Close()
				buf := make([]byte, ReadBufferSize)
				for {
					n, err := s.ReadMessage(ctx, buf)
					if err != nil {
						return
					}
					if n >= 8 && measure.Load() {
						msgs.Add(1)
						sent := time.Unix(0, int64(binary.BigEndian.Uint64(buf)))
						lat[i] = append(lat[i], time.Since(sent))
					}
				}
			}(i, s)
		}
		accepted <- nil
	}()

	total := ingestWarmup + ingestWindow + 5*time.Second
	cmd := exec.Command(exe, "-test.run=^TestIngestSender$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TANDEM_SRT_INGEST_SENDER="+l.Addr().String()+","+strconv.Itoa(ingestConns)+","+total.String())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	select {
	case err := <-accepted:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		b.Fatal("senders did not connect")
	}

	time.Sleep(ingestWarmup)
	b.ResetTimer()
	measure.Store(true)
	u0, t0, w0 := rusage(), threadTimes(), time.Now()
	time.Sleep(ingestWindow)
	u1, t1, w1 := rusage(), threadTimes(), time.Now()
	measure.Store(false)
	b.StopTimer()

	n := float64(msgs.Load())
	if n == 0 {
		b.Fatal("no message received")
	}
	var recv, acks int64
	mu.Lock()
	for _, c := range conns {
		st := c.Stats()
		recv += st.PktRecv
		acks += st.PktSentACK
	}
	mu.Unlock()
	wall := w1.Sub(w0).Seconds()
	cpu := float64(u1.cpu - u0.cpu)
	goCPU, srtCPU := t1.goCPU-t0.goCPU, t1.srtCPU-t0.srtCPU
	var all []time.Duration
	cancel()
	wg.Wait()
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	p50, p99, worst := all[len(all)/2], all[len(all)*99/100], all[len(all)-1]
	late := len(all) - sort.Search(len(all), func(i int) bool { return all[i] > 500*time.Millisecond })
	b.ReportMetric(n/wall, "msgs/s")
	b.ReportMetric(cpu/n/1e3, "cpu-µs/msg")
	b.ReportMetric(float64(goCPU)/n/1e3, "go-µs/msg")
	b.ReportMetric(float64(srtCPU)/n/1e3, "libsrt-µs/msg")
	b.ReportMetric(float64(u1.csw-u0.csw)/n, "ctxsw/msg")
	b.ReportMetric(cpu/wall/1e7, "%-of-core")
	b.ReportMetric(float64(p50)/1e6, "p50-latency-ms")
	b.ReportMetric(float64(p99)/1e6, "p99-latency-ms")
	b.ReportMetric(float64(late), "late-msgs")
	b.ReportMetric(float64(t1.tsbpdCsw-t0.tsbpdCsw)/n, "tsbpd-wakes/msg")
	b.Logf("%d conns, %.0f msgs/s: %.1f%% of a core = %.2f µs/msg (Go %.2f, libsrt threads %.2f: TsbPd %.2f, RcvQ %.2f), %.2f context switches/msg (Go %.2f, libsrt %.2f, of which TsbPd %.2f); latency p50 %v p99 %v max %v, %d later than 500ms; libsrt sent %.2f ACKs per packet received; poller %+v",
		ingestConns, n/wall, cpu/wall/1e7, cpu/n/1e3, float64(goCPU)/n/1e3, float64(srtCPU)/n/1e3,
		float64(t1.tsbpdCPU-t0.tsbpdCPU)/n/1e3, float64(t1.rcvqCPU-t0.rcvqCPU)/n/1e3,
		float64(u1.csw-u0.csw)/n, float64(t1.goCsw-t0.goCsw)/n, float64(t1.srtCsw-t0.srtCsw)/n, float64(t1.tsbpdCsw-t0.tsbpdCsw)/n,
		p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), worst.Round(10*time.Microsecond), late, float64(acks)/float64(recv), diagnostics())
}

type usage struct{ cpu, csw int64 }

func rusage() usage {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return usage{ru.Utime.Nano() + ru.Stime.Nano(), ru.Nvcsw + ru.Nivcsw}
}

type threadUsage struct{ goCPU, srtCPU, goCsw, srtCsw, tsbpdCsw, tsbpdCPU, rcvqCPU int64 }

// threadTimes sums CPU (ns) and context switches of this process's threads,
// libsrt's (named SRT:*) apart from the rest. Threads that ended during the
// window are missing, so the parts need not add up to the process total.
func threadTimes() threadUsage {
	var u threadUsage
	tasks, _ := filepath.Glob("/proc/self/task/*")
	for _, t := range tasks {
		stat, err := os.ReadFile(t + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		name := s[strings.IndexByte(s, '(')+1 : strings.LastIndexByte(s, ')')]
		// schedstat's first field is the time on a CPU in ns; stat's
		// utime and stime count whole ticks, too coarse for 200 threads
		// that each run for microseconds at a time.
		var cpu int64
		if ss, err := os.ReadFile(t + "/schedstat"); err == nil {
			if f := strings.Fields(string(ss)); len(f) > 0 {
				cpu, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
		var csw int64
		if status, err := os.ReadFile(t + "/status"); err == nil {
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					csw += n
				} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					csw += n
				}
			}
		}
		if strings.HasPrefix(name, "SRT:") {
			u.srtCPU += cpu
			u.srtCsw += csw
			switch {
			case strings.HasPrefix(name, "SRT:TsbPd"):
				u.tsbpdCsw += csw
				u.tsbpdCPU += cpu
			case strings.HasPrefix(name, "SRT:RcvQ"):
				u.rcvqCPU += cpu
			}
		} else {
			u.goCPU += cpu
			u.goCsw += csw
		}
	}
	return u
}

// TestIngestSender is the sender process of BenchmarkIngest200Conns; it
// skips unless the benchmark started it.
func TestIngestSender(t *testing.T) {
	spec := os.Getenv("TANDEM_SRT_INGEST_SENDER")
	if spec == "" {
		t.Skip("only run by BenchmarkIngest200Conns")
	}
	f := strings.Split(spec, ",")
	conns, _ := strconv.Atoi(f[1])
	total, _ := time.ParseDuration(f[2])
	ctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	cs := make([]*Conn, conns)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := Dial(ctx, f[0], Options{StreamID: fmt.Sprintf("ingest-%d", i)})
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			cs[i] = c
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}()
	if t.Failed() {
		return
	}
	// Connection i sends at epoch + k/rate + i/(rate*conns): the phases
	// are spread evenly. One pass a millisecond sends whatever is due.
	period := time.Second * 1024 / 48000
	msg := make([]byte, ingestMsgBytes)
	next := make([]time.Time, conns)
	epoch := time.Now()
	for i := range next {
		next[i] = epoch.Add(period * time.Duration(i) / time.Duration(conns))
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		for i, c := range cs {
			for !next[i].After(now) {
				binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
				c.WriteMessage(msg)
				next[i] = next[i].Add(period)
			}
		}
	}
}
