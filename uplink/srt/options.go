package srt

/*
#include <stdlib.h>
#include "csrt.h"
*/
import "C"

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Options for a caller (Dial) or for accepted sockets (ListenConfig.Options).
type Options struct {
	Latency         time.Duration // SRTO_LATENCY (sets both recv and peer latency); 0 = 120ms
	Passphrase      string        // AES; "" = no encryption; else 10..79 characters
	PBKeyLen        int           // 0 (default 16), 16, 24, 32
	StreamID        string        // SRTO_STREAMID (callers), at most 512 bytes
	ConnectTimeout  time.Duration // SRTO_CONNTIMEO; 0 = 3s
	LocalAddr       string        // caller: bind source "ip" or "ip:port" before connect
	Device          string        // caller: SRTO_BINDTODEVICE (needs root); "" = none
	PeerIdleTimeout time.Duration // SRTO_PEERIDLETIMEO; 0 = libsrt default (5s)
	// UDPBuffer is the UDP send and receive buffer asked of the kernel
	// (SRTO_UDP_SNDBUF/RCVBUF); 0 = 1 MiB. The kernel caps it at
	// net.core.rmem_max/wmem_max (see KernelBufferCap). A listener that
	// serves many callers on its one port needs more than a caller does.
	UDPBuffer int
	// SendOnly (callers) is for a connection that only sends: once
	// connected, the socket leaves the poller. libsrt's epoll wait wakes
	// its thread every 10 ms whatever it waits for, so a process whose
	// sockets all send (the appliance) then has no thread waiting in
	// libsrt at all. ReadMessage fails on such a connection; a broken link
	// shows as the error of the next WriteMessage and in Stats.
	SendOnly bool
}

// libsrt option numbers (srt.h SRT_SOCKOPT).
const (
	optSndSyn       = 1
	optRcvSyn       = 2
	optUDPSndBuf    = 8
	optUDPRcvBuf    = 9
	optLatency      = 23
	optPassphrase   = 26
	optPBKeyLen     = 27
	optConnTimeo    = 36
	optStreamID     = 46
	optPayloadSize  = 49
	optTransType    = 50
	optIPv6Only     = 54
	optPeerIdleTimo = 55
	optBindToDevice = 56
)

const (
	defaultLatency     = 120 * time.Millisecond
	defaultConnTimeout = 3 * time.Second
	maxStreamID        = 512
)

func validPassphrase(p string) error {
	if p != "" && (len(p) < 10 || len(p) > 79) {
		return fmt.Errorf("Passphrase must be 10..79 characters (got %d)", len(p))
	}
	return nil
}

func (o *Options) validate(caller bool) error {
	if err := validPassphrase(o.Passphrase); err != nil {
		return fmt.Errorf("srt: Options.%w", err)
	}
	switch o.PBKeyLen {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("srt: Options.PBKeyLen must be 0, 16, 24 or 32 (got %d)", o.PBKeyLen)
	}
	if o.Latency < 0 || o.Latency > time.Hour {
		return fmt.Errorf("srt: Options.Latency out of range: %v", o.Latency)
	}
	if o.ConnectTimeout < 0 || o.ConnectTimeout > time.Hour {
		return fmt.Errorf("srt: Options.ConnectTimeout out of range: %v", o.ConnectTimeout)
	}
	if o.PeerIdleTimeout < 0 || o.PeerIdleTimeout > time.Hour {
		return fmt.Errorf("srt: Options.PeerIdleTimeout out of range: %v", o.PeerIdleTimeout)
	}
	if o.UDPBuffer < 0 || o.UDPBuffer > 1<<30 {
		return fmt.Errorf("srt: Options.UDPBuffer out of range: %d bytes (0..1 GiB)", o.UDPBuffer)
	}
	if len(o.StreamID) > maxStreamID {
		return fmt.Errorf("srt: Options.StreamID longer than %d bytes", maxStreamID)
	}
	if !caller {
		return nil
	}
	if o.LocalAddr != "" {
		if _, err := parseLocal(o.LocalAddr); err != nil {
			return err
		}
	}
	return nil
}

func (o *Options) latency() time.Duration {
	if o.Latency == 0 {
		return defaultLatency
	}
	return o.Latency
}

func (o *Options) connectTimeout() time.Duration {
	if o.ConnectTimeout == 0 {
		return defaultConnTimeout
	}
	return o.ConnectTimeout
}

// parseLocal parses Options.LocalAddr: "ip" or "ip:port" (no host names).
func parseLocal(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("srt: Options.LocalAddr %q: want \"ip\" or \"ip:port\"", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 0), nil
}

func setInt(s C.SRTSOCKET, opt int, name string, v int) error {
	var e C.tsrt_err
	enter()
	r := C.tsrt_setint(s, C.int(opt), C.int(v), &e)
	leave()
	if r == -1 {
		return errFrom("setsockflag "+name, &e)
	}
	return nil
}

func setStr(s C.SRTSOCKET, opt int, name string, v string) error {
	enter()
	defer leave()
	return setStrRaw(s, opt, name, v)
}

// setStrRaw is setStr without the gate, for libsrt's callback threads.
func setStrRaw(s C.SRTSOCKET, opt int, name string, v string) error {
	cs, n := cString(v)
	defer freeC(cs)
	var e C.tsrt_err
	if C.tsrt_setstr(s, C.int(opt), cs, n, &e) == -1 {
		return errFrom("setsockflag "+name, &e)
	}
	return nil
}

// defaultUDPBuffer is the UDP socket buffer size asked for (see apply).
const defaultUDPBuffer = 1 << 20

// KernelBufferCap is the largest UDP receive buffer the kernel grants
// without privileges (net.core.rmem_max): an asked-for UDPBuffer above it
// is silently capped.
func KernelBufferCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		return 0, fmt.Errorf("read the kernel's UDP buffer cap: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read the kernel's UDP buffer cap: %w", err)
	}
	return n, nil
}

func (o *Options) udpBuffer() int {
	if o.UDPBuffer > 0 {
		return o.UDPBuffer
	}
	return defaultUDPBuffer
}

func msec(d time.Duration) int {
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// apply sets the options on a fresh socket. SRTO_TRANSTYPE goes first: it
// resets the other options to the live-mode defaults.
func (o *Options) apply(s C.SRTSOCKET, caller bool) error {
	steps := []func() error{
		func() error { return setInt(s, optTransType, "SRTO_TRANSTYPE", 0 /* SRTT_LIVE */) },
		func() error { return setInt(s, optPayloadSize, "SRTO_PAYLOADSIZE", MaxMessageSize) },
		// Non-blocking: reads, accept and connect go through the poller;
		// a write never blocks (a full send buffer is ErrSendBufferFull).
		func() error { return setInt(s, optRcvSyn, "SRTO_RCVSYN", 0) },
		func() error { return setInt(s, optSndSyn, "SRTO_SNDSYN", 0) },
		func() error { return setInt(s, optLatency, "SRTO_LATENCY", msec(o.latency())) },
		// libsrt sends control packets (ACK, NAK) synchronously from its
		// receive thread on the port's one UDP socket. With its default
		// 64 KiB send buffer, packets queued in the kernel for a peer whose
		// path just died (an unresolved neighbour holds up to
		// unres_qlen_bytes, 208 KiB) fill the buffer, sendmsg blocks for
		// up to a second, and every connection on the port stops being
		// read: measured as an 0.83 s sendmsg and a hole on the other link.
		// A buffer larger than the neighbour queue (the kernel caps and
		// doubles it) lets the kernel drop instead.
		func() error { return setInt(s, optUDPSndBuf, "SRTO_UDP_SNDBUF", o.udpBuffer()) },
		func() error { return setInt(s, optUDPRcvBuf, "SRTO_UDP_RCVBUF", o.udpBuffer()) },
	}
	if o.PBKeyLen != 0 {
		steps = append(steps, func() error { return setInt(s, optPBKeyLen, "SRTO_PBKEYLEN", o.PBKeyLen) })
	}
	if o.PeerIdleTimeout > 0 {
		steps = append(steps, func() error {
			return setInt(s, optPeerIdleTimo, "SRTO_PEERIDLETIMEO", msec(o.PeerIdleTimeout))
		})
	}
	if caller {
		steps = append(steps, func() error {
			return setInt(s, optConnTimeo, "SRTO_CONNTIMEO", msec(o.connectTimeout()))
		})
		if o.Passphrase != "" {
			steps = append(steps, func() error { return setStr(s, optPassphrase, "SRTO_PASSPHRASE", o.Passphrase) })
		}
		if o.StreamID != "" {
			steps = append(steps, func() error { return setStr(s, optStreamID, "SRTO_STREAMID", o.StreamID) })
		}
		if o.Device != "" {
			steps = append(steps, func() error { return setStr(s, optBindToDevice, "SRTO_BINDTODEVICE", o.Device) })
		}
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}
