package switcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"tandem/uplink/media"
	"tandem/uplink/rtmp"
	"tandem/uplink/streamid"
)

// startRTMP serves RTMP publishers (OBS, ffmpeg) on cfg.RTMPAddr:
// rtmp://host/<app>/<name>?key=<key>, with <name>_fallback or a second
// publisher on the same name as the fallback input, exactly like SRT.
// A Tandem appliance may add session=<id> to merge aligned.
func (s *Server) startRTMP(ctx context.Context) error {
	if s.cfg.RTMPAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.RTMPAddr)
	if err != nil {
		return fmt.Errorf("listen rtmp %s: %w", s.cfg.RTMPAddr, err)
	}
	s.rtmpLn = ln
	s.rtmpSrv = rtmp.NewServer(rtmp.ServerConfig{
		Authorize: func(app, name, key string, peer net.Addr) error {
			sid := fmt.Sprintf("#!::r=%s/%s,m=publish", app, name)
			if key != "" {
				sid += ",k=" + key
			}
			_, err := s.authorize(sid, peer)
			return err
		},
		OnPublish: func(p *rtmp.Publisher) (rtmp.Sink, error) { return s.rtmpPublish(ctx, p) },
		Logger:    s.log.With("component", "rtmp"),
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.rtmpSrv.Serve(ln); err != nil && !errors.Is(err, rtmp.ErrServerClosed) {
			s.log.Error("rtmp server stopped", "err", err)
		}
	}()
	return nil
}

// rtmpPublish attaches an accepted RTMP publisher to its stream.
func (s *Server) rtmpPublish(ctx context.Context, p *rtmp.Publisher) (rtmp.Sink, error) {
	sid := fmt.Sprintf("#!::r=%s/%s,m=publish", p.App, p.Name)
	if sess := p.Query.Get("session"); sess != "" {
		sid += ",s=" + sess
	}
	id, err := streamid.Parse(sid)
	if err != nil {
		return nil, err
	}
	sink := &rtmpSink{srv: s, pub: p}
	sink.in = &input{
		id: id, proto: "rtmp", remote: p.Remote.String(), connectedAt: time.Now(),
		refuse: func(reason string) { p.Close() },
	}
	st, err := s.attach(ctx, sink.in)
	if err != nil {
		s.refused(id.Stream(), p.Remote, err.Error())
		return nil, err
	}
	sink.st = st
	st.meta.inputConnected(sink.in, rtmpSourceInfo(p.Metadata))
	if t, ok := p.Metadata["title"].(string); ok {
		st.meta.setRoleTitle(sink.in.role, t)
	}
	return sink, nil
}

// rtmpSourceInfo reads what listeners are told from onMetaData.
func rtmpSourceInfo(md map[string]any) sourceInfo {
	var info sourceInfo
	if v, ok := md["audiodatarate"].(float64); ok {
		info.BitrateKbps = int(v)
	}
	return info
}

// OnMetadata takes the title of an @setDataFrame onMetaData.
func (k *rtmpSink) OnMetadata(md map[string]any) {
	if t, ok := md["title"].(string); ok {
		k.st.meta.setRoleTitle(k.in.role, t)
	}
}

// rtmpSink feeds one RTMP publisher's audio and H.264 video into its stream.
type rtmpSink struct {
	srv *Server
	pub *rtmp.Publisher
	st  *stream
	in  *input
}

func (k *rtmpSink) send(m message) {
	select {
	case k.st.inbox <- m:
	case <-k.st.done:
	}
}

func (k *rtmpSink) OnAudioConfig(c media.AudioConfig) {
	k.send(message{kind: msgTrack, in: k.in, audio: c})
}

func (k *rtmpSink) OnVideoConfig(c media.VideoConfig) {
	k.send(message{kind: msgVideoTrack, in: k.in, video: c})
}

func (k *rtmpSink) OnFrame(f media.Frame) {
	k.send(message{kind: msgFrame, in: k.in, frame: f})
}

func (k *rtmpSink) OnClose(err error) {
	reason := "publisher unpublished"
	if err != nil {
		reason = err.Error()
	}
	k.send(message{kind: msgDetach, in: k.in, reason: reason})
	k.st.meta.inputGone(k.in)
	k.srv.detached(k.st)
}
