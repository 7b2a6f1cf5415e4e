// Package audiolevel measures the audio levels of an input that carries
// no in-band telemetry (a third-party encoder) by decoding it: one ffmpeg
// process per input reads ADTS on stdin and writes low-rate PCM on
// stdout, and each short block of it becomes per-channel peak and RMS
// levels dated by when its audio arrived at the switcher, not by when the
// decoder got round to it.
//
// The meter is never on the media path: Write only queues a copy of the
// frame and drops it (counted) when the decoder falls behind; a decoder
// that dies is restarted with backoff. Its owner collects the blocks with
// Take whenever it likes.
package audiolevel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"tandem/uplink/adts"
	"tandem/uplink/media"
)

// Config tunes a Meter. Zero values take the defaults documented on each field.
type Config struct {
	// FFmpeg is the decoder binary: a path, or a name looked up in PATH.
	// Default "ffmpeg".
	FFmpeg string
	// Audio is the input's AAC configuration.
	Audio media.AudioConfig
	// Block is the span of audio each level measures. Default 20 ms.
	Block time.Duration
	// Queue is how many frames may wait for the decoder before new ones
	// are dropped. Default 256 (about 5 s at 48 kHz).
	Queue int
	// MaxBlocks is how many measured blocks wait for Take before the
	// oldest are discarded. Default 1000.
	MaxBlocks int
	// RestartMin and RestartMax bound the backoff between decoder
	// restarts. Defaults 100 ms and 5 s.
	RestartMin, RestartMax time.Duration
	// Log receives the decoder's failures, rate-limited. Default: discard.
	Log *slog.Logger
}

// decodeRate is the PCM rate asked of the decoder: enough for levels
// (content above 8 kHz alone would read as silence), cheap to move.
const decodeRate = 16000

func (c Config) withDefaults() Config {
	if c.FFmpeg == "" {
		c.FFmpeg = "ffmpeg"
	}
	if c.Block <= 0 {
		c.Block = 20 * time.Millisecond
	}
	if c.Queue <= 0 {
		c.Queue = 256
	}
	if c.MaxBlocks <= 0 {
		c.MaxBlocks = 1000
	}
	if c.RestartMin <= 0 {
		c.RestartMin = 100 * time.Millisecond
	}
	if c.RestartMax <= 0 {
		c.RestartMax = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// ErrNoDecoder is wrapped by Start when the decoder binary cannot be found.
var ErrNoDecoder = errors.New("audio level decoder not available")

// LookPath resolves the decoder binary, or says why it cannot.
func LookPath(ffmpeg string) (string, error) {
	if ffmpeg == "" {
		ffmpeg = "ffmpeg"
	}
	p, err := exec.LookPath(ffmpeg)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoDecoder, err)
	}
	return p, nil
}

// Block is one measured span of audio.
type Block struct {
	// At is when the block's first sample arrived at the switcher: its
	// media time on the input's earliest arrivals (see mediaClock).
	At time.Time
	// PeakDBFS and RMSDBFS are per channel; digital silence is -Inf.
	PeakDBFS, RMSDBFS []float64
}

// Stats describe a meter.
type Stats struct {
	// State is "running", "restarting" or "closed".
	State string `json:"state"`
	// PID is the decoder's process id while it runs.
	PID int `json:"pid,omitempty"`
	// Dropped counts frames not decoded because the decoder was behind
	// (or restarting); LostBlocks counts blocks nobody took in time.
	Dropped    int64  `json:"dropped_frames"`
	LostBlocks int64  `json:"lost_blocks"`
	Blocks     int64  `json:"blocks"`
	Restarts   int64  `json:"restarts"`
	LastError  string `json:"last_error,omitempty"`
}

type queued struct {
	at   time.Time
	adts []byte
}

// written is a frame handed to the current decoder: its index in that
// decoder's input and its arrival.
type written struct {
	index int64
	at    time.Time
}

// Meter decodes one input's audio. Write and Take may be called from
// different goroutines.
type Meter struct {
	cfg    Config
	clock  mediaClock // owned by Write's goroutine
	queue  chan queued
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	blocks  []Block
	stats   Stats
	pending []written // frames written to the decoder and not yet decoded
}

// Start runs the decoder for one input until Close. It fails only when
// the decoder binary cannot be found (ErrNoDecoder) or the audio is not
// AAC.
func Start(cfg Config) (*Meter, error) {
	cfg = cfg.withDefaults()
	if cfg.Audio.Codec != media.CodecAAC || cfg.Audio.SampleRate <= 0 || cfg.Audio.Channels <= 0 {
		return nil, fmt.Errorf("audiolevel: cannot decode %s: want AAC with a sample rate and channels", cfg.Audio)
	}
	path, err := LookPath(cfg.FFmpeg)
	if err != nil {
		return nil, err
	}
	cfg.FFmpeg = path
	ctx, cancel := context.WithCancel(context.Background())
	m := &Meter{cfg: cfg, queue: make(chan queued, cfg.Queue), cancel: cancel, done: make(chan struct{})}
	m.stats.State = "running"
	go m.run(ctx)
	return m, nil
}

// Write queues one raw AAC frame with its 90 kHz PTS, which arrived at
// at. It never blocks: a frame the decoder has no room for is dropped and
// counted. Write is called from one goroutine.
func (m *Meter) Write(at time.Time, pts int64, payload []byte) {
	at = m.clock.date(at, pts)
	frame, err := adts.AppendFrame(make([]byte, 0, adts.HeaderLength+len(payload)), m.cfg.Audio, payload)
	if err != nil {
		m.mu.Lock()
		m.stats.Dropped++
		m.stats.LastError = fmt.Sprintf("cannot frame AAC as ADTS: %v", err)
		m.mu.Unlock()
		return
	}
	select {
	case m.queue <- queued{at: at, adts: frame}:
	default:
		m.mu.Lock()
		m.stats.Dropped++
		m.mu.Unlock()
	}
}

// Take appends the blocks measured since the last call to dst, oldest first.
func (m *Meter) Take(dst []Block) []Block {
	m.mu.Lock()
	defer m.mu.Unlock()
	dst = append(dst, m.blocks...)
	clear(m.blocks)
	m.blocks = m.blocks[:0]
	return dst
}

// Stats returns the meter's counters and state.
func (m *Meter) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Close stops the decoder and waits for its process to exit.
func (m *Meter) Close() {
	m.cancel()
	<-m.done
	m.mu.Lock()
	m.stats.State, m.stats.PID = "closed", 0
	m.mu.Unlock()
}

// run keeps a decoder running until ctx ends.
func (m *Meter) run(ctx context.Context) {
	defer close(m.done)
	backoff := m.cfg.RestartMin
	failures := 0
	for {
		started := time.Now()
		err := m.decode(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 10*backoff {
			// It ran for a good while: this failure starts a new series.
			backoff, failures = m.cfg.RestartMin, 0
		}
		failures++
		m.mu.Lock()
		m.stats.Restarts++
		m.stats.State, m.stats.PID = "restarting", 0
		m.stats.LastError = err.Error()
		m.mu.Unlock()
		// A decoder that keeps dying would log at every restart: say the
		// first failures of a series, then every tenth.
		if failures <= 3 || failures%10 == 0 {
			m.cfg.Log.Warn("audio level decoder failed; restarting", "err", err, "failures", failures, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, m.cfg.RestartMax)
	}
}

// decode runs one decoder process until it fails or ctx ends.
func (m *Meter) decode(ctx context.Context) error {
	ch := m.cfg.Audio.Channels
	cmd := exec.CommandContext(ctx, m.cfg.FFmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
		// Start on the first frame instead of probing a second of input.
		"-probesize", "32", "-analyzeduration", "0",
		"-f", "aac", "-i", "pipe:0",
		"-f", "s16le", "-ac", strconv.Itoa(ch), "-ar", strconv.Itoa(decodeRate),
		// Write each decoded frame at once, not when a buffer fills.
		"-flush_packets", "1", "pipe:1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("decoder stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("decoder stdout: %w", err)
	}
	stderr := &tailBuffer{max: 512}
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start decoder %s: %w", m.cfg.FFmpeg, err)
	}
	m.mu.Lock()
	m.stats.State, m.stats.PID = "running", cmd.Process.Pid
	m.pending = m.pending[:0]
	m.mu.Unlock()

	// The writer feeds the queue to stdin; when the decoder stops reading
	// (dead, or ctx ended) the write fails and the writer stops.
	writeErr := make(chan error, 1)
	stopWriter := make(chan struct{})
	go func() {
		writeErr <- m.feed(ctx, stdin, stopWriter)
		stdin.Close()
	}()
	readErr := m.measure(stdout)
	close(stopWriter)
	werr := <-writeErr
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	msg := stderr.String()
	switch {
	case waitErr != nil && msg != "":
		return fmt.Errorf("decoder exited: %v: %s", waitErr, msg)
	case waitErr != nil:
		return fmt.Errorf("decoder exited: %w", waitErr)
	case readErr != nil:
		return fmt.Errorf("read decoder output: %w", readErr)
	case werr != nil:
		return fmt.Errorf("write to decoder: %w", werr)
	}
	return errors.New("decoder exited")
}

// feed writes queued frames to the decoder, noting each one's arrival.
func (m *Meter) feed(ctx context.Context, w io.Writer, stop <-chan struct{}) error {
	var index int64
	for {
		var q queued
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		case q = <-m.queue:
		}
		m.mu.Lock()
		if len(m.pending) >= 4*m.cfg.Queue {
			// The decoder swallows frames without output (it cannot
			// decode them): forget the oldest rather than grow.
			m.pending = append(m.pending[:0], m.pending[len(m.pending)/2:]...)
		}
		m.pending = append(m.pending, written{index: index, at: q.at})
		m.mu.Unlock()
		index++
		if _, err := w.Write(q.adts); err != nil {
			return err
		}
	}
}

// measure reads the decoder's PCM, cuts it into blocks and dates each by
// the arrival of the frame its first sample came from.
func (m *Meter) measure(r io.Reader) error {
	ch := m.cfg.Audio.Channels
	per := int(int64(decodeRate) * int64(m.cfg.Block) / int64(time.Second))
	if per < 1 {
		per = 1
	}
	frameSamples := int64(m.cfg.Audio.FrameSamples())
	inRate := int64(m.cfg.Audio.SampleRate)
	sum := make([]float64, ch)
	peak := make([]float64, ch)
	var decoded int64 // samples per channel decoded so far
	var inBlock int
	buf := make([]byte, 8192)
	var carry []byte
	for {
		n, err := r.Read(buf)
		data := append(carry, buf[:n]...)
		frameBytes := 2 * ch
		whole := len(data) / frameBytes * frameBytes
		for off := 0; off < whole; off += frameBytes {
			for c := range ch {
				v := float64(int16(uint16(data[off+2*c])|uint16(data[off+2*c+1])<<8)) / 32768
				sum[c] += v * v
				peak[c] = max(peak[c], math.Abs(v))
			}
			inBlock++
			decoded++
			if inBlock == per {
				first := decoded - int64(per)
				m.addBlock(first*inRate/decodeRate, frameSamples, inRate, sum, peak, per)
				clear(sum)
				clear(peak)
				inBlock = 0
			}
		}
		carry = append(carry[:0], data[whole:]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// addBlock dates a block starting at input sample pos and stores it.
func (m *Meter) addBlock(pos, frameSamples, inRate int64, sum, peak []float64, n int) {
	b := Block{PeakDBFS: make([]float64, len(sum)), RMSDBFS: make([]float64, len(sum))}
	for c := range sum {
		b.RMSDBFS[c] = dbfs(math.Sqrt(sum[c] / float64(n)))
		b.PeakDBFS[c] = dbfs(peak[c])
	}
	frame := pos / frameSamples
	m.mu.Lock()
	defer m.mu.Unlock()
	// Frames before this one are decoded: forget them.
	i := 0
	for i < len(m.pending) && m.pending[i].index < frame {
		i++
	}
	if i > 0 {
		m.pending = append(m.pending[:0], m.pending[i:]...)
	}
	if len(m.pending) == 0 || m.pending[0].index != frame {
		// The decoder made more audio than it was given (or its first
		// frame's record was dropped): undatable, so not reported.
		return
	}
	offset := time.Duration((pos - frame*frameSamples) * int64(time.Second) / inRate)
	b.At = m.pending[0].at.Add(offset)
	m.stats.Blocks++
	if len(m.blocks) >= m.cfg.MaxBlocks {
		m.blocks = append(m.blocks[:0], m.blocks[1:]...)
		m.stats.LostBlocks++
	}
	m.blocks = append(m.blocks, b)
}

// mediaClock dates frames by their media time on the input's earliest
// arrivals. A publisher that packs several frames per packet (ffmpeg's
// MPEG-TS muxer bundles ~180 ms of AAC per PES) delivers most frames
// late; dating each by its own arrival would date a silence by the burst
// that happened to carry its start.
type mediaClock struct {
	has     bool
	lastPTS int64         // last 33-bit PTS seen
	media   time.Duration // media time of the last frame, unwrapped
	lastAt  time.Time
	base    time.Time // arrival of media time 0 on the lower envelope
	// winMin is the lowest arrival-minus-media this window: if a whole
	// window stays above base (the path got slower, or the sender's clock
	// runs slow), base follows it.
	winMin   time.Time
	winStart time.Time
}

// clockWindow is how long the envelope waits before following arrivals
// that have all become later.
const clockWindow = 5 * time.Second

// ptsWrap is the period of 33-bit MPEG timestamps.
const ptsWrap = int64(1) << 33

func (c *mediaClock) date(at time.Time, pts int64) time.Time {
	pts &= ptsWrap - 1
	if c.has {
		d := (pts - c.lastPTS) & (ptsWrap - 1)
		if d > ptsWrap/2 {
			d -= ptsWrap // a frame earlier than the last
		}
		step := time.Duration(d) * time.Second / 90000
		c.media += step
		// A timestamp step far from the time that passed (the publisher
		// restarted its timeline, or the path stopped for a while):
		// start a new envelope.
		if gap := step - at.Sub(c.lastAt); gap > 2*time.Second || gap < -2*time.Second {
			c.has = false
		}
	}
	if !c.has {
		c.has, c.media = true, 0
		c.base, c.winMin, c.winStart = at, at, at
	}
	c.lastPTS, c.lastAt = pts, at
	cand := at.Add(-c.media)
	if cand.Before(c.base) {
		c.base = cand
	}
	if cand.Before(c.winMin) {
		c.winMin = cand
	}
	if at.Sub(c.winStart) >= clockWindow {
		if c.winMin.After(c.base) {
			c.base = c.winMin
		}
		c.winMin, c.winStart = cand, at
	}
	return c.base.Add(c.media)
}

func dbfs(v float64) float64 {
	if v <= 0 {
		return math.Inf(-1)
	}
	return 20 * math.Log10(v)
}

// tailBuffer keeps the last bytes written to it (a decoder's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
