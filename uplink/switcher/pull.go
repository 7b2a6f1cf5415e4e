package switcher

import (
	"context"
	"errors"

	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
)

// serveSRTPull sends a stream's output to an SRT caller that asked for it
// (m=request) as MPEG-TS, one message per frame. The timestamps are the
// output timeline's, so the puller sees one continuous stream across every
// switch and reconnect of the inputs.
func (s *Server) serveSRTPull(ctx context.Context, c *srt.Conn, id streamid.ID) {
	st := s.lookup(id.Stream())
	if st == nil {
		return
	}
	fan := st.output()
	if fan == nil {
		return
	}
	log := st.log.With("puller", c.RemoteAddr().String())
	log.Info("srt pull connected")
	st.listeners.Add(1)
	defer st.listeners.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A caller that closes is noticed by a read failing.
	go func() {
		buf := make([]byte, srt.ReadBufferSize)
		for {
			if _, err := c.ReadMessage(ctx, buf); err != nil {
				cancel()
				return
			}
		}
	}()
	rd := fan.NewReader(0)
	var mux *mpegts.Muxer
	var batch []Packet
	for {
		var err error
		batch, err = rd.Read(ctx, batch[:0])
		for _, p := range batch {
			if mux == nil {
				mux = mpegts.NewMuxer([]mpegts.Track{{PID: 0x100, Kind: media.KindAudio, Audio: st.audioConfig()}}, c.WriteMessage)
			}
			if werr := mux.WriteFrame(0x100, p.Frame); werr != nil {
				log.Info("srt pull gone", "reason", werr.Error())
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, media.ErrReaderTooSlow):
			log.Warn("srt pull dropped: it fell behind the stream")
			return
		case errors.Is(err, media.ErrFanoutClosed):
			log.Info("srt pull closed: stream went off air")
			return
		default:
			log.Info("srt pull gone", "reason", err.Error())
			return
		}
	}
}
