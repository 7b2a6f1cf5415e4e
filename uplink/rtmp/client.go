package rtmp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"tandem/uplink/flv"
	"tandem/uplink/media"
	"tandem/uplink/rtmp/amf0"
)

// ClientConfig configures Dial.
type ClientConfig struct {
	// URL is rtmp://host[:port]/app/stream[?query] (or rtmps:// for RTMP
	// over TLS, default port 443). The first path segment is the
	// application; the rest and the query are the stream name.
	URL string
	// Audio and Video describe the tracks to send. Audio must be set to
	// send audio frames; without Video, the first keyframe's in-band SPS
	// and PPS give the video config.
	Audio *media.AudioConfig
	Video *media.VideoConfig
	// Logger receives the client's log; nil discards it.
	Logger *slog.Logger
	// DialTimeout bounds Dial as a whole: TCP (and TLS) connect,
	// handshake, connect, createStream and publish (default 10 s).
	DialTimeout time.Duration
	// WriteTimeout bounds each write (default 10 s).
	WriteTimeout time.Duration
	// ChunkSize is the outgoing chunk size (default 4096).
	ChunkSize int
	// TLSConfig is used for rtmps; nil means the defaults with the URL's
	// host as server name.
	TLSConfig *tls.Config
}

// ErrClientClosed is returned by WriteFrame after Close.
var ErrClientClosed = errors.New("rtmp: client closed")

// Client publishes one stream to an RTMP server.
type Client struct {
	log      *slog.Logger
	c        *conn
	nc       net.Conn
	url      rtmpURL
	streamID uint32

	mu     sync.Mutex // serialises WriteFrame
	mux    *flv.Muxer
	closed atomic.Bool

	emu        sync.Mutex
	rerr       error // why the server side ended
	readerDone chan struct{}
}

// Dial connects to the server and starts publishing: handshake, connect,
// releaseStream/FCPublish, createStream, publish, then onMetaData. Errors
// name the step that failed; a refusal is a *StatusError carrying the
// server's code and description.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	u, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	mux, err := flv.NewMuxer(cfg.Audio, cfg.Video)
	if err != nil {
		return nil, fmt.Errorf("rtmp: %w", err)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 4096
	}
	cfg.ChunkSize = min(cfg.ChunkSize, 0xFFFFFF)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "rtmp-client", "url", u.scheme+"://"+u.addr+"/"+u.app)

	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, fmt.Errorf("rtmp: dial %s: %w", u.addr, err)
	}
	if u.scheme == "rtmps" {
		tc := cfg.TLSConfig.Clone()
		if tc == nil {
			tc = &tls.Config{}
		}
		if tc.ServerName == "" {
			tc.ServerName = u.host
		}
		tconn := tls.Client(nc, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("rtmp: TLS handshake with %s: %w", u.addr, err)
		}
		nc = tconn
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })

	cl := &Client{
		log:        log,
		c:          newConn(nc, 1<<24, log),
		nc:         nc,
		url:        u,
		mux:        mux,
		readerDone: make(chan struct{}),
	}
	err = cl.setup(cfg.ChunkSize)
	if !stop() && err == nil {
		err = fmt.Errorf("rtmp: publish %s: %w", redact(u.name), ctx.Err())
	}
	if err != nil {
		nc.Close()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	cl.c.writeTimeout = cfg.WriteTimeout
	go cl.readLoop()
	log.Info("rtmp: publishing", "stream", redact(u.name), "stream_id", cl.streamID)
	return cl, nil
}

func (cl *Client) setup(chunkSize int) error {
	c, u := cl.c, cl.url
	if err := clientHandshake(c.br, c.bw, time.Now()); err != nil {
		return fmt.Errorf("rtmp: handshake with %s: %w", u.addr, err)
	}
	err := c.write(setChunkSizeMsg(chunkSize),
		commandMsg(csidCommand, 0, "connect", 1.0, amf0.Object{
			{Key: "app", Value: u.app},
			{Key: "type", Value: "nonprivate"},
			{Key: "flashVer", Value: "FMLE/3.0 (compatible; Tandem)"},
			{Key: "tcUrl", Value: u.tcURL},
		}))
	if err != nil {
		return fmt.Errorf("rtmp: connect: %w", err)
	}
	if _, err := cl.await(1, "connect"); err != nil {
		return err
	}
	err = c.write(
		commandMsg(csidCommand, 0, "releaseStream", 2.0, nil, u.name),
		commandMsg(csidCommand, 0, "FCPublish", 3.0, nil, u.name),
		commandMsg(csidCommand, 0, "createStream", 4.0, nil))
	if err != nil {
		return fmt.Errorf("rtmp: createStream: %w", err)
	}
	res, err := cl.await(4, "createStream")
	if err != nil {
		return err
	}
	for _, v := range res {
		if f, ok := v.(float64); ok && f >= 1 && f < 1<<32 {
			cl.streamID = uint32(f)
			break
		}
	}
	if cl.streamID == 0 {
		return fmt.Errorf("rtmp: createStream: the server's _result holds no stream id (%v)", res)
	}
	if err := c.write(commandMsg(csidStream, cl.streamID, "publish", 5.0, nil, u.name, "live")); err != nil {
		return fmt.Errorf("rtmp: publish: %w", err)
	}
	if err := cl.awaitPublish(); err != nil {
		return err
	}
	md := cl.mux.Metadata()
	if err := c.write(dataMsg(cl.streamID, append([]any{"@setDataFrame"}, md...)...)); err != nil {
		return fmt.Errorf("rtmp: sending metadata: %w", err)
	}
	return nil
}

func statusFrom(step string, args []any) *StatusError {
	info := infoObject(args)
	se := &StatusError{Step: step, Level: info.String("level"), Code: info.String("code"), Description: info.String("description")}
	if se.Code == "" {
		se.Code = "(no code)"
	}
	return se
}

// await reads until the _result or _error of transaction txn.
func (cl *Client) await(txn float64, step string) ([]any, error) {
	for {
		m, err := cl.c.readMessage()
		if err != nil {
			return nil, fmt.Errorf("rtmp: %s: waiting for the server's answer: %w", step, noEOF(err))
		}
		if m.typ != typeCommandAMF0 && m.typ != typeCommandAMF3 {
			continue
		}
		name, t, args, err := decodeCommand(m)
		if err != nil {
			return nil, fmt.Errorf("rtmp: %s: %w", step, err)
		}
		switch {
		case name == "_result" && t == txn:
			return args, nil
		case name == "_error" && t == txn:
			return nil, statusFrom(step, args)
		case name == "onStatus" && infoObject(args).String("level") == "error":
			return nil, statusFrom(step, args)
		case name == "close":
			return nil, fmt.Errorf("rtmp: %s: the server closed the connection (close command)", step)
		}
	}
}

// awaitPublish reads until NetStream.Publish.Start or a refusal.
func (cl *Client) awaitPublish() error {
	for {
		m, err := cl.c.readMessage()
		if err != nil {
			return fmt.Errorf("rtmp: publish %s: waiting for the server's answer: %w", redact(cl.url.name), noEOF(err))
		}
		if m.typ != typeCommandAMF0 && m.typ != typeCommandAMF3 {
			continue
		}
		name, _, args, err := decodeCommand(m)
		if err != nil {
			return fmt.Errorf("rtmp: publish: %w", err)
		}
		switch name {
		case "onStatus":
			info := infoObject(args)
			if info.String("level") == "error" {
				return statusFrom("publish", args)
			}
			if info.String("code") == "NetStream.Publish.Start" {
				return nil
			}
		case "_error":
			return statusFrom("publish", args)
		case "close":
			return errors.New("rtmp: publish: the server closed the connection (close command)")
		}
	}
}

func (cl *Client) setErr(err error) {
	cl.emu.Lock()
	if cl.rerr == nil {
		cl.rerr = err
	}
	cl.emu.Unlock()
}

func (cl *Client) err() error {
	cl.emu.Lock()
	defer cl.emu.Unlock()
	return cl.rerr
}

// readLoop answers the server (pings, acknowledgements) and notes why the
// session ended.
func (cl *Client) readLoop() {
	defer close(cl.readerDone)
	for {
		m, err := cl.c.readMessage()
		if err != nil {
			cl.setErr(fmt.Errorf("rtmp: connection to the server lost: %w", err))
			return
		}
		if m.typ != typeCommandAMF0 && m.typ != typeCommandAMF3 {
			continue
		}
		name, _, args, err := decodeCommand(m)
		if err != nil {
			cl.log.Warn("rtmp: undecodable command from the server", "err", err)
			continue
		}
		if name == "onStatus" && infoObject(args).String("level") == "error" {
			se := statusFrom("publish", args)
			cl.log.Warn("rtmp: server reported an error", "err", se)
			cl.setErr(se)
		}
	}
}

// WriteFrame sends a frame: AAC raw access unit or H.264 Annex-B access
// unit. The first frame of each track is preceded by its sequence header.
// Timestamps are ms = ⌊(DTS − DTS₀)/90⌋ relative to the first frame, and
// the composition time is ⌊(PTS − DTS₀)/90⌋ − ms. Video frames before the
// first keyframe are dropped without error.
func (cl *Client) WriteFrame(f media.Frame) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed.Load() {
		return ErrClientClosed
	}
	if err := cl.err(); err != nil {
		return err
	}
	err := cl.mux.WriteFrame(f, func(t flv.Tag) error { return cl.c.write(tagMessage(cl.streamID, t)) })
	if err != nil {
		if rerr := cl.err(); rerr != nil {
			return fmt.Errorf("%w (%w)", err, rerr)
		}
		return fmt.Errorf("rtmp: %w", err)
	}
	return nil
}

// Stats returns the muxer's counters.
func (cl *Client) Stats() flv.MuxStats {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.mux.Stats()
}

// Close unpublishes (FCUnpublish, deleteStream), closes the connection
// gracefully and waits for the reader goroutine. It takes at most about
// 3 s, also when a WriteFrame is blocked on a stalled connection (which
// then fails).
func (cl *Client) Close() error {
	if cl.closed.Swap(true) {
		return nil
	}
	force := time.AfterFunc(3*time.Second, func() { cl.nc.Close() })
	defer force.Stop()
	cl.c.wmu.Lock()
	cl.c.writeTimeout = 2 * time.Second
	cl.c.wmu.Unlock()
	err := cl.c.write(
		commandMsg(csidCommand, 0, "FCUnpublish", 6.0, nil, cl.url.name),
		commandMsg(csidCommand, 0, "deleteStream", 7.0, nil, float64(cl.streamID)))
	if cw, ok := cl.nc.(interface{ CloseWrite() error }); ok && err == nil {
		cw.CloseWrite()
		select {
		case <-cl.readerDone:
		case <-time.After(2 * time.Second):
		}
	}
	cl.nc.Close()
	<-cl.readerDone
	if err != nil && cl.err() == nil {
		return err
	}
	return nil
}
