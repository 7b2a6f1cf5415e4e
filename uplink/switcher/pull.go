package switcher

import (
	"context"
	"errors"

	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
)

// The pull output's PIDs, as ffmpeg numbers them.
const (
	pullAudioPID = 0x100
	pullVideoPID = 0x101
)

// serveSRTPull sends a stream's output to an SRT caller that asked for it
// (m=request) as MPEG-TS, one message per frame: the audio and, if the
// stream has video, its H.264 from a keyframe on. The timestamps are the
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
	release, err := s.admitListener(st, true)
	if err != nil {
		// Another listener took the last place since the handshake.
		log.Warn("srt pull refused", "reason", err.Error())
		return
	}
	defer release()
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
	// hasVideo: the muxer has a video track; started: its first keyframe went out.
	var hasVideo, started bool
	for {
		var err error
		batch, err = rd.Read(ctx, batch[:0])
		for _, p := range batch {
			if mux == nil {
				tracks := []mpegts.Track{{PID: pullAudioPID, Kind: media.KindAudio, Audio: st.audioConfig()}}
				if v, ok := st.videoConfig(); ok {
					tracks = append(tracks, mpegts.Track{PID: pullVideoPID, Kind: media.KindVideo, Video: v})
					hasVideo = true
				}
				mux = mpegts.NewMuxer(tracks, c.WriteMessage)
			}
			pid := uint16(pullAudioPID)
			if p.Frame.Kind == media.KindVideo {
				if !hasVideo {
					// Video appeared after this puller started: it gets
					// the audio it asked for.
					continue
				}
				pid = pullVideoPID
				if !started {
					// A puller starts at a keyframe; the merge puts SPS/PPS in it.
					if !p.Frame.Key {
						continue
					}
					started = true
				}
			}
			if werr := mux.WriteFrame(pid, p.Frame); werr != nil {
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
