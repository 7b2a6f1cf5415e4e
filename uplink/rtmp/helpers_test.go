package rtmp

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/scripts/logbuf"
	"tandem/scripts/testenv"
	"tandem/uplink/h264"
	"tandem/uplink/media"
)

// logBuf collects a server's log lines for a test to wait on.
type logBuf struct{ logbuf.Buffer }

func (l *logBuf) waitFor(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(l.String(), substr) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("log never showed %q; log:\n%s", substr, l.String())
}

func newLog() (*logBuf, *slog.Logger) {
	lb := &logBuf{}
	return lb, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// recSink records what a publisher delivers.
type recSink struct {
	mu       sync.Mutex
	pub      *Publisher
	audio    []media.AudioConfig
	video    []media.VideoConfig
	frames   []media.Frame
	meta     []map[string]any
	closed   chan struct{}
	closeErr error
	nframes  chan struct{} // signalled on every frame (non-blocking)
}

func newRecSink(p *Publisher) *recSink {
	return &recSink{pub: p, closed: make(chan struct{}), nframes: make(chan struct{}, 1)}
}

func (s *recSink) OnAudioConfig(c media.AudioConfig) {
	s.mu.Lock()
	s.audio = append(s.audio, c)
	s.mu.Unlock()
}

func (s *recSink) OnVideoConfig(c media.VideoConfig) {
	s.mu.Lock()
	s.video = append(s.video, c)
	s.mu.Unlock()
}

func (s *recSink) OnFrame(f media.Frame) {
	s.mu.Lock()
	select {
	case <-s.closed:
		panic("frame after OnClose")
	default:
	}
	s.frames = append(s.frames, f)
	s.mu.Unlock()
	select {
	case s.nframes <- struct{}{}:
	default:
	}
}

func (s *recSink) OnMetadata(m map[string]any) {
	s.mu.Lock()
	s.meta = append(s.meta, m)
	s.mu.Unlock()
}

func (s *recSink) OnClose(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		panic("OnClose twice")
	default:
	}
	s.closeErr = err
	close(s.closed)
}

func (s *recSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.frames)
}

func (s *recSink) snapshot() ([]media.AudioConfig, []media.VideoConfig, []media.Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]media.AudioConfig(nil), s.audio...), append([]media.VideoConfig(nil), s.video...), append([]media.Frame(nil), s.frames...)
}

func (s *recSink) waitClosed(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-s.closed:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closeErr
	case <-time.After(timeout):
		t.Fatalf("sink for %v not closed within %v", s.pub, timeout)
		return nil
	}
}

// sinks hands out recSinks per stream name.
type sinks struct {
	mu sync.Mutex
	m  map[string]*recSink
	ch chan *recSink
}

func newSinks() *sinks { return &sinks{m: map[string]*recSink{}, ch: make(chan *recSink, 16)} }

func (ss *sinks) onPublish(p *Publisher) (Sink, error) {
	s := newRecSink(p)
	ss.mu.Lock()
	ss.m[p.Name] = s
	ss.mu.Unlock()
	ss.ch <- s
	return s, nil
}

func (ss *sinks) wait(t testing.TB, timeout time.Duration) *recSink {
	t.Helper()
	select {
	case s := <-ss.ch:
		return s
	case <-time.After(timeout):
		t.Fatalf("no publisher within %v", timeout)
		return nil
	}
}

// startServer runs a Server on a loopback port and closes it (checking
// Serve's result) at cleanup.
func startServer(t testing.TB, cfg ServerConfig) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, ln.Addr().String()
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// An x264 SPS (320x240 High) and PPS, for synthetic access units.
var (
	testSPS = unhex("6764000dacd94141fb011000000300100000030320f1429960")
	testPPS = unhex("68ebe3cb22c0")
)

func testVideoConfig(t testing.TB) media.VideoConfig {
	cfg, err := h264.ParseSPS(testSPS)
	if err != nil {
		t.Fatal(err)
	}
	cfg.PPS = testPPS
	return cfg
}

// fakeAU makes an Annex-B access unit of about n bytes with 4-byte start
// codes: AUD, then SPS, PPS and an IDR slice for keyframes, a non-IDR
// slice otherwise. Payload bytes avoid start-code emulation.
func fakeAU(rng *rand.Rand, n int, key bool) []byte {
	au := append([]byte(nil), h264.AUD...)
	typ := byte(0x41)
	if key {
		au = append(au, 0, 0, 0, 1)
		au = append(au, testSPS...)
		au = append(au, 0, 0, 0, 1)
		au = append(au, testPPS...)
		typ = 0x65
	}
	au = append(au, 0, 0, 0, 1, typ)
	for len(au) < n {
		au = append(au, byte(1+rng.IntN(255)))
	}
	return au
}

func rawAU(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

// probePacket is one packet as ffprobe reports it (FLV time base 1 ms).
type probePacket struct {
	CodecType string `json:"codec_type"`
	PTS       int64  `json:"pts"`
	DTS       int64  `json:"dts"`
	Size      string `json:"size"`
	Flags     string `json:"flags"`
}

type probeStream struct {
	CodecName  string `json:"codec_name"`
	CodecType  string `json:"codec_type"`
	Profile    string `json:"profile"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	SampleRate string `json:"sample_rate"`
	Channels   int    `json:"channels"`
}

type probeResult struct {
	Packets []probePacket `json:"packets"`
	Streams []probeStream `json:"streams"`
}

func ffprobe(t testing.TB, path string) probeResult {
	t.Helper()
	bin := testenv.Need(t, "ffprobe")
	out, err := exec.Command(bin, "-v", "error", "-of", "json",
		"-show_entries", "packet=codec_type,pts,dts,size,flags:stream=codec_name,codec_type,profile,width,height,sample_rate,channels",
		path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r probeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("ffprobe output: %v", err)
	}
	return r
}

func (p probePacket) size() int {
	n, _ := strconv.Atoi(p.Size)
	return n
}

// runCmd runs a command with a timeout, returning combined output.
func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func split(frames []media.Frame) (audio, video []media.Frame) {
	for _, f := range frames {
		if f.Kind == media.KindAudio {
			audio = append(audio, f)
		} else {
			video = append(video, f)
		}
	}
	return
}

func describeFrame(f media.Frame) string {
	return fmt.Sprintf("%s pts=%d dts=%d key=%v len=%d", f.Kind, f.PTS, f.DTS, f.Key, len(f.Data))
}
