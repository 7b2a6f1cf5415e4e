package switcher_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/switcher"
	"tandem/uplink/testpub"
)

// need skips a test whose peer program is missing, except under CI where
// a missing peer is a failure.
func need(t testing.TB, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (scripts/deps.sh installs it): %v", prog, err)
		}
		t.Skipf("needs %s in PATH (run make deps)", prog)
	}
	return p
}

// logWriter sends a component's log to the test log, so a failure shows it.
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

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(&logWriter{t: t}, nil))
}

// startSwitcher runs an in-process switcher on loopback with free ports.
func startSwitcher(t testing.TB, mutate func(*switcher.Config)) *switcher.Server {
	t.Helper()
	cfg := switcher.DefaultConfig()
	cfg.SRTAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := switcher.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		srv.Close()
	})
	return srv
}

// listener reads a stream's ADTS output and keeps every whole frame with
// its arrival time. Err is set if the connection ever ended before Close.
type listener struct {
	mu      sync.Mutex
	frames  [][]byte
	arrived []time.Time
	first   time.Time
	err     error
	headers http.Header
	cancel  context.CancelFunc
	done    chan struct{}
}

// listen connects to url (through dial, or the default dialer) and waits
// for the first frame.
func listen(t testing.TB, url string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *listener {
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
	l := &listener{cancel: cancel, done: make(chan struct{}), headers: resp.Header}
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
	t.Cleanup(l.close)
	if !waitFor(15*time.Second, func() bool { return l.count() > 0 }) {
		t.Fatalf("no audio from %s within 15 s", url)
	}
	return l
}

func (l *listener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.frames)
}

func (l *listener) close() {
	l.cancel()
	<-l.done
}

// stop ends the listener and returns its frames and whether it ever dropped.
func (l *listener) stop() ([][]byte, []time.Time, error) {
	l.close()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.frames, l.arrived, l.err
}

func (l *listener) alive() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// toneOf decodes ADTS frames with ffmpeg and analyses the tone.
func toneOf(t testing.TB, frames [][]byte, freq float64) testpub.ToneReport {
	t.Helper()
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pcm, err := testpub.DecodeToMono(ctx, need(t, "ffmpeg"), all, 48000)
	if err != nil {
		t.Fatalf("decoding the listener's audio: %v", err)
	}
	return testpub.AnalyzeTone(pcm, 48000, freq)
}

type apiStreams struct {
	Streams []switcher.StreamStatus `json:"streams"`
}

func getStreams(t testing.TB, base string, client *http.Client) apiStreams {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Get(base + "/api/v1/streams")
	if err != nil {
		t.Fatalf("GET /api/v1/streams: %v", err)
	}
	defer resp.Body.Close()
	var out apiStreams
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode /api/v1/streams: %v", err)
	}
	return out
}

func findStream(s apiStreams, id string) *switcher.StreamStatus {
	for i := range s.Streams {
		if s.Streams[i].ID == id {
			return &s.Streams[i]
		}
	}
	return nil
}

func getEvents(t testing.TB, base string) []switcher.Event {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Events []switcher.Event }
	json.NewDecoder(resp.Body).Decode(&out)
	return out.Events
}

// runPublisher runs an in-process test publisher until the test ends.
func runPublisher(t testing.TB, cfg testpub.Config) *testpub.Publisher {
	p, _ := runStoppablePublisher(t, cfg)
	return p
}

// runStoppablePublisher is runPublisher with a function that stops it early
// (as if its process died: its connections close).
func runStoppablePublisher(t testing.TB, cfg testpub.Config) (*testpub.Publisher, func()) {
	t.Helper()
	need(t, "ffmpeg")
	cfg.Log = testLogger(t).With("component", "testpub")
	p, err := testpub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("publisher: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

var _ = io.EOF
var _ = media.ClockRate

var httpClient = http.Client{Timeout: 10 * time.Second}

func freeUDPPort(t testing.TB) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
