// Package e2e is the harness of Tandem's end-to-end tests: it builds the
// binaries, runs them (in the two-ISP lab when the test needs it), listens
// to a switcher's output like a player would and analyses the audio. Tests
// import it; no binary does.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/scripts/testenv"
	"tandem/uplink/adts"
	"tandem/uplink/switcher"
	"tandem/uplink/testpub"
)

// Need returns the path of a peer program. Outside CI a missing one skips
// the test; under CI=true it is a failure.
func Need(t testing.TB, prog string) string {
	t.Helper()
	return testenv.Need(t, prog)
}

type logWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// LogWriter sends a program's output to the test log, so a failure shows it.
func LogWriter(t testing.TB) interface{ Write([]byte) (int, error) } { return &logWriter{t: t} }

// WaitFor polls cond until it holds or d passes.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

var (
	buildMu sync.Mutex
	built   = map[string]string{}
	binDir  string
)

// Binary builds a command package of this module once per test process
// and returns the binary's path.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "tandem-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	}
	out, err := exec.Command("go", "build", "-o", binDir, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v: %s", pkg, err, out)
	}
	p := filepath.Join(binDir, filepath.Base(pkg))
	built[pkg] = p
	return p
}

// FreeUDPPort and FreeTCPPort return a port free on 127.0.0.1 right now.
func FreeUDPPort(t testing.TB) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func FreeTCPPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var httpClient = http.Client{Timeout: 10 * time.Second}

// HTTPGet returns a URL's body.
func HTTPGet(url string) (string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var sb strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&sb)
	return sb.String(), err
}

// Listener reads a stream's ADTS output and keeps every whole frame with
// its arrival time. Err is set if the connection ever ended before Close.
type Listener struct {
	mu      sync.Mutex
	frames  [][]byte
	arrived []time.Time
	first   time.Time
	err     error
	headers http.Header
	cancel  context.CancelFunc
	done    chan struct{}
}

// Listen connects to url (through dial, or the default dialer) and waits
// for the first frame.
func Listen(t testing.TB, url string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Listener {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{DisableCompression: true}
	if dial != nil {
		tr.DialContext = dial
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	var resp *http.Response
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err = (&http.Client{Transport: tr}).Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if resp != nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("listener could not connect to %s: %v %v", url, err, resp)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l := &Listener{cancel: cancel, done: make(chan struct{}), headers: resp.Header}
	go func() {
		defer close(l.done)
		defer resp.Body.Close()
		rd := adts.NewReader(bufio.NewReaderSize(resp.Body, 4096))
		for {
			h, payload, err := rd.ReadFrame()
			if err != nil {
				l.mu.Lock()
				if ctx.Err() == nil {
					l.err = fmt.Errorf("listener connection ended: %w", err)
				}
				l.mu.Unlock()
				return
			}
			frame, _ := adts.AppendFrame(nil, h.Config, payload)
			now := time.Now()
			l.mu.Lock()
			if l.first.IsZero() {
				l.first = now
			}
			l.frames = append(l.frames, frame)
			l.arrived = append(l.arrived, now)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(l.Close)
	if !WaitFor(15*time.Second, func() bool { return l.Count() > 0 }) {
		t.Fatalf("no audio from %s within 15 s", url)
	}
	return l
}

func (l *Listener) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.frames)
}

func (l *Listener) Close() {
	l.cancel()
	<-l.done
}

// Stop ends the listener and returns its frames and whether it ever dropped.
func (l *Listener) Stop() ([][]byte, []time.Time, error) {
	l.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.frames, l.arrived, l.err
}

// Alive is nil while the connection has not dropped.
func (l *Listener) Alive() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// ToneOf decodes ADTS frames with ffmpeg and analyses the tone.
func ToneOf(t testing.TB, frames [][]byte, freq float64) testpub.ToneReport {
	t.Helper()
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pcm, err := testpub.DecodeToMono(ctx, Need(t, "ffmpeg"), all, 48000)
	if err != nil {
		t.Fatalf("decoding the listener's audio: %v", err)
	}
	return testpub.AnalyzeTone(pcm, 48000, freq)
}

// Streams is GET /api/v1/streams.
type Streams struct {
	Streams []switcher.StreamStatus `json:"streams"`
}

// GetStreams reads a switcher's stream list.
func GetStreams(t testing.TB, base string, client *http.Client) Streams {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Get(base + "/api/v1/streams")
	if err != nil {
		t.Fatalf("GET /api/v1/streams: %v", err)
	}
	defer resp.Body.Close()
	var out Streams
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode /api/v1/streams: %v", err)
	}
	return out
}

// FindStream picks one stream by id.
func FindStream(s Streams, id string) *switcher.StreamStatus {
	for i := range s.Streams {
		if s.Streams[i].ID == id {
			return &s.Streams[i]
		}
	}
	return nil
}

// GetEvents reads a switcher's recent events.
func GetEvents(t testing.TB, base string, client *http.Client) []switcher.Event {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Get(base + "/api/v1/events?limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Events []switcher.Event }
	json.NewDecoder(resp.Body).Decode(&out)
	return out.Events
}

// StartSwitcher runs the switcher binary on free loopback ports until the
// test ends and returns its HTTP base URL and its SRT address.
func StartSwitcher(t testing.TB, env ...string) (base, srtAddr string) {
	t.Helper()
	base, srtAddr, _ = StartSwitcherProcess(t, env...)
	return base, srtAddr
}

// StartSwitcherProcess is StartSwitcher that also returns the process id
// (benchmarks read its CPU time).
func StartSwitcherProcess(t testing.TB, env ...string) (base, srtAddr string, pid int) {
	t.Helper()
	bin := Binary(t, "tandem/uplink/cmd/tandem-switcher")
	srtPort, httpPort := FreeUDPPort(t), FreeTCPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), append([]string{
		fmt.Sprintf("TANDEM_SWITCHER_SRT_ADDR=127.0.0.1:%d", srtPort),
		fmt.Sprintf("TANDEM_SWITCHER_HTTP_ADDR=127.0.0.1:%d", httpPort),
		"TANDEM_SWITCHER_RTMP_ADDR=",
		"TANDEM_SWITCHER_STATE_DIR=" + t.TempDir(),
	}, env...)...)
	cmd.Stdout, cmd.Stderr = LogWriter(t), LogWriter(t)
	if _, isBench := t.(*testing.B); isBench {
		// A benchmark's log is its figures (Go truncates it): the
		// switcher's own log goes to a file, shown if the benchmark fails.
		logFile := filepath.Join(t.TempDir(), "switcher.log")
		f, err := os.Create(logFile)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = f, f
		t.Cleanup(func() {
			f.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logFile)
				t.Logf("switcher log (last 4 KiB):\n%s", b[max(0, len(b)-4096):])
			}
		})
	}
	cmd.WaitDelay = 3 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	base = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if !WaitFor(10*time.Second, func() bool { _, err := HTTPGet(base + "/healthz"); return err == nil }) {
		t.Fatal("switcher did not start")
	}
	return base, fmt.Sprintf("127.0.0.1:%d", srtPort), cmd.Process.Pid
}

// EncodeAAC runs an ffmpeg lavfi audio graph through its AAC encoder
// (128 kbit/s, channels as the graph makes them) and returns the raw
// access units, ready to publish or decode.
func EncodeAAC(t testing.TB, graph string) [][]byte {
	t.Helper()
	ffmpeg := Need(t, "ffmpeg")
	out, err := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", graph,
		"-c:a", "aac", "-b:a", "128k", "-f", "adts", "pipe:1").Output()
	if err != nil {
		t.Fatalf("encode %s: %v", graph, err)
	}
	rd := adts.NewReader(strings.NewReader(string(out)))
	var frames [][]byte
	for {
		_, p, err := rd.ReadFrame()
		if err != nil {
			break
		}
		frames = append(frames, append([]byte(nil), p...))
	}
	return frames
}
