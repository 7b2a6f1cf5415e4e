package srt

/*
#include <stdlib.h>
#include "csrt.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Socket states (srt.h SRT_SOCKSTATUS).
const (
	stInit       = 1
	stOpened     = 2
	stListening  = 3
	stConnecting = 4
	stConnected  = 5
	stBroken     = 6
	stClosing    = 7
	stClosed     = 8
	stNonexist   = 9
)

// Conn is one SRT live-mode connection (caller or accepted). ReadMessage,
// WriteMessage, Stats and Close may be called from different goroutines;
// use one reader at a time.
type Conn struct {
	sock     C.SRTSOCKET
	p        *poller
	streamID string
	local    *net.UDPAddr
	remote   *net.UDPAddr
	sendOnly bool // Options.SendOnly: not in the poller, never read

	done      chan struct{} // closed by Close: releases parked readers
	closing   atomic.Bool   // set by Close before done is closed
	closeOnce sync.Once

	rx rxQueue // messages the poller drained, waiting for ReadMessage

	// opMu: every libsrt call on sock from a method (WriteMessage, Stats)
	// holds it for reading (they are all non-blocking, so short); Close
	// holds it for writing around srt_close, so no call ever races with or
	// follows srt_close on this socket id. The poller's reads are kept
	// apart by poller.mu instead: Close removes the socket's entry first.
	opMu   sync.RWMutex
	closed bool

	statsMu   sync.Mutex
	last      Stats
	haveStats bool
}

func toC(ap netip.AddrPort) C.tsrt_addr {
	var a C.tsrt_addr
	ip := ap.Addr().Unmap()
	a.port = C.int(ap.Port())
	if ip.Is4() {
		a.family = 4
		b := ip.As4()
		for i := range b {
			a.ip[i] = C.uint8_t(b[i])
		}
	} else {
		a.family = 6
		b := ip.As16()
		for i := range b {
			a.ip[i] = C.uint8_t(b[i])
		}
	}
	return a
}

func fromC(a *C.tsrt_addr) *net.UDPAddr {
	switch a.family {
	case 4:
		ip := make(net.IP, 4)
		for i := range ip {
			ip[i] = byte(a.ip[i])
		}
		return &net.UDPAddr{IP: ip, Port: int(a.port)}
	case 6:
		ip := make(net.IP, 16)
		for i := range ip {
			ip[i] = byte(a.ip[i])
		}
		return &net.UDPAddr{IP: ip, Port: int(a.port)}
	}
	return &net.UDPAddr{}
}

func resolve(ctx context.Context, addr string, local netip.AddrPort, haveLocal bool) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", portStr)
	}
	if host == "" {
		return netip.AddrPort{}, errors.New("missing host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
	}
	network := "ip"
	if haveLocal {
		if local.Addr().Is4() {
			network = "ip4"
		} else {
			network = "ip6"
		}
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, network, host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("no address for %q", host)
	}
	pick := ips[0]
	for _, ip := range ips { // prefer IPv4, like most SRT tools
		if ip.Unmap().Is4() {
			pick = ip
			break
		}
	}
	return netip.AddrPortFrom(pick.Unmap(), uint16(port)), nil
}

// Dial connects to a listener at addr ("host:port") in live mode. The
// connect is non-blocking and completes through the poller; cancelling ctx
// aborts it at once. A listener's refusal is an *Error with Reject set
// (errors.Is(err, ErrRejected); a passphrase mismatch also matches
// ErrBadPassphrase); a connect timeout matches ErrTimeout.
func Dial(ctx context.Context, addr string, opt Options) (*Conn, error) {
	if err := opt.validate(true); err != nil {
		return nil, fmt.Errorf("srt dial %s: %w", addr, err)
	}
	var local netip.AddrPort
	haveLocal := opt.LocalAddr != ""
	if haveLocal {
		local, _ = parseLocal(opt.LocalAddr) // validated
	}
	raddr, err := resolve(ctx, addr, local, haveLocal)
	if err != nil {
		return nil, fmt.Errorf("srt dial %s: %w", addr, err)
	}
	if haveLocal && local.Addr().Is4() != raddr.Addr().Is4() {
		return nil, fmt.Errorf("srt dial %s: Options.LocalAddr %s is not the same address family as %s", addr, opt.LocalAddr, raddr)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("srt dial %s: %w", addr, err)
	}

	p, err := acquire()
	if err != nil {
		return nil, fmt.Errorf("srt dial %s: %w", addr, err)
	}
	var e C.tsrt_err
	enter()
	s := C.tsrt_socket(&e)
	leave()
	if s == -1 {
		release()
		return nil, fmt.Errorf("srt dial %s: %w", addr, errFrom("create_socket", &e))
	}
	var ent *pollEntry
	fail := func(err error) (*Conn, error) {
		if ent != nil {
			p.remove(s)
		}
		closeSock(s)
		release()
		return nil, err
	}
	if err := opt.apply(s, true); err != nil {
		return fail(fmt.Errorf("srt dial %s: %w", addr, err))
	}
	if haveLocal {
		la := toC(local)
		enter()
		r := C.tsrt_bind(s, &la, &e)
		leave()
		if r == -1 {
			return fail(fmt.Errorf("srt dial %s: %w", addr, errFrom("bind "+local.String(), &e)))
		}
	}
	// Subscribe OUT (connected) and ERR (failed) before connecting.
	if ent, err = p.add(s, evOut|evErr, nil); err != nil {
		return fail(fmt.Errorf("srt dial %s: %w", addr, err))
	}
	op := "connect " + raddr.String()
	ra := toC(raddr)
	enter()
	r := C.tsrt_connect(s, &ra, &e)
	leave()
	if r == -1 {
		return fail(errFrom(op, &e))
	}

	// Backstop in case libsrt never reports the outcome.
	backstop := time.NewTimer(opt.connectTimeout() + 2*time.Second)
	defer backstop.Stop()
wait:
	for {
		select {
		case <-ent.wr:
		case <-ent.rd:
		case <-ctx.Done():
			return fail(fmt.Errorf("srt dial %s: %w", addr, ctx.Err()))
		case <-backstop.C:
			return fail(&Error{Op: op, Code: codeNoServer, Text: strerror(codeNoServer)})
		}
		enter()
		st := int(C.tsrt_sockstate(s))
		leave()
		switch st {
		case stInit, stOpened, stConnecting:
			continue // spurious or stale wake-up
		case stConnected:
			break wait
		default:
			enter()
			reason := int(C.tsrt_rejectreason(s))
			leave()
			code := codeConnRej
			switch reason {
			case RejectTimeoutHS:
				code = codeNoServer
			case 0: // SRT_REJ_UNKNOWN
				code = codeConnSetup
			}
			return fail(&Error{Op: op, Code: code, Text: strerror(code), Reject: reason})
		}
	}
	c := newConn(s, p, opt.StreamID, fromC(&ra))
	if opt.SendOnly {
		c.sendOnly = true
		p.remove(s)
		return c, nil
	}
	// Connected: from now on only IN and ERR matter. OUT would fire on
	// every ACK that frees send-buffer space. The entry becomes the
	// Conn's first, so the first IN event is drained into its queue.
	p.setConn(s, c)
	if err := p.update(s, evIn|evErr); err != nil {
		return fail(fmt.Errorf("srt dial %s: %w", addr, err))
	}
	p.drainNow(c)
	return c, nil
}

func closeSock(s C.SRTSOCKET) {
	enter()
	C.tsrt_close(s)
	leave()
}

// newConn wraps a connected socket. The caller makes it its poller
// entry's conn before subscribing IN.
func newConn(s C.SRTSOCKET, p *poller, streamID string, remote *net.UDPAddr) *Conn {
	c := &Conn{sock: s, p: p, streamID: streamID, remote: remote, done: make(chan struct{})}
	c.rx.init()
	var a C.tsrt_addr
	var e C.tsrt_err
	enter()
	r := C.tsrt_sockname(s, &a, &e)
	leave()
	if r == 0 {
		c.local = fromC(&a)
	} else {
		c.local = &net.UDPAddr{}
	}
	if c.remote == nil {
		enter()
		r = C.tsrt_peername(s, &a, &e)
		leave()
		if r == 0 {
			c.remote = fromC(&a)
		} else {
			c.remote = &net.UDPAddr{}
		}
	}
	return c
}

// ReadMessage receives one live-mode message into buf (use at least
// ReadBufferSize bytes). The poller has already read it from libsrt: this
// takes the oldest queued message and makes no libsrt call. When none is
// queued it parks the goroutine until the poller queues one, ctx is done or
// the Conn is closed; no OS thread is held meanwhile. A buf shorter than the
// message is an error (SRT error 5009, as libsrt reports it) and the message
// stays queued. When the peer goes, the messages read before are returned
// first, then an error matching ErrConnectionLost (libsrt reports a clean
// close by the peer and a broken link alike: SRT error 2001); after Close it
// matches ErrClosed. A reader that falls more than 1024 messages behind loses
// the oldest ones (see Stats.PktRecvDrop).
func (c *Conn) ReadMessage(ctx context.Context, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, errors.New("srt read: empty buffer")
	}
	if c.sendOnly {
		return 0, errors.New("srt read: the connection was dialled with Options.SendOnly")
	}
	for {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("srt read: %w", err)
		}
		if c.closing.Load() {
			return 0, fmt.Errorf("srt read: %w", ErrClosed)
		}
		n, code, ok := c.rx.pop(buf)
		if ok {
			if code == codeInvalMsgAPI {
				e := errCode("read", code)
				e.Text = fmt.Sprintf("buffer of %d bytes is shorter than the message of %d bytes (use ReadBufferSize); the message stays queued", len(buf), n)
				return 0, e
			}
			return n, nil
		}
		if code != 0 {
			return 0, errCode("read", code)
		}
		// pop registered us as waiting: the poller sends a token on
		// rx.wake with the next message or error.
		select {
		case <-c.rx.wake:
		case <-ctx.Done():
			return 0, fmt.Errorf("srt read: %w", ctx.Err())
		case <-c.done:
			return 0, fmt.Errorf("srt read: %w", ErrClosed)
		}
	}
}

// WriteMessage sends b as one live-mode message (len(b) <= MaxMessageSize).
// It never blocks: if libsrt's send buffer is full the message is dropped
// and the error matches ErrSendBufferFull.
func (c *Conn) WriteMessage(b []byte) error {
	if len(b) == 0 {
		return errors.New("srt write: empty message")
	}
	if len(b) > MaxMessageSize {
		return fmt.Errorf("srt write: message of %d bytes exceeds the live-mode payload size %d", len(b), MaxMessageSize)
	}
	c.opMu.RLock()
	if c.closed {
		c.opMu.RUnlock()
		return fmt.Errorf("srt write: %w", ErrClosed)
	}
	enter()
	n := int(C.tsrt_send(c.sock, (*C.char)(unsafe.Pointer(&b[0])), C.int(len(b))))
	leave()
	c.opMu.RUnlock()
	if n < 0 {
		if -n == codeInvSock {
			// Not closed by us (checked above): libsrt's GC reaped the
			// socket after the link broke, which it does to a socket no
			// reader drains (SendOnly) within seconds.
			e := errCode("write", codeConnLost)
			e.Text += " (libsrt has already released the broken socket)"
			return e
		}
		return errCode("write", -n)
	}
	return nil
}

// StreamID is the stream id the caller sent (SRTO_STREAMID).
func (c *Conn) StreamID() string { return c.streamID }

// RemoteAddr is the peer's address (*net.UDPAddr).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the local address (*net.UDPAddr).
func (c *Conn) LocalAddr() net.Addr { return c.local }

// Close closes the connection. It is idempotent and releases a parked
// ReadMessage at once. The last stats sample stays available.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		close(c.done)
		c.sampleStats() // final sample while the socket still exists
		c.opMu.Lock()
		c.closed = true
		c.p.remove(c.sock)
		closeSock(c.sock)
		c.opMu.Unlock()
		c.rx.reset()
		release()
	})
	return nil
}
