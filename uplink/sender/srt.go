package sender

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"tandem/hal/netns"
	"tandem/uplink/media"
	"tandem/uplink/mpegts"
	"tandem/uplink/srt"
	"tandem/uplink/telemetry"
)

// AudioPID is the PID of the audio track in the feed's transport stream.
const AudioPID = 0x100

type srtSession struct {
	conn    *srt.Conn
	mux     *mpegts.Muxer
	timeout time.Duration
	desc    string

	lastACK   int64
	progress  time.Time // last time the peer acknowledged something
	lastWrite time.Time
	lastCheck time.Time // when the last check finished
	last      linkStats

	pack *packing
}

func (s *Sender) dialSRT(ctx context.Context, addr netip.AddrPort) (session, error) {
	opt := srt.Options{
		Latency:        s.cfg.Latency,
		Passphrase:     s.cfg.Passphrase,
		StreamID:       s.target.streamID,
		ConnectTimeout: s.cfg.ConnectTimeout,
		LocalAddr:      s.cfg.LocalAddr,
		Device:         s.cfg.Device,
		// The feed never reads: no thread waits in libsrt for it.
		SendOnly: true,
	}
	var conn *srt.Conn
	err := netns.Do(s.cfg.Netns, func() error {
		var err error
		conn, err = srt.Dial(ctx, addr.String(), opt)
		return err
	})
	if err != nil {
		if errors.Is(err, srt.ErrBadPassphrase) {
			return nil, fmt.Errorf("srt connect to %s refused: wrong or missing passphrase: %w", s.target.display, err)
		}
		return nil, err
	}
	now := time.Now()
	x := &srtSession{conn: conn, timeout: s.cfg.StallTimeout, progress: now}
	x.pack = s.newPacking(x, conn)
	x.mux = mpegts.NewMuxer([]mpegts.Track{
		{PID: AudioPID, Kind: media.KindAudio, Audio: s.cfg.Audio},
		{PID: telemetry.PID, FormatID: mpegts.FormatTandem},
	}, x.pack.packer.Write)
	// Audio only: a reader that joins needs PAT/PMT, but not every 100 ms.
	x.mux.PSIInterval = media.ClockRate / 2
	st := conn.Stats()
	x.lastACK = st.PktRecvACK
	x.desc = fmt.Sprintf("srt %s -> %s as %s", conn.LocalAddr(), conn.RemoteAddr(), s.target.streamID)
	return x, nil
}

// noteWrite dates a write at now.
func (x *srtSession) noteWrite(now time.Time) {
	// Resuming after an idle spell: the stall clock starts now, not at the
	// last acknowledgement before the pause.
	if x.lastWrite.IsZero() || now.Sub(x.lastWrite) > x.timeout {
		x.progress = now
	}
	x.lastWrite = now
}

func (x *srtSession) writeFrame(f media.Frame, more bool) error {
	now := time.Now()
	x.noteWrite(now)
	if err := x.flushStale(now); err != nil {
		return err
	}
	// A message libsrt refuses is counted by the packer's emit and never
	// reaches here.
	if err := x.mux.WriteFrame(AudioPID, f); err != nil {
		return err
	}
	return x.pack.written(now, true, more)
}

func (x *srtSession) writeTelemetry(b []byte, pts int64) error {
	now := time.Now()
	x.noteWrite(now)
	if err := x.mux.WriteData(telemetry.PID, pts, b); err != nil {
		// A report the muxer cannot take is lost alone (a message libsrt
		// refuses never reaches here: the packer's emit counts it).
		if errors.Is(err, mpegts.ErrTrack) {
			return fmt.Errorf("%w: %w", errFrameLost, err)
		}
		return err
	}
	return x.pack.written(now, false, false)
}

// flushStale sends the frames of a burst whose end never came.
func (x *srtSession) flushStale(now time.Time) error {
	if x.pack.stale(now) {
		return x.pack.flush()
	}
	return nil
}

func (x *srtSession) check(now time.Time) (linkStats, error) {
	if err := x.flushStale(now); err != nil {
		return x.last, err
	}
	st := x.conn.Stats()
	x.last = linkStats{rtt: st.RTT, sendLoss: st.PktSendLoss, retrans: st.PktRetrans, messages: st.PktSent - st.PktRetrans}
	if st.Stale {
		return x.last, fmt.Errorf("srt: connection broken (libsrt has no stats for it): %w", srt.ErrConnectionLost)
	}
	if st.PktRecvACK != x.lastACK {
		x.lastACK = st.PktRecvACK
		x.progress = now
		x.lastCheck = time.Now()
		return x.last, nil
	}
	// A check that comes late, or a Stats call that took long, means this
	// process (or libsrt, whose calls serialise on internal locks and were
	// measured freezing for 250 ms while it reaps closed sockets) was not
	// running: ACKs may not have been processed either. Give the link a
	// fresh window instead of blaming it.
	done := time.Now()
	late := !x.lastCheck.IsZero() && done.Sub(x.lastCheck) > freezeThreshold
	x.lastCheck = done
	if late {
		x.progress = now
		return x.last, nil
	}
	if x.lastWrite.After(x.progress) && now.Sub(x.progress) >= x.timeout {
		return x.last, &StallError{Proto: "srt", Silence: now.Sub(x.progress), Timeout: x.timeout}
	}
	return x.last, nil
}

func (x *srtSession) idle(now time.Time) error { return x.flushStale(now) }
func (x *srtSession) stats() linkStats         { return x.last }
func (x *srtSession) failed() <-chan error     { return nil }
func (x *srtSession) describe() string         { return x.desc }
func (x *srtSession) close() {
	x.pack.timer.Stop()
	x.conn.Close()
}
