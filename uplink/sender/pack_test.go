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

// check is snapshot that also fails t on a message over 1316 bytes (or not
// whole TS packets) and on frames lost or out of order.
func (r *packReceiver) check(t *testing.T) (messages, oversized int, perMsg []int, pts []int64, tels int) {
	t.Helper()
	messages, oversized, perMsg, pts, tels = r.snapshot()
	if oversized > 0 {
		t.Errorf("%d messages larger than %d bytes or not whole TS packets", oversized, mpegts.MaxMessage)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i]-pts[i-1] != stereo48k.FrameDuration() {
			t.Fatalf("frame %d: PTS %d after %d: frames lost or reordered", i, pts[i], pts[i-1])
		}
	}
	return messages, oversized, perMsg, pts, tels
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

// packedPair is a connected sender with maxPackDelay and the receiver of
// what it sends; both end with ctx (and the test).
func packedPair(ctx context.Context, t *testing.T, maxPackDelay time.Duration) (*sender.Sender, *packReceiver) {
	t.Helper()
	ln, err := srt.Listen("127.0.0.1:0", srt.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := receivePacked(ctx, ln)
	cfg := baseConfig()
	cfg.Dest = "srt://" + ln.Addr().String()
	cfg.MaxPackDelay = maxPackDelay
	cfg.Log = testLogger(t)
	return runConnected(t, cfg), r
}

// TestPackedMessages: with MaxPackDelay 50 ms, a real-time 128 kbit/s feed
// goes two or three frames to a message, every frame arrives in order with
// the telemetry riding along, and a frame with no successor is still sent
// (by the timer, not by the next frame).
func TestPackedMessages(t *testing.T) {
	frames := tone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, r := packedPair(ctx, t, 50*time.Millisecond)
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
	messages, _, perMsg, pts, tels := r.check(t)
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

// TestBurstsShareMessages: with no MaxPackDelay, frames sent with SendMore
// wait for the rest of their burst; the burst's last frame (Send) sends
// them, in as few messages as fit (a frame is never split). A burst whose
// end never comes is sent once it has waited BurstWait, by the
// connection's next check (at most 250 ms). Plain Send still sends every
// frame in its own message.
func TestBurstsShareMessages(t *testing.T) {
	frames := tone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, r := packedPair(ctx, t, 0)
	frame := func(i int) media.Frame {
		pts := int64(i) * stereo48k.FrameDuration()
		return media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: frames[i%len(frames)]}
	}
	arrived := func(n int) bool {
		return e2e.WaitFor(3*time.Second, func() bool { _, _, _, pts, _ := r.snapshot(); return len(pts) >= n })
	}
	// 20 bursts of four frames, as a capture block of 4096 makes them.
	const bursts = 20
	i := 0
	for range bursts {
		for k := range 4 {
			if k < 3 {
				s.SendMore(frame(i))
			} else {
				s.Send(frame(i))
			}
			i++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !arrived(i) {
		_, _, _, pts, _ := r.snapshot()
		t.Fatalf("%d of %d frames arrived", len(pts), i)
	}
	messages, _, perMsg, _, _ := r.check(t)
	// A 128 kbit/s frame is 2-3 TS packets: four take two messages of 7,
	// sometimes three where PAT/PMT (twice a second) ride along.
	if limit := 2*bursts + bursts/4; messages > limit {
		t.Errorf("%d bursts of 4 frames took %d messages (frames per message %v), want at most %d", bursts, messages, perMsg, limit)
	}
	t.Logf("%d bursts of 4 frames in %d messages", bursts, messages)

	// A burst whose last frame never comes: the backstop check sends it.
	sentAt := time.Now()
	s.SendMore(frame(i))
	i++
	if !arrived(i) {
		t.Fatalf("a frame marked as more, with no frame after it, never arrived")
	}
	if d := time.Since(sentAt); d < sender.BurstWait {
		t.Errorf("a frame marked as more arrived after %v, before BurstWait (%v): it did not wait for its burst", d, sender.BurstWait)
	}

	// Plain Send: one message per frame.
	before, _, _, _, _ := r.snapshot()
	for range 10 {
		s.Send(frame(i))
		i++
	}
	if !arrived(i) {
		t.Fatalf("frames sent with Send did not arrive")
	}
	after, _, _, _, _ := r.snapshot()
	if after-before != 10 {
		t.Errorf("10 frames sent with Send took %d messages, want one each", after-before)
	}
}
