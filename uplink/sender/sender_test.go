package sender_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/sender"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
	"tandem/uplink/telemetry"
)

func baseConfig() sender.Config {
	return sender.Config{Role: streamid.RolePrimary, App: "live", Name: "x", Session: "s1", Audio: stereo48k, Dest: "srt://127.0.0.1:9000"}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*sender.Config)
		want   string
	}{
		{"empty dest", func(c *sender.Config) { c.Dest = "" }, "Dest: empty"},
		{"unparsable", func(c *sender.Config) { c.Dest = "srt://[::1" }, "Dest: not a URL"},
		{"no scheme", func(c *sender.Config) { c.Dest = "127.0.0.1:9000" }, "Dest"},
		{"unknown scheme", func(c *sender.Config) { c.Dest = "rtmp://host/live/x" }, `unknown scheme "rtmp"`},
		{"srt no port", func(c *sender.Config) { c.Dest = "srt://host" }, "needs a port"},
		{"srt bad port", func(c *sender.Config) { c.Dest = "srt://host:99999" }, "bad port"},
		{"srt unknown param", func(c *sender.Config) { c.Dest = "srt://host:9000?latency=200" }, `unknown parameter "latency"`},
		{"srt path", func(c *sender.Config) { c.Dest = "srt://host:9000/live" }, "no path"},
		{"srt no name", func(c *sender.Config) { c.Name = "" }, "App/Name: required"},
		{"srt bad name", func(c *sender.Config) { c.Name = "a b" }, "App/Name/Session/Key"},
		{"srt fallback name", func(c *sender.Config) { c.Name = "x_fallback" }, "Name:"},
		{"srt bad key", func(c *sender.Config) { c.Key = "a,b" }, "Key"},
		{"icecast no password", func(c *sender.Config) { c.Dest = "icecast://source@host:8000/x.aac" }, "no password"},
		{"role", func(c *sender.Config) { c.Role = "" }, "Role"},
		{"audio", func(c *sender.Config) { c.Audio.SampleRate = 12345 }, "Audio"},
		{"codec", func(c *sender.Config) { c.Audio.Codec = media.CodecMP3 }, "Audio: codec"},
		{"local addr", func(c *sender.Config) { c.LocalAddr = "wana" }, "LocalAddr"},
		{"passphrase", func(c *sender.Config) { c.Passphrase = "short" }, "Passphrase"},
		{"backoff", func(c *sender.Config) { c.MinBackoff, c.MaxBackoff = 2*time.Second, time.Second }, "MinBackoff"},
		{"queue", func(c *sender.Config) { c.Queue = -1 }, "Queue"},
		{"pack delay negative", func(c *sender.Config) { c.MaxPackDelay = -time.Millisecond }, "MaxPackDelay"},
		{"pack delay too long", func(c *sender.Config) { c.MaxPackDelay = 150 * time.Millisecond }, "MaxPackDelay: 150ms out of range (0..100ms)"},
	}
	for _, c := range cases {
		cfg := baseConfig()
		c.mutate(&cfg)
		_, err := sender.New(cfg)
		if err == nil || !errors.Is(err, sender.ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v; want ErrConfig mentioning %q", c.name, err, c.want)
		}
	}
	// Passwords never appear in errors.
	cfg := baseConfig()
	cfg.Dest = "icecast://source:s3cret@host:8000/x.aac?a=b"
	if _, err := sender.New(cfg); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("icecast error %v (must fail without showing the password)", err)
	}
	// Defaults: mounts per role, redacted Dest.
	for role, mount := range map[streamid.Role]string{streamid.RolePrimary: "/x.aac", streamid.RoleFallback: "/x_fallback.aac"} {
		cfg := baseConfig()
		cfg.Role = role
		cfg.Dest = "icecast://source:s3cret@host"
		s, err := sender.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if d := s.Stats().Dest; d != "icecast://source:xxxxx@host"+mount {
			t.Errorf("%s: Dest %q, want mount %s and no password", role, d, mount)
		}
	}
}

// Send never blocks: with nobody sending, a full queue drops its oldest
// frames and counts them; when the connection comes up, what is still
// queued is stale and dropped too, and sending starts with the present.
func TestQueueWhileDisconnected(t *testing.T) {
	ln, err := srt.Listen("127.0.0.1:0", srt.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := baseConfig()
	cfg.Dest = "srt://" + ln.Addr().String()
	cfg.Queue = 10
	var ev events
	cfg.OnEvent = ev.add
	s, err := sender.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	falses := 0
	start := time.Now()
	for i := range 25 {
		if !s.Send(media.Frame{Kind: media.KindAudio, PTS: int64(i) * 1920, Data: []byte{byte(i), 1, 2, 3}}) {
			falses++
		}
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("25 Sends took %v", took)
	}
	st := s.Stats()
	if falses != 15 || st.DroppedOverflow != 15 || st.Dropped != 15 || st.Queued != 10 || st.Sent != 0 {
		t.Fatalf("after 25 frames into a queue of 10: Send returned false %d times; stats %+v", falses, st)
	}
	if s.Send(media.Frame{Kind: media.KindVideo, Data: []byte{1}}) {
		t.Error("Send accepted a video frame")
	}

	// Connect: the 10 queued frames are stale.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []int64, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var pts []int64
		dmx := mpegts.NewDemuxer(mpegts.Handler{OnFrame: func(pid uint16, f media.Frame) { pts = append(pts, f.PTS) }})
		buf := make([]byte, srt.ReadBufferSize)
		for len(pts) < 3 {
			n, err := c.ReadMessage(ctx, buf)
			if err != nil {
				break
			}
			dmx.Feed(buf[:n])
		}
		got <- pts
	}()
	run(t, s)
	if !e2e.WaitFor(5*time.Second, func() bool { return s.Stats().State == sender.StateConnected }) {
		t.Fatalf("not connected: %+v%s", s.Stats(), ev.String())
	}
	for i := range 3 {
		s.Send(media.Frame{Kind: media.KindAudio, PTS: int64(1000+i) * 1920, Data: []byte{9, 9, 9}})
		time.Sleep(20 * time.Millisecond)
	}
	pts := <-got
	if len(pts) < 3 || pts[0] != 1000*1920 {
		t.Errorf("the listener received PTS %v; want the fresh frames from %d (none of the stale ones)", pts, 1000*1920)
	}
	st = s.Stats()
	if st.DroppedStale != 10 || st.DroppedOverflow != 15 || st.Dropped != 25+1 || st.Sent != 3 {
		t.Errorf("stats after connect: %+v", st)
	}
	if n := ev.after(sender.EventDropped, start); len(n) == 0 || n[0].Count != 10 {
		t.Errorf("no dropped event for the 10 stale frames:%s", ev.String())
	}
	// The overflow is reported within a second or so.
	if !e2e.WaitFor(2*time.Second, func() bool {
		for _, e := range ev.after(sender.EventDropped, start) {
			if e.Count == 15 && strings.Contains(e.Detail, "full queue") {
				return true
			}
		}
		return false
	}) {
		t.Errorf("no dropped event for the overflow:%s", ev.String())
	}
}

// Destinations that cannot be reached give connect-failed events and
// retries, never a panic or an early return.
func TestUnreachableDest(t *testing.T) {
	cases := []struct{ name, dest, want string }{
		{"srt nobody listening", "srt://127.0.0.1:1", "connect"},
		{"srt unresolvable", "srt://nonexistent.invalid:9000", "resolve nonexistent.invalid"},
		{"icecast refused", "icecast://source:pw@127.0.0.1:1/x.aac", "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			cfg.Dest = c.dest
			cfg.ConnectTimeout = 300 * time.Millisecond
			cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
			var ev events
			cfg.OnEvent = ev.add
			cfg.Log = testLogger(t)
			s, err := sender.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			run(t, s)
			if !e2e.WaitFor(5*time.Second, func() bool { return ev.count(sender.EventConnectFailed) >= 3 }) {
				t.Fatalf("want 3 connect-failed events (retries):%s", ev.String())
			}
			first := ev.after(sender.EventConnectFailed, time.Time{})[0]
			if first.Err == nil || !strings.Contains(first.Err.Error(), c.want) {
				t.Errorf("connect-failed error %v; want it to mention %q", first.Err, c.want)
			}
			st := s.Stats()
			if st.Connects != 0 || st.LastError == "" || strings.Contains(st.LastError, "pw@") {
				t.Errorf("stats: %+v", st)
			}
			t.Logf("%s: %v", c.name, first.Err)
		})
	}
}

// Telemetry rides in the feed as private data on telemetry.PID, registered
// "TNDM", stamped with the PTS of the last audio frame; the stream starts
// with PAT and PMT; the stream id is built from the config, or taken
// verbatim from ?streamid=.
func TestTelemetryAndStreamID(t *testing.T) {
	frames := tone(t)
	type tel struct {
		pts    int64
		report telemetry.Report
	}
	type result struct {
		streamID string
		firstPID int
		tracks   []mpegts.TrackInfo
		tels     []tel
		audioPTS []int64
		bad      []string // reports not stamped with the last audio frame's PTS
	}
	for _, c := range []struct {
		name, query, wantID string
	}{
		{"built", "", "#!::r=live/x_fallback,m=publish,s=sess42,k=key1"},
		{"verbatim", "?streamid=%23%21%3A%3Ar%3Dother%2Fy%2Cm%3Dpublish", "#!::r=other/y,m=publish"},
		// As people paste it from ffmpeg: '#' unescaped starts a fragment.
		{"unescaped", "?streamid=#!::r=other/z,m=publish", "#!::r=other/z,m=publish"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := srt.Listen("127.0.0.1:0", srt.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res := make(chan result, 1)
			go func() {
				var r result
				defer func() { res <- r }()
				conn, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				defer conn.Close()
				r.streamID = conn.StreamID()
				r.firstPID = -1
				var last int64 = -1
				dmx := mpegts.NewDemuxer(mpegts.Handler{
					OnTrack: func(ti mpegts.TrackInfo) { r.tracks = append(r.tracks, ti) },
					OnFrame: func(pid uint16, f media.Frame) {
						if pid == sender.AudioPID {
							last = f.PTS
							r.audioPTS = append(r.audioPTS, f.PTS)
						}
					},
					OnData: func(pid uint16, pts int64, payload []byte) {
						if pid != telemetry.PID {
							return
						}
						rep, err := telemetry.Unmarshal(payload)
						if err != nil {
							return
						}
						r.tels = append(r.tels, tel{pts, rep})
						if pts != last {
							r.bad = append(r.bad, fmt.Sprintf("report with PTS %d after audio PTS %d", pts, last))
						}
					},
				})
				buf := make([]byte, srt.ReadBufferSize)
				for len(r.tels) < 3 {
					n, err := conn.ReadMessage(ctx, buf)
					if err != nil {
						return
					}
					if r.firstPID < 0 && n >= 3 {
						r.firstPID = int(buf[1]&0x1F)<<8 | int(buf[2])
					}
					dmx.Feed(buf[:n])
				}
			}()

			cfg := baseConfig()
			cfg.Role = streamid.RoleFallback
			cfg.Session, cfg.Key = "sess42", "key1"
			cfg.Dest = "srt://" + ln.Addr().String() + c.query
			cfg.Log = testLogger(t)
			s := runConnected(t, cfg)
			fctx, fcancel := context.WithCancel(ctx)
			defer fcancel()
			go feed(fctx, frames, 5000, s)
			for i := range 3 {
				time.Sleep(150 * time.Millisecond)
				s.SendTelemetry(telemetry.Report{Encoder: "running", Link: telemetry.LinkStatus{Name: "b", Up: true, Reconnects: int64(i)},
					Levels: []telemetry.ChannelLevel{{PeakDBFS: -12, RMSDBFS: -15}, {PeakDBFS: -12, RMSDBFS: -15}}})
			}
			var r result
			select {
			case r = <-res:
			case <-time.After(5 * time.Second):
				cancel()
				r = <-res
			}
			if r.streamID != c.wantID {
				t.Errorf("stream id %q, want %q", r.streamID, c.wantID)
			}
			if r.firstPID != 0 {
				t.Errorf("first packet on PID %#x, want the PAT (0)", r.firstPID)
			}
			var telTrack bool
			for _, ti := range r.tracks {
				if ti.PID == telemetry.PID && ti.FormatID == mpegts.FormatTandem && ti.Kind == 0 {
					telTrack = true
				}
			}
			if !telTrack {
				t.Errorf("no private-data track %#x registered %q in the PMT: %+v", telemetry.PID, mpegts.FormatTandem, r.tracks)
			}
			if len(r.tels) != 3 {
				t.Fatalf("received %d telemetry reports, want 3", len(r.tels))
			}
			if len(r.bad) > 0 {
				t.Errorf("reports not stamped with the last audio frame's PTS: %v", r.bad)
			}
			for i, tl := range r.tels {
				if tl.report.Feed != "fallback" || tl.report.Link.Name != "b" || tl.report.Link.Reconnects != int64(i) || len(tl.report.Levels) != 2 {
					t.Errorf("report %d: %+v", i, tl.report)
				}
			}
			if st := s.Stats(); st.TelemetrySent != 3 {
				t.Errorf("TelemetrySent %d", st.TelemetrySent)
			}
		})
	}
}
