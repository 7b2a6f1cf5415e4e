package sender

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tandem/hal/netns"
	"tandem/uplink/adts"
	"tandem/uplink/media"
)

// Icecast timing.
const (
	// expectWait is how long to wait for the answer to "Expect:
	// 100-continue" before sending anyway (RFC 9110 §10.1.1).
	expectWait = 2 * time.Second
	// icecastSendBuffer is the socket's send buffer. Linux starts a TCP
	// socket at 16 KiB, charged with each small segment's overhead: a
	// stream of ~400-byte frames fills it ~300 ms after the peer stops
	// acknowledging, and a blocked write would keep the stall check from
	// running. 256 KiB (~10 s of 128 kb/s) lets the check act at
	// StallTimeout; a write blocked for StallTimeout anyway is a stall too.
	icecastSendBuffer = 256 << 10
)

// Icecast 2.4 takes a source by HTTP PUT (or the legacy SOURCE method). Its
// quirks, which is why this is not net/http's client:
//
//   - Given "Expect: 100-continue" it answers "HTTP/1.1 100 Continue" and
//     then never sends a final response: the body (the stream) runs until
//     the source hangs up. net/http's client would wait for that final
//     response forever. Without Expect it answers "HTTP/1.0 200 OK" at once.
//   - Authentication, a busy mount and a refused content type are answered
//     before the 100, with a status line (401, 403) and a short body.
//   - There is no Content-Length and no chunked encoding: the body is raw
//     ADTS until the connection closes.
type icecastSession struct {
	conn    *net.TCPConn
	audio   media.AudioConfig
	timeout time.Duration
	desc    string
	buf     []byte

	errc       chan error // the reader's verdict: refused, closed, broken
	readerDone chan struct{}

	progress  time.Time
	lastWrite time.Time
	last      linkStats
}

func (s *Sender) dialIcecast(ctx context.Context, addr netip.AddrPort) (session, error) {
	t := s.target
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout}
	control := []func(fd int) error{func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, icecastSendBuffer)
	}}
	if s.cfg.LocalAddr != "" {
		la, _ := parseLocal(s.cfg.LocalAddr)
		d.LocalAddr = net.TCPAddrFromAddrPort(la)
	}
	if dev := s.cfg.Device; dev != "" {
		control = append(control, func(fd int) error {
			if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev); err != nil {
				return fmt.Errorf("SO_BINDTODEVICE %s: %w", dev, err)
			}
			return nil
		})
	}
	d.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, f := range control {
				if serr = f(int(fd)); serr != nil {
					return
				}
			}
		})
		if err == nil {
			err = serr
		}
		return err
	}
	var nc net.Conn
	err := netns.Do(s.cfg.Netns, func() error {
		var err error
		nc, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("icecast connect %s: %w", t.hostPort(), err)
	}
	conn := nc.(*net.TCPConn)

	name := s.cfg.Name
	if name == "" {
		name = strings.TrimSuffix(strings.TrimPrefix(t.mount, "/"), ".aac")
	}
	clean := strings.NewReplacer("\r", " ", "\n", " ").Replace
	var req strings.Builder
	fmt.Fprintf(&req, "PUT %s HTTP/1.1\r\n", t.mount)
	fmt.Fprintf(&req, "Host: %s\r\n", t.hostPort())
	fmt.Fprintf(&req, "Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(t.user+":"+t.password)))
	req.WriteString("User-Agent: tandem-sender\r\n")
	req.WriteString("Content-Type: audio/aac\r\n")
	req.WriteString("Ice-Public: 0\r\n")
	fmt.Fprintf(&req, "Ice-Name: %s\r\n", clean(name))
	fmt.Fprintf(&req, "Ice-Audio-Info: samplerate=%d;channels=%d\r\n", s.cfg.Audio.SampleRate, s.cfg.Audio.Channels)
	req.WriteString("Expect: 100-continue\r\n\r\n")
	conn.SetWriteDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	if _, err := io.WriteString(conn, req.String()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("icecast PUT %s on %s: send request: %w", t.mount, t.hostPort(), err)
	}

	x := &icecastSession{
		conn: conn, audio: s.cfg.Audio, timeout: s.cfg.StallTimeout,
		errc: make(chan error, 1), readerDone: make(chan struct{}),
		desc: fmt.Sprintf("icecast %s -> %s PUT %s", conn.LocalAddr(), conn.RemoteAddr(), t.mount),
	}
	accepted := make(chan int, 1)
	go x.read(t, accepted)
	timer := time.NewTimer(expectWait)
	defer timer.Stop()
	select {
	case code := <-accepted:
		s.log.Debug("icecast accepted the source", "status", code)
	case err := <-x.errc:
		x.close()
		return nil, err
	case <-timer.C:
		// No answer to Expect: send anyway; a late refusal still ends the
		// session through errc.
		s.log.Debug("icecast did not answer Expect: 100-continue; sending anyway")
	case <-ctx.Done():
		x.close()
		return nil, ctx.Err()
	}
	x.progress = time.Now()
	return x, nil
}

// read reads the server's answer, reports it, then waits for the connection
// to end (Icecast sends nothing more) and reports that.
func (x *icecastSession) read(t target, accepted chan<- int) {
	defer close(x.readerDone)
	br := bufio.NewReader(x.conn)
	where := fmt.Sprintf("icecast PUT %s on %s", t.mount, t.hostPort())
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		x.errc <- fmt.Errorf("%s: reading the answer: %w", where, describeEOF(err))
		return
	}
	if resp.StatusCode != http.StatusContinue && resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		msg := strings.Join(strings.Fields(string(body)), " ")
		if msg != "" {
			msg = ": " + msg
		}
		x.errc <- fmt.Errorf("%s: refused: HTTP %s%s", where, resp.Status, msg)
		return
	}
	accepted <- resp.StatusCode
	// Icecast sends nothing after accepting; anything else is discarded.
	buf := make([]byte, 512)
	for err == nil {
		_, err = br.Read(buf)
	}
	x.errc <- fmt.Errorf("%s: %w", where, describeEOF(err))
}

func describeEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("server closed the connection: %w", err)
	}
	return err
}

func (x *icecastSession) idle(time.Time) error { return nil }

func (x *icecastSession) writeFrame(f media.Frame, _ bool) error {
	var err error
	x.buf, err = adts.AppendFrame(x.buf[:0], x.audio, f.Data)
	if err != nil {
		return fmt.Errorf("%w: %w", errFrameLost, err)
	}
	now := time.Now()
	if x.lastWrite.IsZero() || now.Sub(x.lastWrite) > x.timeout {
		x.progress = now
	}
	x.lastWrite = now
	x.conn.SetWriteDeadline(now.Add(x.timeout))
	if _, err := x.conn.Write(x.buf); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return &StallError{Proto: "icecast (send buffer full)", Silence: time.Since(x.progress), Timeout: x.timeout}
		}
		return fmt.Errorf("icecast write: %w", err)
	}
	return nil
}

func (x *icecastSession) writeTelemetry([]byte, int64) error { return nil }

// check watches the kernel's TCP ACK clock: data unacknowledged and no ACK
// for StallTimeout while writing is a stall, as with SRT.
func (x *icecastSession) check(now time.Time) (linkStats, error) {
	raw, err := x.conn.SyscallConn()
	if err != nil {
		return x.last, nil
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return x.last, nil
	}
	x.last = linkStats{rtt: time.Duration(info.Rtt) * time.Microsecond, retrans: int64(info.Total_retrans)}
	// The kernel keeps the ACK clock while this process sleeps, so a late
	// check is no reason for doubt here (unlike libsrt, see srtSession).
	if lastAck := now.Add(-time.Duration(info.Last_ack_recv) * time.Millisecond); lastAck.After(x.progress) {
		x.progress = lastAck
	}
	// Data waiting: in flight and unacknowledged, or not even sent (a local
	// drop, e.g. a down link's qdisc or an egress filter, keeps TCP from
	// sending at all: then nothing is in flight and only the unsent
	// bytes show it).
	waiting := info.Unacked > 0 || info.Notsent_bytes > 0
	if waiting && x.lastWrite.After(x.progress) && now.Sub(x.progress) >= x.timeout {
		return x.last, &StallError{Proto: "icecast", Silence: now.Sub(x.progress), Timeout: x.timeout}
	}
	return x.last, nil
}

func (x *icecastSession) stats() linkStats     { return x.last }
func (x *icecastSession) failed() <-chan error { return x.errc }
func (x *icecastSession) describe() string     { return x.desc }

func (x *icecastSession) close() {
	x.conn.Close()
	<-x.readerDone
}
