package sender

import (
	"errors"
	"time"

	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
)

// packing is an SRT session's packing of frames into messages: the
// frames of one burst (Sender.SendMore) and, with Config.MaxPackDelay,
// frames that may wait that long. Like the rest of the session it is used
// under Sender.liveMu; its timer takes that lock too.
type packing struct {
	packer   *mpegts.Packer
	maxDelay time.Duration // 0: frames wait only for the rest of their burst
	// frameInterval is the nominal time between two frames: a partial
	// message whose deadline comes before the next frame is sent at once,
	// so the timer fires only when a frame is late.
	frameInterval time.Duration
	inBurst       bool      // the last frame written said more of its burst follow
	since         time.Time // when the oldest pending packet was written
	deadline      time.Time // when the timer sends the pending packets
	flushed       bool      // a message went since the last written call
	timer         *time.Timer
}

// BurstWait is how long a frame given with SendMore waits for the rest of
// its burst before the next write or the connection's 250 ms check sends
// it. An encoder makes a capture block's frames within a few
// milliseconds, and its last one comes with Send; there is no timer for
// bursts, because arming one wakes the Go runtime's poller once per burst,
// which cost more CPU than the packing saves.
const BurstWait = 10 * time.Millisecond

func (s *Sender) newPacking(x *srtSession, conn *srt.Conn) *packing {
	p := &packing{
		maxDelay:      s.cfg.MaxPackDelay,
		frameInterval: time.Duration(s.cfg.Audio.FrameDuration()) * time.Second / 90000,
	}
	p.packer = mpegts.NewPacker(func(msg []byte) error {
		p.flushed = true
		err := conn.WriteMessage(msg)
		if errors.Is(err, srt.ErrSendBufferFull) {
			// libsrt refused the message, not the connection: the frames
			// that start in it are lost (those sent before as well as,
			// maybe, the one being written now).
			if n := frameStarts(msg); n > 0 {
				s.update(func(st *Stats) { st.Sent -= int64(n); st.DroppedFailed += int64(n) })
			}
			return nil
		}
		return err
	})
	p.timer = time.AfterFunc(time.Hour, func() { s.flushDue(x) })
	p.timer.Stop()
	return p
}

// written follows a write to the muxer at now (frame: an audio frame,
// with more telling whether the rest of its burst follows; otherwise
// telemetry). It sends the pending packets unless they may wait: for the
// rest of a burst (see BurstWait), or within MaxPackDelay if waiting
// could add another frame before that deadline. It (re)arms the timer for
// the deadline of packets that wait.
func (p *packing) written(now time.Time, frame, more bool) error {
	if frame {
		p.inBurst = more
	}
	if p.packer.Pending() == 0 {
		p.reset()
		return nil
	}
	if p.since.IsZero() || p.flushed {
		p.since, p.flushed = now, false
	}
	if p.inBurst {
		return nil
	}
	if p.maxDelay <= 0 {
		return p.flush()
	}
	deadline := p.since.Add(p.maxDelay)
	if frame && !now.Add(p.frameInterval).Before(deadline) {
		return p.flush()
	}
	p.arm(deadline)
	return nil
}

// arm sets the timer for deadline unless it is already set for then.
func (p *packing) arm(deadline time.Time) {
	if !deadline.Equal(p.deadline) {
		p.deadline = deadline
		p.timer.Reset(time.Until(deadline))
	}
}

func (p *packing) reset() {
	if !p.deadline.IsZero() {
		p.timer.Stop()
	}
	p.since, p.deadline, p.flushed = time.Time{}, time.Time{}, false
}

// due reports whether the pending packets have waited their bound.
func (p *packing) due(now time.Time) bool {
	return p.packer.Pending() > 0 && !p.deadline.IsZero() && !now.Before(p.deadline)
}

// stale reports whether pending packets have waited for the rest of a
// burst longer than BurstWait: its last frame was not marked as such.
func (p *packing) stale(now time.Time) bool {
	return p.packer.Pending() > 0 && p.inBurst && !p.since.IsZero() && now.Sub(p.since) >= BurstWait
}

func (p *packing) flush() error {
	p.reset()
	return p.packer.Flush()
}

// flushDue is the packing timer's work: it sends x's pending packets if
// x is still the live connection and they are due (a timer that fired
// while a write was sending them finds nothing to do).
func (s *Sender) flushDue(x *srtSession) {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	l := s.live
	if l == nil || l.sess != session(x) || l.err != nil || !x.pack.due(time.Now()) {
		return
	}
	if err := x.pack.flush(); err != nil {
		s.failLocked(l, err)
	}
}

// frameStarts counts the audio PES that start in a message.
func frameStarts(msg []byte) int {
	n := 0
	for p := msg; len(p) >= mpegts.PacketSize; p = p[mpegts.PacketSize:] {
		pid := uint16(p[1]&0x1F)<<8 | uint16(p[2])
		if pid == AudioPID && p[1]&0x40 != 0 {
			n++
		}
	}
	return n
}
