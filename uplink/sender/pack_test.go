package sender_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/sender"
	"tandem/uplink/srt"
	"tandem/uplink/telemetry"
)

// packReceiver is an SRT listener that demuxes what one sender sends and
// counts the messages and the audio frames in each.
type packReceiver struct {
	mu        sync.Mutex
	messages  int
	oversized int     // messages over 1316 bytes or not whole packets
	perMsg    []int   // audio frames starting in each message
	pts       []int64 // every audio frame's PTS, in order
	tels      int
}

func (r *packReceiver) snapshot() (messages, oversized int, perMsg []int, pts []int64, tels int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.messages, r.oversized, append([]int(nil), r.perMsg...), append([]int64(nil), r.pts...), r.tels
}

func receivePacked(ctx context.Context, ln *srt.Listener) *packReceiver {
	r := &packReceiver{}
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		defer conn.Close()
		var inMsg int
		dmx := mpegts.NewDemuxer(mpegts.Handler{
			OnFrame: func(pid uint16, f media.Frame) {
				if pid == sender.AudioPID {
					r.pts = append(r.pts, f.PTS)
				}
			},
			OnData: func(pid uint16, _ int64, _ []byte) {
				if pid == telemetry.PID {
					r.tels++
				}
			},
		})
		buf := make([]byte, srt.ReadBufferSize)
		for {
			n, err := conn.ReadMessage(ctx, buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.messages++
			if n > mpegts.MaxMessage || n%mpegts.PacketSize != 0 {
				r.oversized++
			}
			inMsg = 0
			for p := buf[:n]; len(p) >= mpegts.PacketSize; p = p[mpegts.PacketSize:] {
				if uint16(p[1]&0x1F)<<8|uint16(p[2]) == sender.AudioPID && p[1]&0x40 != 0 {
					inMsg++
				}
			}
			r.perMsg = append(r.perMsg, inMsg)
			dmx.Feed(buf[:n])
			r.mu.Unlock()
		}
	}()
	return r
}

// TestPackedMessages: with MaxPackDelay 50 ms, a real-time 128 kbit/s feed
// goes two or three frames to a message, every frame arrives in order with
// the telemetry riding along, and a frame with no successor is still sent
// (by the timer, not by the next frame).
func TestPackedMessages(t *testing.T) {
	frames := tone(t)
	ln, err := srt.Listen("127.0.0.1:0", srt.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := receivePacked(ctx, ln)

	cfg := baseConfig()
	cfg.Dest = "srt://" + ln.Addr().String()
	cfg.MaxPackDelay = 50 * time.Millisecond
	cfg.Log = testLogger(t)
	s, err := sender.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	if !e2e.WaitFor(5*time.Second, func() bool { return s.Stats().State == sender.StateConnected }) {
		t.Fatalf("not connected: %+v", s.Stats())
	}
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	go func() {
		time.Sleep(time.Second)
		s.SendTelemetry(telemetry.Report{Encoder: "running"})
	}()
	feed(fctx, frames, 0, s)
	fcancel()
	sent := s.Stats().Sent
	if !e2e.WaitFor(3*time.Second, func() bool { _, _, _, pts, _ := r.snapshot(); return int64(len(pts)) == sent }) {
		_, _, _, pts, _ := r.snapshot()
		t.Fatalf("received %d frames of %d sent", len(pts), sent)
	}
	messages, oversized, perMsg, pts, tels := r.snapshot()
	if oversized > 0 {
		t.Errorf("%d messages larger than %d bytes or not whole TS packets", oversized, mpegts.MaxMessage)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i]-pts[i-1] != stereo48k.FrameDuration() {
			t.Fatalf("frame %d: PTS %d after %d: frames lost or reordered", i, pts[i], pts[i-1])
		}
	}
	if tels != 1 {
		t.Errorf("%d telemetry reports arrived, want 1", tels)
	}
	multi := 0
	for _, n := range perMsg {
		if n > 3 {
			t.Errorf("a message carries %d frames: more than 50 ms of 21.3 ms frames", n)
		}
		if n >= 2 {
			multi++
		}
	}
	// On a loaded machine a late frame makes a message go short (the
	// timer), so ask for most, not all, to be packed.
	if messages > len(pts)*2/3 {
		t.Errorf("%d frames took %d messages (%d with 2-3 frames): want at most 2 messages per 3 frames", len(pts), messages, multi)
	}
	t.Logf("%d frames in %d messages (%d with 2-3 frames)", len(pts), messages, multi)
	// Stats count the messages as the receiver does (stats are sampled
	// by the idle check, every 250 ms).
	if !e2e.WaitFor(2*time.Second, func() bool { return s.Stats().Messages == int64(messages) }) {
		t.Errorf("Stats().Messages %d, the receiver got %d", s.Stats().Messages, messages)
	}

	// A lone frame: nothing follows it, only the timer can send it.
	last := pts[len(pts)-1]
	lone := media.Frame{Kind: media.KindAudio, PTS: last + stereo48k.FrameDuration(), Key: true, Data: frames[0]}
	lone.DTS = lone.PTS
	s.Send(lone)
	if !e2e.WaitFor(2*time.Second, func() bool { _, _, _, pts, _ := r.snapshot(); return pts[len(pts)-1] == lone.PTS }) {
		t.Errorf("a frame sent alone never arrived: the pack timer did not send it")
	}
}
