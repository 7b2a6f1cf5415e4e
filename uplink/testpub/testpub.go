// Package testpub is a publisher for tests and the demo: it sends a stream's
// matched, aligned feeds to a switcher the way the appliance does, with the
// appliance's own capture clock and encoders. A sine (capture.NewToneAt) is
// generated from one sample counter anchored at a shared epoch and cut into
// blocks by a capture.Capture; each feed is encoded to AAC by its own
// ffmpeg (capture/encoder), frames are stamped from the sample index (so
// feeds encoded by different ffmpeg processes, even in different processes
// started at different times, carry identical timestamps for the same
// audio), muxed to MPEG-TS and sent over SRT with the documented stream id.
// A lost connection is redialled while the encoder keeps running; an
// encoder that dies is restarted on the same timeline.
//
// Recording (replay.go) is the A/V counterpart for tests and benchmarks:
// an H.264 + AAC clip encoded once by ffmpeg, replayed in real time on a
// looped timeline over SRT or RTMP.
package testpub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"tandem/capture"
	"tandem/capture/encoder"
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
	cfg    Config
	format capture.Format
	audio  media.AudioConfig
	stats  map[streamid.Role]*FeedStats
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
	format := capture.Format{SampleRate: cfg.SampleRate, Channels: cfg.Channels}
	if err := format.Validate(); err != nil {
		return nil, fmt.Errorf("testpub: %w", err)
	}
	p := &Publisher{cfg: cfg, stats: map[streamid.Role]*FeedStats{}, format: format,
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
// One capture clock (a tone anchored at Epoch) feeds every feed's encoder.
func (p *Publisher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tone := capture.NewToneAt(p.format, p.cfg.Frequency, p.cfg.LevelDBFS, p.cfg.Epoch)
	clock := capture.New(tone, capture.Config{Session: p.cfg.Session, Log: p.cfg.Log})
	var wg sync.WaitGroup
	errc := make(chan error, len(p.cfg.Feeds)+1)
	for _, f := range p.cfg.Feeds {
		blocks, _ := clock.Subscribe(128) // closed when the clock stops
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.runFeed(ctx, f, blocks); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s feed: %w", f.Role, err)
				cancel()
			}
		}()
	}
	if err := clock.Run(ctx); err != nil && ctx.Err() == nil {
		errc <- err
		cancel()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (p *Publisher) runFeed(ctx context.Context, feed Feed, blocks <-chan capture.Block) error {
	log := p.cfg.Log.With("feed", string(feed.Role))
	st := p.stats[feed.Role]
	frames := make(chan media.Frame, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.send(ctx, feed, frames, log)
	}()
	defer wg.Wait()
	defer close(frames)
	// The encoder restarts its ffmpeg on the same timeline if it dies.
	enc := encoder.New(string(feed.Role), encoder.Profile{Codec: media.CodecAAC, Bitrate: feed.Bitrate, Format: p.format},
		p.cfg.FFmpeg, log)
	return enc.Run(ctx, blocks, func(f media.Frame, _ bool) {
		st.Encoded.Add(1)
		select {
		case frames <- f:
		default:
			st.Dropped.Add(1)
		}
	})
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
				LocalAddr: feed.LocalAddr, ConnectTimeout: 3 * time.Second, SendOnly: true,
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
