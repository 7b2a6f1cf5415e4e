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
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
)

// ListenConfig configures Listen.
type ListenConfig struct {
	// Options: Latency, PBKeyLen and PeerIdleTimeout apply to accepted
	// sockets. Passphrase is used for every caller only when Authorize is
	// nil. StreamID, ConnectTimeout, LocalAddr and Device are ignored.
	Options

	// Authorize runs during the handshake (srt_listen_callback), before the
	// connection is accepted. Return the passphrase the caller must use
	// ("" = none), or an error to refuse; if the error is (or wraps)
	// *RejectError its Code is sent as the rejection reason
	// (srt_setrejectreason), else RejectForbidden (1403).
	//
	// It runs on libsrt's receive thread for this port: while it runs no
	// packet of any connection on this port is processed. Keep it fast (a
	// map lookup, not a network round trip). A panic refuses with 1500.
	Authorize func(streamID string, peer net.Addr) (passphrase string, err error)

	Backlog int // srt_listen backlog; 0 = 64

	// Logger receives refusals (stream id, peer, code, reason). nil = discard.
	// Refusals decided inside libsrt (wrong passphrase) are logged by libsrt
	// itself: route them with SetLogger.
	Logger *slog.Logger
}

// Listener accepts SRT callers on one UDP port.
type Listener struct {
	sock C.SRTSOCKET
	p    *poller
	ent  *pollEntry
	cfg  ListenConfig
	log  *slog.Logger
	addr *net.UDPAddr
	key  uintptr // registry key given to libsrt as the callback's opaque

	done      chan struct{}
	closeOnce sync.Once
	mu        sync.RWMutex // like Conn.opMu
	closed    bool
}

// registry maps the opaque value libsrt hands back to the listen callback
// to its Listener. It plays the part of cgo.Handle (no Go pointer ever goes
// to C), but a lookup after Close returns nil instead of panicking on a
// libsrt thread.
var registry = struct {
	sync.Mutex
	next uintptr
	m    map[uintptr]*Listener
}{m: make(map[uintptr]*Listener)}

func register(l *Listener) uintptr {
	registry.Lock()
	defer registry.Unlock()
	registry.next++
	registry.m[registry.next] = l
	return registry.next
}

func unregister(key uintptr) {
	registry.Lock()
	delete(registry.m, key)
	registry.Unlock()
}

func lookup(key uintptr) *Listener {
	registry.Lock()
	defer registry.Unlock()
	return registry.m[key]
}

func parseListenAddr(addr string) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", portStr)
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("want \"ip:port\" or \":port\", got %q", addr)
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// Listen binds addr (":9000" = all IPv4 addresses, "[::]:9000" = dual
// stack, or "ip:port"; port 0 picks a free port, see Addr) and listens.
func Listen(addr string, cfg ListenConfig) (*Listener, error) {
	if err := cfg.Options.validate(false); err != nil {
		return nil, fmt.Errorf("srt listen %s: %w", addr, err)
	}
	la, err := parseListenAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("srt listen %s: %w", addr, err)
	}
	backlog := cfg.Backlog
	if backlog <= 0 {
		backlog = 64
	}
	l := &Listener{cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}

	p, err := acquire()
	if err != nil {
		return nil, fmt.Errorf("srt listen %s: %w", addr, err)
	}
	var e C.tsrt_err
	enter()
	s := C.tsrt_socket(&e)
	leave()
	if s == -1 {
		release()
		return nil, fmt.Errorf("srt listen %s: %w", addr, errFrom("create_socket", &e))
	}
	fail := func(err error) (*Listener, error) {
		if l.ent != nil {
			p.remove(s)
		}
		if l.key != 0 {
			unregister(l.key)
		}
		closeSock(s)
		release()
		return nil, fmt.Errorf("srt listen %s: %w", addr, err)
	}
	if err := cfg.Options.apply(s, false); err != nil {
		return fail(err)
	}
	if cfg.Authorize == nil && cfg.Passphrase != "" {
		if err := setStr(s, optPassphrase, "SRTO_PASSPHRASE", cfg.Passphrase); err != nil {
			return fail(err)
		}
	}
	if la.Addr().Is6() && la.Addr().IsUnspecified() {
		// libsrt refuses to bind "::" unless SRTO_IPV6ONLY is explicit.
		if err := setInt(s, optIPv6Only, "SRTO_IPV6ONLY", 0); err != nil {
			return fail(err)
		}
	}
	ca := toC(la)
	enter()
	r := C.tsrt_bind(s, &ca, &e)
	leave()
	if r == -1 {
		return fail(errFrom("bind "+la.String(), &e))
	}
	l.sock, l.p = s, p
	l.key = register(l)
	enter()
	r = C.tsrt_listen(s, C.int(backlog), C.uintptr_t(l.key), &e)
	leave()
	if r == -1 {
		return fail(errFrom("listen", &e))
	}
	if l.ent, err = p.add(s, evIn|evErr, nil); err != nil {
		return fail(err)
	}
	var a C.tsrt_addr
	enter()
	r = C.tsrt_sockname(s, &a, &e)
	leave()
	if r == 0 {
		l.addr = fromC(&a)
	} else {
		l.addr = net.UDPAddrFromAddrPort(la)
	}
	return l, nil
}

// Addr is the bound address (*net.UDPAddr), with the real port.
func (l *Listener) Addr() net.Addr { return l.addr }

// Accept waits for the next connection that passed Authorize and the
// handshake. It parks without holding an OS thread. After Close it returns
// an error matching ErrClosed.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("srt accept: %w", err)
		}
		var peer C.tsrt_addr
		var e C.tsrt_err
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return nil, fmt.Errorf("srt accept: %w", ErrClosed)
		}
		enter()
		ns := C.tsrt_accept(l.sock, &peer, &e)
		leave()
		l.mu.RUnlock()
		if ns != -1 {
			return l.wrap(ns, &peer)
		}
		if e.code != codeAsyncRcv {
			return nil, errFrom("accept", &e)
		}
		select {
		case <-l.ent.rd:
		case <-ctx.Done():
			return nil, fmt.Errorf("srt accept: %w", ctx.Err())
		case <-l.done:
			return nil, fmt.Errorf("srt accept: %w", ErrClosed)
		}
	}
}

func (l *Listener) wrap(ns C.SRTSOCKET, peer *C.tsrt_addr) (*Conn, error) {
	p, err := acquire() // count it; libsrt is started
	if err != nil {
		closeSock(ns)
		return nil, fmt.Errorf("srt accept: %w", err)
	}
	var buf [maxStreamID + 1]C.char
	var e C.tsrt_err
	sid := ""
	enter()
	n := C.tsrt_getstr(ns, optStreamID, &buf[0], C.int(len(buf)), &e)
	leave()
	if n > 0 {
		sid = C.GoStringN(&buf[0], n)
	}
	c := newConn(ns, p, sid, fromC(peer))
	if _, err := p.add(ns, evIn|evErr, c); err != nil {
		closeSock(ns)
		release()
		return nil, fmt.Errorf("srt accept: %w", err)
	}
	p.drainNow(c)
	return c, nil
}

// Close stops listening. Connections already accepted stay open;
// handshakes completed but not yet accepted are closed. Idempotent.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.mu.Lock()
		l.closed = true
		l.p.remove(l.sock)
		for { // drain the accept queue: those sockets are ours to close
			var peer C.tsrt_addr
			var e C.tsrt_err
			enter()
			ns := C.tsrt_accept(l.sock, &peer, &e)
			leave()
			if ns == -1 {
				break
			}
			closeSock(ns)
		}
		closeSock(l.sock)
		l.mu.Unlock()
		unregister(l.key)
		release()
	})
	return nil
}

//export goSrtListenCallback
func goSrtListenCallback(key C.uintptr_t, ns C.SRTSOCKET, hsVersion C.int, peer *C.tsrt_addr, streamID *C.char) C.int {
	l := lookup(uintptr(key))
	if l == nil {
		C.tsrt_setrejectreason(ns, RejectDown)
		return -1
	}
	return C.int(l.authorize(ns, fromC(peer), C.GoString(streamID)))
}

// authorize runs on a libsrt thread; it must not panic through C.
func (l *Listener) authorize(ns C.SRTSOCKET, peer *net.UDPAddr, sid string) (ret int) {
	defer func() {
		if r := recover(); r != nil {
			C.tsrt_setrejectreason(ns, RejectInternal)
			l.log.Error("srt: Authorize panicked; refused", "stream_id", sid, "peer", peer.String(), "code", RejectInternal, "panic", fmt.Sprint(r))
			ret = -1
		}
	}()
	if l.cfg.Authorize == nil {
		return 0 // the listener's passphrase, if any, is inherited
	}
	pass, err := l.cfg.Authorize(sid, peer)
	if err != nil {
		code, reason := RejectForbidden, err.Error()
		var re *RejectError
		if errors.As(err, &re) {
			code = re.Code
			if re.Reason != "" {
				reason = re.Reason
			}
		}
		if code < 1000 {
			// libsrt reserves codes below 1000 for itself.
			code = RejectForbidden
		}
		C.tsrt_setrejectreason(ns, C.int(code))
		l.log.Warn("srt: connection refused", "stream_id", sid, "peer", peer.String(),
			"code", code, "code_name", RejectName(code), "reason", reason)
		return -1
	}
	if err := validPassphrase(pass); err != nil {
		C.tsrt_setrejectreason(ns, RejectInternal)
		l.log.Error("srt: Authorize returned a bad passphrase; refused", "stream_id", sid, "peer", peer.String(),
			"code", RejectInternal, "reason", err.Error())
		return -1
	}
	if pass != "" || l.cfg.Passphrase != "" {
		// Ungated: this runs on libsrt's thread (see gate).
		if err := setStrRaw(ns, optPassphrase, "SRTO_PASSPHRASE", pass); err != nil {
			C.tsrt_setrejectreason(ns, RejectInternal)
			l.log.Error("srt: cannot set passphrase; refused", "stream_id", sid, "peer", peer.String(), "err", err)
			return -1
		}
	}
	return 0
}
