package switcher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
	"tandem/uplink/telemetry"
)

// serveSRT reads one publisher until it goes away or is refused.
func (s *Server) serveSRT(ctx context.Context, c *srt.Conn) {
	defer c.Close()
	id, err := streamid.Parse(c.StreamID())
	if err != nil { // authorize already refused these; be safe anyway
		s.log.Warn("srt connection with a bad stream id", "streamid", c.StreamID(), "err", err)
		return
	}
	if id.Mode == streamid.ModeRequest {
		s.serveSRTPull(ctx, c, id)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	refusal := make(chan string, 1)
	in := &input{
		id:          id,
		proto:       "srt",
		remote:      c.RemoteAddr().String(),
		connectedAt: time.Now(),
		stats:       func() any { return srtStats(c.Stats()) },
		refuse: func(reason string) {
			select {
			case refusal <- reason:
			default:
			}
			cancel()
		},
	}
	st, err := s.attach(ctx, in)
	if err != nil {
		s.refused(id.Stream(), c.RemoteAddr(), err.Error())
		return
	}
	reason := s.readSRT(ctx, c, st, in)
	select {
	case r := <-refusal:
		reason = "refused: " + r
	default:
	}
	select {
	case st.inbox <- message{kind: msgDetach, in: in, reason: reason}:
	case <-st.done:
	}
	s.detached(st)
}

// readSRT feeds the connection's TS into the demuxer and the demuxer's
// first audio and first H.264 track into the stream. It returns why it stopped.
func (s *Server) readSRT(ctx context.Context, c *srt.Conn, st *stream, in *input) string {
	audioPID, videoPID := -1, -1
	badTelemetry := 0
	isTandem := false
	send := func(m message) {
		select {
		case st.inbox <- m:
		case <-ctx.Done():
		case <-st.done:
		}
	}
	dmx := mpegts.NewDemuxer(mpegts.Handler{
		OnTrack: func(t mpegts.TrackInfo) {
			if t.PID == telemetry.PID {
				// Only a Tandem appliance's registered stream is ours:
				// other encoders put subtitles or AC-3 in private data.
				isTandem = t.FormatID == mpegts.FormatTandem
			}
			switch {
			case t.Kind == media.KindAudio && (audioPID < 0 || int(t.PID) == audioPID):
				audioPID = int(t.PID)
				// The PMT listed the telemetry track before the first audio
				// frame announced this one: an appliance is known by now.
				send(message{kind: msgTrack, in: in, audio: t.Audio, inband: isTandem})
			case t.Kind == media.KindVideo && t.Video.Codec == media.CodecH264 && (videoPID < 0 || int(t.PID) == videoPID):
				videoPID = int(t.PID)
				send(message{kind: msgVideoTrack, in: in, video: t.Video})
			}
		},
		OnFrame: func(pid uint16, f media.Frame) {
			if int(pid) == audioPID || int(pid) == videoPID {
				send(message{kind: msgFrame, in: in, frame: f})
			}
		},
		OnData: func(pid uint16, pts int64, payload []byte) {
			if pid != telemetry.PID || !isTandem {
				return
			}
			r, err := telemetry.Unmarshal(payload)
			if err != nil {
				badTelemetry++
				if badTelemetry == 1 || badTelemetry%100 == 0 {
					st.log.Warn("ignoring bad in-band telemetry", "input", in.remote, "count", badTelemetry, "err", err)
				}
				return
			}
			send(message{kind: msgTelemetry, in: in, telemetry: r})
		},
	})
	buf := make([]byte, 1500)
	for {
		n, err := c.ReadMessage(ctx, buf)
		if err != nil {
			if ctx.Err() != nil {
				return "closed by the switcher"
			}
			if errors.Is(err, srt.ErrConnectionLost) || errors.Is(err, srt.ErrClosed) {
				return "publisher closed or connection lost"
			}
			return err.Error()
		}
		if err := dmx.Feed(buf[:n]); err != nil {
			msg := fmt.Sprintf("payload is not usable MPEG-TS: %v", err)
			st.record("input-refused", msg, nil)
			return msg
		}
	}
}

// SRTStats is the part of libsrt's statistics the API shows.
type SRTStats struct {
	RTTms         float64 `json:"rtt_ms"`
	RecvLoss      int64   `json:"recv_loss"`
	Retransmitted int64   `json:"retransmitted"`
	RecvDrop      int64   `json:"recv_drop"`
	PktRecv       int64   `json:"packets_received"`
	RecvRateMbps  float64 `json:"recv_rate_mbps"`
	BandwidthMbps float64 `json:"bandwidth_mbps"`
}

func srtStats(st srt.Stats) SRTStats {
	return SRTStats{
		RTTms:         float64(st.RTT) / float64(time.Millisecond),
		RecvLoss:      st.PktRecvLoss,
		Retransmitted: st.PktRetrans,
		RecvDrop:      st.PktRecvDrop,
		PktRecv:       st.PktRecv,
		RecvRateMbps:  st.RecvRateMbps,
		BandwidthMbps: st.BandwidthMbps,
	}
}
