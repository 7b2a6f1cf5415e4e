package rtmp

import (
	"errors"
	"net"
	"net/url"
	"sync"
	"time"

	"tandem/uplink/flv"
	"tandem/uplink/media"
)

// Player is a client playing a stream from the Server. The OnPlay callback
// (or a goroutine it starts) feeds it: configs first, then frames, from
// one goroutine at a time. Writes block while the connection is slow and
// fail once the player is gone; Done is closed then.
type Player struct {
	App    string
	Name   string
	Key    string
	Query  url.Values
	Remote net.Addr

	c        *conn
	streamID uint32
	ready    chan struct{} // closed once NetStream.Play.Start was sent
	done     chan struct{}
	once     sync.Once
	err      error

	mu       sync.Mutex
	mux      *flv.Muxer
	metaSent bool
}

func newPlayer(c *conn, streamID uint32) *Player {
	mux, _ := flv.NewMuxer(nil, nil)
	return &Player{c: c, streamID: streamID, ready: make(chan struct{}), done: make(chan struct{}), mux: mux}
}

func (p *Player) finish(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

// Done is closed when the player has gone (stopped, disconnected, server
// closed); Err then says why.
func (p *Player) Done() <-chan struct{} { return p.done }

// Err returns why the player ended, or nil while it plays.
func (p *Player) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

func (p *Player) wait() error {
	select {
	case <-p.ready:
	case <-p.done:
	}
	return p.Err()
}

// WriteAudioConfig sets the audio configuration; its sequence header is
// sent before the next audio frame.
func (p *Player) WriteAudioConfig(cfg media.AudioConfig) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mux.SetAudioConfig(cfg)
}

// WriteVideoConfig sets the video configuration; its sequence header is
// sent before the next video frame. Without one, the first keyframe's
// in-band SPS and PPS are used.
func (p *Player) WriteVideoConfig(cfg media.VideoConfig) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mux.SetVideoConfig(cfg)
}

// WriteFrame sends a frame (onMetaData and sequence headers first, as
// needed). Timestamps are relative to the first frame, as with Client.
func (p *Player) WriteFrame(f media.Frame) error {
	if err := p.wait(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.metaSent {
		md := p.mux.Metadata()
		if err := p.c.write(dataMsg(p.streamID, md...)); err != nil {
			return p.fail(err)
		}
		p.metaSent = true
	}
	err := p.mux.WriteFrame(f, func(t flv.Tag) error { return p.c.write(tagMessage(p.streamID, t)) })
	if err != nil {
		return p.fail(err)
	}
	return nil
}

func (p *Player) fail(err error) error {
	if e := p.Err(); e != nil {
		return e
	}
	return err
}

// Close ends the play from the server side: the client is told the stream
// stopped (onStatus NetStream.Play.Stop, Stream EOF) and the connection is
// half-closed, then closed when the client has gone or after 2 s.
func (p *Player) Close() error {
	if p.Err() != nil {
		return nil
	}
	err := p.c.write(onStatusMsg(p.streamID, "status", "NetStream.Play.Stop", "Stopped playing "+p.App+"/"+p.Name+"."),
		userControlMsg(eventStreamEOF, be32(p.streamID)))
	p.finish(errors.New("rtmp: player closed by the server"))
	if cw, ok := p.c.nc.(interface{ CloseWrite() error }); ok && err == nil {
		cw.CloseWrite()
		time.AfterFunc(2*time.Second, func() { p.c.nc.Close() })
		return nil
	}
	return p.c.nc.Close()
}

// tagMessage wraps an FLV tag as an RTMP message (the FLV tag types are
// the RTMP message type ids).
func tagMessage(streamID uint32, t flv.Tag) message {
	csid := uint32(csidStream)
	switch t.Type {
	case flv.TagAudio:
		csid = csidAudio
	case flv.TagVideo:
		csid = csidVideo
	}
	return message{csid: csid, typ: t.Type, streamID: streamID, ts: t.Timestamp, payload: t.Body}
}
