package sender

import (
	"errors"
	"time"

	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
)

// packing is an SRT session's bounded packing of frames into messages
// (Config.MaxPackDelay). Like the rest of the session it is used under
// Sender.liveMu; its timer takes that lock too.
type packing struct {
	packer   *mpegts.Packer
	maxDelay time.Duration
	// frameInterval is the nominal time between two frames: a partial
	// message whose deadline comes before the next frame is sent at once,
	// so the timer fires only when a frame is late.
	frameInterval time.Duration
	since         time.Time // when the oldest pending packet was written
	flushed       bool      // a message went since the last written call
	timer         *time.Timer
}

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

// written follows a write to the muxer at now: it dates the pending
// packets, sends them if waiting could not add another frame before their
// deadline, and (re)arms the timer for their deadline otherwise.
func (p *packing) written(now time.Time, frame bool) error {
	if p.packer.Pending() == 0 {
		p.since, p.flushed = time.Time{}, false
		p.timer.Stop()
		return nil
	}
	if p.since.IsZero() || p.flushed {
		p.since, p.flushed = now, false
		p.timer.Reset(p.maxDelay)
	}
	deadline := p.since.Add(p.maxDelay)
	if frame && !now.Add(p.frameInterval).Before(deadline) {
		return p.flush()
	}
	return nil
}

// due reports whether the pending packets have waited their bound.
func (p *packing) due(now time.Time) bool {
	return p.packer.Pending() > 0 && !now.Before(p.since.Add(p.maxDelay))
}

func (p *packing) flush() error {
	p.timer.Stop()
	p.since, p.flushed = time.Time{}, false
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
