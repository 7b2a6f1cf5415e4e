package mpegts

import "fmt"

// Packer gathers the TS packets of consecutive writes (a Muxer's emits:
// one frame with its PAT/PMT or PCR packets, a telemetry PES) into
// messages of at most MaxMessage bytes, so that a live SRT link carries
// several small audio frames per message instead of one: fewer messages
// mean fewer wake-ups of libsrt's threads on both ends.
//
// A write that does not fit beside what is pending sends the pending
// packets first, so a frame is split across messages only when it is
// larger than a message itself. A full message is sent at once. Packer
// does not decide when to send a partial message: its owner calls Flush
// (the sender does so when the oldest pending frame has waited long
// enough). It is not safe for concurrent use.
type Packer struct {
	emit func([]byte) error
	buf  []byte
}

// NewPacker returns a Packer that hands every message to emit. The slice
// passed to emit is reused after emit returns.
func NewPacker(emit func(msg []byte) error) *Packer {
	return &Packer{emit: emit, buf: make([]byte, 0, MaxMessage)}
}

// Write takes a whole number of TS packets. It sends the pending packets
// first if b does not fit beside them, and every message it fills. An
// error of emit is returned as it is; the packets of the failed message
// are gone, and nothing of b is kept after a failed flush of older packets.
func (p *Packer) Write(b []byte) error {
	if len(b)%PacketSize != 0 {
		return fmt.Errorf("%w: packer: write of %d bytes is not a whole number of %d-byte TS packets", ErrTrack, len(b), PacketSize)
	}
	if len(p.buf) > 0 && len(p.buf)+len(b) > MaxMessage {
		if err := p.Flush(); err != nil {
			return err
		}
	}
	for len(b) > 0 {
		n := min(MaxMessage-len(p.buf), len(b))
		p.buf = append(p.buf, b[:n]...)
		b = b[n:]
		if len(p.buf) == MaxMessage {
			if err := p.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Flush sends the pending packets as one message, if there are any. They
// are dropped whether emit succeeds or not.
func (p *Packer) Flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	err := p.emit(p.buf)
	p.buf = p.buf[:0]
	return err
}

// Pending is the number of bytes waiting for the next message.
func (p *Packer) Pending() int { return len(p.buf) }
