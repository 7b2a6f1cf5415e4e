// Package testpub is a publisher for tests and the demo: it sends a stream's
// matched, aligned feeds to a switcher the way the appliance does. A sine is
// generated from one sample counter anchored at a shared epoch, each feed is
// encoded to AAC by its own ffmpeg, frames are stamped from the sample index
// (so feeds encoded by different ffmpeg processes, even in different
// processes started at different times, carry identical timestamps for the
// same audio), muxed to MPEG-TS and sent over SRT with the documented
// stream id. A lost connection is redialled while the encoder keeps running.
package testpub

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
)

// Feed is one of the stream's two feeds.
type Feed struct {
	Role streamid.Role // RolePrimary or RoleFallback
	// Bitrate in bits per second; the fallback may be lower.
	Bitrate int
	// LocalAddr pins the feed's SRT connection to a source address (a link).
	LocalAddr string
}

// Config describes what to publish and where.
type Config struct {
	Addr       string // the switcher's SRT address, host:port
	App, Name  string
	Key        string
	Passphrase string
	Latency    time.Duration
	// Session is the capture session both feeds declare; empty: random.
	Session string
	// Epoch is the wall time of capture sample 0. Feeds that run in
	// separate processes share a timeline by sharing Session and Epoch.
	Epoch      time.Time
	Frequency  float64 // Hz, default 440
	LevelDBFS  float64 // peak level, default -12
	SampleRate int     // default 48000
	Channels   int     // default 2
	Feeds      []Feed
	Log        *slog.Logger
	// OnSend, if set, is called after each frame has been handed to SRT.
	OnSend func(role streamid.Role, f media.Frame, at time.Time)
	// FFmpeg is the encoder binary, default "ffmpeg".
	FFmpeg string
}

func (c *Config) defaults() {
	if c.Session == "" {
		var b [6]byte
		rand.Read(b[:])
		c.Session = hex.EncodeToString(b[:])
	}
	if c.Epoch.IsZero() {
		c.Epoch = time.Now()
	}
	if c.Frequency == 0 {
		c.Frequency = 440
	}
	if c.LevelDBFS == 0 {
		c.LevelDBFS = -12
	}
	if c.SampleRate == 0 {
		c.SampleRate = 48000
	}
	if c.Channels == 0 {
		c.Channels = 2
	}
	if c.Latency == 0 {
		c.Latency = 120 * time.Millisecond
	}
	if c.FFmpeg == "" {
		c.FFmpeg = "ffmpeg"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// FeedStats counts one feed's progress.
type FeedStats struct {
	Encoded  atomic.Int64 // frames out of the encoder
	Sent     atomic.Int64 // frames handed to SRT
	Dropped  atomic.Int64 // frames produced while disconnected
	Connects atomic.Int64
}

// Publisher runs the feeds.
type Publisher struct {
	cfg   Config
	audio media.AudioConfig
	stats map[streamid.Role]*FeedStats
}

// New checks cfg and makes a publisher.
func New(cfg Config) (*Publisher, error) {
	cfg.defaults()
	if cfg.Addr == "" || cfg.App == "" || cfg.Name == "" {
		return nil, errors.New("testpub: Addr, App and Name are required")
	}
	if len(cfg.Feeds) == 0 {
		return nil, errors.New("testpub: no feeds")
	}
	p := &Publisher{cfg: cfg, stats: map[streamid.Role]*FeedStats{},
		audio: media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: cfg.SampleRate, Channels: cfg.Channels}}
	for _, f := range cfg.Feeds {
		if f.Role != streamid.RolePrimary && f.Role != streamid.RoleFallback {
			return nil, fmt.Errorf("testpub: feed role %q (want primary or fallback)", f.Role)
		}
		p.stats[f.Role] = &FeedStats{}
	}
	return p, nil
}

// Session is the capture session the feeds declare.
func (p *Publisher) Session() string { return p.cfg.Session }

// Stats returns a feed's counters.
func (p *Publisher) Stats(r streamid.Role) *FeedStats { return p.stats[r] }

// Run publishes until ctx ends; it returns the first feed's fatal error.
func (p *Publisher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(p.cfg.Feeds))
	for _, f := range p.cfg.Feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.runFeed(ctx, f); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s feed: %w", f.Role, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (p *Publisher) runFeed(ctx context.Context, feed Feed) error {
	log := p.cfg.Log.With("feed", string(feed.Role))
	frames := make(chan media.Frame, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.send(ctx, feed, frames, log)
	}()
	defer wg.Wait()
	defer close(frames)
	for ctx.Err() == nil {
		err := p.encode(ctx, feed, frames, log)
		if ctx.Err() != nil {
			return nil
		}
		// An encoder that dies is restarted on the same timeline.
		log.Warn("encoder stopped; restarting", "err", err)
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return nil
}

// encode runs one ffmpeg from the next frame boundary of the capture clock
// until it fails or ctx ends.
func (p *Publisher) encode(ctx context.Context, feed Feed, out chan<- media.Frame, log *slog.Logger) error {
	sr := int64(p.cfg.SampleRate)
	fs := int64(p.audio.FrameSamples())
	// Start at the next whole frame of the capture clock.
	now := int64(time.Since(p.cfg.Epoch)) * sr / int64(time.Second)
	start := (now/fs + 1) * fs
	cmd := exec.CommandContext(ctx, p.cfg.FFmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
		"-f", "s16le", "-ar", strconv.Itoa(p.cfg.SampleRate), "-ac", strconv.Itoa(p.cfg.Channels), "-i", "pipe:0",
		"-c:a", "aac", "-b:a", strconv.Itoa(feed.Bitrate), "-f", "adts", "-flush_packets", "1", "pipe:1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr := &limitedBuffer{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start encoder %s: %w", p.cfg.FFmpeg, err)
	}
	pcmDone := make(chan error, 1)
	go func() { pcmDone <- p.writePCM(ctx, stdin, start) }()

	rd := adts.NewReader(bufio.NewReaderSize(stdout, 16<<10))
	// Frame k of the encoder covers capture samples start+(k-1)*1024: the
	// first frame is the encoder's priming and is not sent.
	first := start/fs - 1
	var k int64
	var readErr error
	for {
		_, payload, err := rd.ReadFrame()
		if err != nil {
			readErr = err
			break
		}
		idx := first + k
		k++
		if idx < start/fs {
			continue
		}
		data := append([]byte(nil), payload...)
		pts := p.audio.FramePTS(idx)
		p.stats[feed.Role].Encoded.Add(1)
		select {
		case out <- media.Frame{Kind: media.KindAudio, PTS: pts & (1<<33 - 1), DTS: pts & (1<<33 - 1), Key: true, Data: data}:
		default:
			p.stats[feed.Role].Dropped.Add(1)
		}
	}
	stdin.Close()
	werr := cmd.Wait()
	<-pcmDone
	if ctx.Err() != nil {
		return nil
	}
	if stderr.String() != "" {
		return fmt.Errorf("encoder: %v: %s", werr, stderr.String())
	}
	if werr != nil {
		return fmt.Errorf("encoder: %w", werr)
	}
	return fmt.Errorf("encoder output ended: %v", readErr)
}

// writePCM writes the sine from sample index start, paced by the capture
// clock: a block is written once its last sample exists.
func (p *Publisher) writePCM(ctx context.Context, w io.WriteCloser, start int64) error {
	defer w.Close()
	sr := int64(p.cfg.SampleRate)
	ch := p.cfg.Channels
	const block = 1024
	amp := math.Pow(10, p.cfg.LevelDBFS/20) * 32767
	buf := make([]byte, block*ch*2)
	w2 := 2 * math.Pi * p.cfg.Frequency / float64(sr)
	for n := start; ; n += block {
		due := p.cfg.Epoch.Add(time.Duration((n + block) * int64(time.Second) / sr))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
		}
		for i := 0; i < block; i++ {
			// The phase is reduced modulo the period in integer samples
			// before the sine, so precision does not decay over hours.
			s := int16(math.Round(amp * math.Sin(w2*float64((n+int64(i))%(sr*1000)))))
			for c := 0; c < ch; c++ {
				binary.LittleEndian.PutUint16(buf[(i*ch+c)*2:], uint16(s))
			}
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
}

// send keeps an SRT connection up and writes every frame to it.
func (p *Publisher) send(ctx context.Context, feed Feed, frames <-chan media.Frame, log *slog.Logger) {
	st := p.stats[feed.Role]
	id := streamid.ID{App: p.cfg.App, Name: p.cfg.Name, Mode: streamid.ModePublish, Role: feed.Role, Session: p.cfg.Session, Key: p.cfg.Key}
	var conn *srt.Conn
	var mux *mpegts.Muxer
	backoff := 100 * time.Millisecond
	var nextDial time.Time
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for f := range frames {
		if conn == nil && !time.Now().Before(nextDial) {
			dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			c, err := srt.Dial(dctx, p.cfg.Addr, srt.Options{
				Latency: p.cfg.Latency, StreamID: id.String(), Passphrase: p.cfg.Passphrase,
				LocalAddr: feed.LocalAddr, ConnectTimeout: 3 * time.Second,
			})
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				log.Warn("connect failed", "addr", p.cfg.Addr, "err", err, "retry_in", backoff)
				nextDial = time.Now().Add(backoff)
				backoff = min(backoff*2, 2*time.Second)
			} else {
				conn = c
				st.Connects.Add(1)
				backoff = 100 * time.Millisecond
				log.Info("connected", "addr", p.cfg.Addr, "streamid", id.String())
				mux = mpegts.NewMuxer([]mpegts.Track{{PID: 0x100, Kind: media.KindAudio, Audio: p.audio}}, func(msg []byte) error {
					return conn.WriteMessage(msg)
				})
				mux.PSIInterval = media.ClockRate / 2
				// Frames queued while dialling are stale: a live sender
				// starts with the present, as the appliance does.
				for drained := false; !drained; {
					select {
					case _, ok := <-frames:
						if !ok {
							return
						}
						st.Dropped.Add(1)
					default:
						drained = true
					}
				}
				continue
			}
		}
		if conn == nil {
			st.Dropped.Add(1)
			continue
		}
		if err := mux.WriteFrame(0x100, f); err != nil {
			log.Warn("connection lost", "err", err)
			conn.Close()
			conn = nil
			st.Dropped.Add(1)
			continue
		}
		st.Sent.Add(1)
		if p.cfg.OnSend != nil {
			p.cfg.OnSend(feed.Role, f, time.Now())
		}
	}
}

type limitedBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
