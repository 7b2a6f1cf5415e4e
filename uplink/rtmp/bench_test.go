package rtmp

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tandem/uplink/flv"
	"tandem/uplink/media"
)

// countSink counts what it receives.
type countSink struct {
	frames atomic.Int64
	bytes  atomic.Int64
	done   chan struct{}
}

func (s *countSink) OnAudioConfig(media.AudioConfig) {}
func (s *countSink) OnVideoConfig(media.VideoConfig) {}
func (s *countSink) OnFrame(f media.Frame) {
	s.frames.Add(1)
	s.bytes.Add(int64(len(f.Data)))
}
func (s *countSink) OnClose(error) { close(s.done) }

// streamSecond is one second of a 2 Mbit/s A/V stream: 25 fps H.264 (a
// 40 kB keyframe, 24 frames of 9 kB) and 128 kbit/s AAC at 48 kHz
// (46.875 frames of 340 bytes), in DTS order.
type streamSecond struct {
	frames []media.Frame
	bytes  int
}

func makeStreamSecond() streamSecond {
	rng := rand.New(rand.NewPCG(5, 6))
	acfg := media.AudioConfig{Codec: media.CodecAAC, SampleRate: 48000}
	var s streamSecond
	ai, vi := int64(0), int64(0)
	for ai < 47 || vi < 25 {
		adts, vdts := acfg.FramePTS(ai), vi*3600
		if ai < 47 && (vi >= 25 || adts <= vdts) {
			s.frames = append(s.frames, media.Frame{Kind: media.KindAudio, DTS: adts, PTS: adts, Key: true, Data: rawAU(rng, 340)})
			ai++
			continue
		}
		n := 9000
		if vi == 0 {
			n = 40000
		}
		s.frames = append(s.frames, media.Frame{Kind: media.KindVideo, DTS: vdts, PTS: vdts, Key: vi == 0, Data: fakeAU(rng, n, vi == 0)})
		vi++
	}
	for _, f := range s.frames {
		s.bytes += len(f.Data)
	}
	return s
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIngest publishes a 2 Mbit/s A/V stream with the Client to the
// Server over loopback TCP, as fast as it goes. Reported: frames/s through
// the server, how many times real time that is, and the CPU time (client
// and server together, the whole process) per second of stream.
func BenchmarkIngest(b *testing.B) {
	sec := makeStreamSecond()
	sink := &countSink{done: make(chan struct{})}
	_, addr := startServer(b, ServerConfig{OnPublish: func(*Publisher) (Sink, error) { return sink, nil }})
	acfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
	vcfg := testVideoConfig(b)
	cl, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/bench", Audio: &acfg, Video: &vcfg})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sec.bytes / len(sec.frames)))
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		n := len(sec.frames)
		f := sec.frames[i%n]
		off := int64(i/n) * media.ClockRate
		f.DTS += off
		f.PTS += off
		if err := cl.WriteFrame(f); err != nil {
			b.Fatal(err)
		}
	}
	cl.Close()
	<-sink.done
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	if got := sink.frames.Load(); got != int64(b.N) {
		b.Fatalf("server got %d frames of %d", got, b.N)
	}
	streamSec := float64(b.N) / float64(len(sec.frames))
	b.ReportMetric(float64(b.N)/wall.Seconds(), "frames/s")
	b.ReportMetric(streamSec/wall.Seconds(), "x-realtime")
	b.ReportMetric(float64(cpu.Milliseconds())/streamSec, "cpu-ms/stream-s")
}

// BenchmarkServerSession is the server's share alone: one session reading
// a recorded publish (chunk size 4096) from memory, no network. CPU per
// second of stream is the cost of one 2 Mbit/s publisher.
func BenchmarkServerSession(b *testing.B) {
	sec := makeStreamSecond()
	prefix := publishPrefix(b)
	var body bytes.Buffer
	bw := bufio.NewWriter(&body)
	cw := newChunkWriter(bw)
	cw.writeMessage(setChunkSizeMsg(4096))
	cw.chunkSize = 4096
	mux, _ := flv.NewMuxer(&media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}, nil)
	const seconds = 10
	for s := int64(0); s < seconds; s++ {
		for _, f := range sec.frames {
			f.DTS += s * media.ClockRate
			f.PTS += s * media.ClockRate
			mux.WriteFrame(f, func(t flv.Tag) error { return cw.writeMessage(tagMessage(1, t)) })
		}
	}
	bw.Flush()
	stream := append(prefix, body.Bytes()...)
	frames := int64(len(sec.frames) * seconds)
	b.SetBytes(int64(len(stream)))
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		srv := NewServer(ServerConfig{})
		sink := &countSink{done: make(chan struct{})}
		srv.cfg.OnPublish = func(*Publisher) (Sink, error) { return sink, nil }
		s := newSession(srv, &fakeConn{r: bytes.NewReader(stream)})
		if err := s.serve(); err != io.EOF {
			b.Fatal(err)
		}
		if sink.frames.Load() != frames {
			b.Fatalf("%d frames of %d", sink.frames.Load(), frames)
		}
	}
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	streamSec := float64(b.N * seconds)
	b.ReportMetric(float64(frames*int64(b.N))/wall.Seconds(), "frames/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/streamSec, "cpu-ms/stream-s")
}
