package switcher

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics exports stream and input state to Prometheus. It reads the
// streams' status at scrape time, so the media path pays nothing per frame.
type metrics struct {
	srv *Server

	online, activeInput, listeners, hold               *prometheus.Desc
	emitted, fromFallback, holes, switches             *prometheus.Desc
	connected, health, bitrate, rtt                    *prometheus.Desc
	received, used, late, srtLoss, srtRetrans, srtDrop *prometheus.Desc
	httpListeners, maxListeners, refused               *prometheus.Desc
	allHTTPListeners, allMaxListeners                  *prometheus.Desc
	videoEmitted, videoSwitches, videoDropped          *prometheus.Desc
	decoderRestarts, decoderDropped, inputRMS          *prometheus.Desc
}

func newMetrics(srv *Server) *metrics {
	s := []string{"stream"}
	si := []string{"stream", "input"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("tandem_"+name, help, labels, nil)
	}
	return &metrics{
		srv:          srv,
		online:       d("stream_online", "1 while the stream is emitting.", s),
		activeInput:  d("stream_active_input", "1 for the input the output follows.", si),
		listeners:    d("stream_listeners", "HTTP listeners connected.", s),
		hold:         d("stream_playout_delay_seconds", "Configured playout delay.", s),
		emitted:      d("stream_frames_emitted_total", "Frames emitted, filled ones included.", s),
		fromFallback: d("stream_frames_from_fallback_total", "Frames taken from the fallback input.", s),
		holes:        d("stream_holes_filled_total", "Silent frames filled in because no input delivered in time.", s),
		switches:     d("stream_switches_total", "Changes of the active input.", s),
		connected:    d("input_connected", "1 while the input is connected.", si),
		health:       d("input_health", "Input health: 0 healthy, 1 degraded, 2 failed.", si),
		bitrate:      d("input_bitrate_bits_per_second", "Input payload bitrate over the last seconds.", si),
		rtt:          d("input_srt_rtt_seconds", "SRT round-trip time.", si),
		received:     d("input_frames_received_total", "Frames received from the input.", si),
		used:         d("input_frames_used_total", "Frames of the input that were emitted.", si),
		late:         d("input_frames_late_total", "Frames that arrived after their deadline.", si),
		srtLoss:      d("input_srt_recv_loss_packets_total", "SRT packets reported lost on receive.", si),
		srtRetrans:   d("input_srt_retransmitted_packets_total", "SRT packets retransmitted.", si),
		srtDrop:      d("input_srt_recv_drop_packets_total", "SRT packets dropped as too late.", si),

		httpListeners:    d("stream_http_listeners", "Icecast-style HTTP listeners connected.", s),
		maxListeners:     d("stream_max_listeners", "The stream's own cap on HTTP listeners (0: none).", s),
		refused:          d("stream_listeners_refused_total", "Listeners refused by a listener cap.", s),
		allHTTPListeners: d("http_listeners", "HTTP listeners of all streams.", nil),
		allMaxListeners:  d("max_listeners", "The cap on HTTP listeners of all streams (0: none).", nil),
		videoEmitted:     d("stream_video_frames_emitted_total", "Video frames emitted.", s),
		videoSwitches:    d("stream_video_switches_total", "Changes of the video source, each at a keyframe.", s),
		videoDropped:     d("stream_video_frames_dropped_total", "Video frames no output could use.", s),
		decoderRestarts:  d("input_level_decoder_restarts_total", "Restarts of the process decoding a third-party input's audio levels.", si),
		decoderDropped:   d("input_level_decoder_dropped_frames_total", "Frames the level decoder had no room for (it fell behind).", si),
		inputRMS:         d("input_audio_rms_dbfs", "The input's newest audio level per channel (telemetry or decoded).", append(si, "channel")),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	c := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	g(m.allHTTPListeners, float64(m.srv.httpListeners.Load()))
	g(m.allMaxListeners, float64(m.srv.cfg.MaxListeners))
	for _, st := range m.srv.statuses(nil) {
		g(m.online, b2f(st.State == "online"), st.ID)
		g(m.httpListeners, float64(st.Output.HTTPListeners), st.ID)
		g(m.maxListeners, float64(st.Output.MaxListeners), st.ID)
		c(m.refused, float64(st.Output.ListenersRefused), st.ID)
		g(m.listeners, float64(st.Output.Listeners), st.ID)
		g(m.hold, st.PlayoutDelayMs/1000, st.ID)
		c(m.emitted, float64(st.Output.FramesEmitted), st.ID)
		c(m.fromFallback, float64(st.Output.FramesFromFallback), st.ID)
		c(m.holes, float64(st.Output.HolesFilled), st.ID)
		c(m.switches, float64(st.Output.Switches), st.ID)
		if v := st.Output.Video; v != nil {
			c(m.videoEmitted, float64(v.FramesEmitted), st.ID)
			c(m.videoSwitches, float64(v.Switches), st.ID)
			c(m.videoDropped, float64(v.FramesDropped), st.ID)
		}
		for _, role := range []string{"primary", "fallback"} {
			if st.Active != "" {
				g(m.activeInput, b2f(st.Active == role), st.ID, role)
			}
		}
		seen := map[string]bool{}
		for _, in := range st.Inputs {
			seen[in.Role] = true
			g(m.connected, 1, st.ID, in.Role)
			g(m.health, healthValue(in.Health), st.ID, in.Role)
			g(m.bitrate, in.BitrateKbps*1000, st.ID, in.Role)
			c(m.received, float64(in.Frames.Received), st.ID, in.Role)
			c(m.used, float64(in.Frames.Used), st.ID, in.Role)
			c(m.late, float64(in.Frames.Late), st.ID, in.Role)
			if l := in.Levels; l != nil {
				for ch, v := range l.RMSDBFS {
					g(m.inputRMS, v, st.ID, in.Role, strconv.Itoa(ch))
				}
				if dec := l.Decoder; dec != nil {
					c(m.decoderRestarts, float64(dec.Restarts), st.ID, in.Role)
					c(m.decoderDropped, float64(dec.Dropped), st.ID, in.Role)
				}
			}
			if s, ok := in.SRT.(SRTStats); ok {
				g(m.rtt, s.RTTms/1000, st.ID, in.Role)
				c(m.srtLoss, float64(s.RecvLoss), st.ID, in.Role)
				c(m.srtRetrans, float64(s.Retransmitted), st.ID, in.Role)
				c(m.srtDrop, float64(s.RecvDrop), st.ID, in.Role)
			}
		}
		for _, role := range []string{"primary", "fallback"} {
			if !seen[role] {
				g(m.connected, 0, st.ID, role)
			}
		}
	}
}

func healthValue(h string) float64 {
	switch h {
	case "degraded":
		return 1
	case "failed":
		return 2
	}
	return 0
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler serves /metrics with the switcher's collector and Go's own.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newMetrics(s), prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
