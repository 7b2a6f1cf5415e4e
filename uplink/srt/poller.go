package srt

/*
#include <stdlib.h>
#include "csrt.h"
*/
import "C"

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// srt_epoll event bits (srt.h SRT_EPOLL_OPT).
const (
	evIn  = 0x1
	evOut = 0x4
	evErr = 0x8
	evET  = -1 << 31 // SRT_EPOLL_ET, 1u<<31 as a C int
)

const (
	pollBatch   = 256                   // events taken per srt_epoll_uwait
	pollTick    = time.Second           // stats refresh and safety-net drain; also bounds how long stop() waits
	pollBackoff = 20 * time.Millisecond // after an unexpected wait error

	// The drain buffer: messages read in one C call, packed.
	drainBytes = 192 << 10
	drainMsgs  = 512
)

// pollEntry is one socket's link to the poller. The poller never blocks on
// it: rd and wr hold at most one pending wake-up token each.
type pollEntry struct {
	rd   chan struct{} // a connection to accept (listeners), or queued messages or an error (Conn)
	wr   chan struct{} // OUT or ERR: connect finished (or failed)
	conn *Conn         // set before IN is subscribed: the poller drains it; nil for listeners and dialling sockets
	mask int           // subscribed events (guarded by poller.mu)
	gone bool          // unsubscribed after ERR (guarded by poller.mu)
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// poller is the package's single srt_epoll set and the one goroutine that
// waits on it. See doc.go for the threading model.
type poller struct {
	eid C.int
	// mu guards entries and the drain buffer. Every drain runs under mu
	// and only on sockets still in entries, and Conn.Close removes its
	// entry (under mu) before srt_close: no read ever follows srt_close.
	mu      sync.Mutex
	entries map[C.SRTSOCKET]*pollEntry
	quit    atomic.Bool
	done    chan struct{}
	// wake rouses the poller parked with no socket to wait for (a token
	// from add or stop).
	wake chan struct{}

	// The drain buffer (C memory, so libsrt writes into it directly).
	dr    []C.tsrt_drain
	dbuf  []byte
	dlens []C.int
	dconn []*Conn // dconn[i] owns dr[i]
	dmem  [3]unsafe.Pointer

	// Diagnostics (tests): waits in libsrt, events dispatched, safety-net
	// drains, safety-net drains that found data (an upper bound on lost
	// edges: a real event racing with the tick also counts), messages
	// drained, drain calls, sockets unsubscribed after ERR, and events
	// carrying bits we did not subscribe to.
	waits     atomic.Int64
	events    atomic.Int64
	pokes     atomic.Int64
	pokeHits  atomic.Int64
	msgs      atomic.Int64
	drains    atomic.Int64
	waitFails atomic.Int64
	errDrops  atomic.Int64
	strays    atomic.Int64
}

// safetyNet enables the once-a-tick drain of every connection. Tests turn
// it off to prove that no edge is lost without it.
var safetyNet atomic.Bool

func init() { safetyNet.Store(true) }

func startPoller() (*poller, error) {
	var e C.tsrt_err
	eid := C.tsrt_epoll_create(&e)
	if eid == -1 {
		return nil, errFrom("epoll_create", &e)
	}
	p := &poller{
		eid:     eid,
		entries: make(map[C.SRTSOCKET]*pollEntry),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
	p.dmem[0] = C.malloc(C.size_t(unsafe.Sizeof(C.tsrt_drain{})) * pollBatch)
	p.dmem[1] = C.malloc(drainBytes)
	p.dmem[2] = C.malloc(C.size_t(unsafe.Sizeof(C.int(0))) * drainMsgs)
	p.dr = unsafe.Slice((*C.tsrt_drain)(p.dmem[0]), pollBatch)
	p.dbuf = unsafe.Slice((*byte)(p.dmem[1]), drainBytes)
	p.dlens = unsafe.Slice((*C.int)(p.dmem[2]), drainMsgs)
	p.dconn = make([]*Conn, 0, pollBatch)
	go p.run()
	return p, nil
}

// add subscribes s, edge-triggered, for events (evIn/evOut/evErr). A
// non-nil c is a connection: the poller drains it into c's queue.
func (p *poller) add(s C.SRTSOCKET, events int, c *Conn) (*pollEntry, error) {
	ent := &pollEntry{rd: make(chan struct{}, 1), wr: make(chan struct{}, 1), mask: events, conn: c}
	// The entry exists before the subscription, so the first event finds it.
	p.mu.Lock()
	p.entries[s] = ent
	p.mu.Unlock()
	notify(p.wake)
	var e C.tsrt_err
	enter()
	r := C.tsrt_epoll_add(p.eid, s, C.int(events|evET), &e)
	leave()
	if r == -1 {
		p.mu.Lock()
		delete(p.entries, s)
		p.mu.Unlock()
		return nil, errFrom("epoll_add_usock", &e)
	}
	return ent, nil
}

// update changes the subscription of s (still edge-triggered). Mask and
// subscription change together under p.mu, so the poller's repair of stray
// bits never re-applies a stale mask.
func (p *poller) update(s C.SRTSOCKET, events int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ent := p.entries[s]
	if ent != nil {
		ent.mask = events
		if ent.gone {
			return nil // broken meanwhile: stays unsubscribed, calls fail at once
		}
	}
	var e C.tsrt_err
	enter()
	r := C.tsrt_epoll_update(p.eid, s, C.int(events|evET), &e)
	leave()
	if r == -1 {
		return errFrom("epoll_update_usock", &e)
	}
	return nil
}

// setConn makes the entry of s a connection's (before IN is subscribed).
func (p *poller) setConn(s C.SRTSOCKET, c *Conn) {
	p.mu.Lock()
	if ent := p.entries[s]; ent != nil {
		ent.conn = c
	}
	p.mu.Unlock()
}

// drainNow drains c once from the calling goroutine, right after c became
// its entry's conn: anything that became ready before IN was subscribed is
// queued without waiting for an event. If the socket broke before (an ERR
// the poller handled while the entry had no conn yet, so it is gone and
// gets no more events), this read fails and queues the error.
func (p *poller) drainNow(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ent := p.entries[c.sock]; ent == nil || ent.conn != c {
		return
	}
	p.dconn = append(p.dconn[:0], c)
	enter()
	p.drain(true)
	leave()
}

func (p *poller) remove(s C.SRTSOCKET) {
	enter()
	C.tsrt_epoll_remove(p.eid, s)
	leave()
	p.mu.Lock()
	delete(p.entries, s)
	p.mu.Unlock()
}

// stop ends the poller goroutine (within pollTick) and releases the epoll
// set. Only called by Cleanup with no socket open.
func (p *poller) stop() {
	p.quit.Store(true)
	notify(p.wake)
	<-p.done
	C.tsrt_epoll_release(p.eid)
	for _, m := range p.dmem {
		C.free(m)
	}
}

func (p *poller) run() {
	defer close(p.done)
	size := C.size_t(unsafe.Sizeof(C.SRT_EPOLL_EVENT{})) * pollBatch
	mem := C.malloc(size)
	defer C.free(mem)
	evs := unsafe.Slice((*C.SRT_EPOLL_EVENT)(mem), pollBatch)
	var gone, strays []C.SRTSOCKET
	next := time.Now().Add(pollTick)
	for !p.quit.Load() {
		// With nothing subscribed (no socket, or only SendOnly ones) the
		// poller parks in Go: libsrt's epoll wait would wake its thread
		// every 10 ms for nothing.
		p.mu.Lock()
		idle := len(p.entries) == 0
		p.mu.Unlock()
		if idle {
			<-p.wake
			next = time.Now().Add(pollTick)
			continue
		}
		// The only place a thread blocks in libsrt for this package. It
		// waits until the next tick, not less: Go's sysmon takes the P
		// back from a cgo call blocked for more than 10 ms and then polls
		// every 20 µs for a millisecond before backing off again. With a
		// 100 ms wait that was 10 times a second: about 600 wakeups a
		// second on an idle appliance, a third of its CPU.
		wait := min(max(time.Until(next), time.Millisecond), pollTick)
		p.waits.Add(1)
		n := int(C.tsrt_epoll_wait(p.eid, &evs[0], pollBatch, C.int64_t(wait/time.Millisecond)))
		// srt_epoll_uwait returns how many sockets are ready, which can
		// exceed the entries it filled: the rest come on the next wait.
		n = min(n, pollBatch)
		if n < 0 {
			// Should not happen (ENABLE_EMPTY is set); never spin on it.
			p.waitFails.Add(1)
			time.Sleep(pollBackoff)
		} else if n > 0 {
			p.events.Add(int64(n))
			gone, strays = gone[:0], strays[:0]
			p.mu.Lock()
			p.dconn = p.dconn[:0]
			for i := 0; i < n; i++ {
				s := evs[i].fd
				ent := p.entries[s]
				if ent == nil {
					continue // removed meanwhile
				}
				ev := int(evs[i].events)
				if ev&(evIn|evErr) != 0 {
					if ent.conn != nil && !ent.gone {
						// Read everything now, in one C call for all
						// ready sockets; the reader wakes to a queue.
						p.dconn = append(p.dconn, ent.conn)
					} else {
						notify(ent.rd)
					}
				}
				if ev&(evOut|evErr) != 0 {
					notify(ent.wr)
				}
				switch {
				case ent.gone:
				case ev&evErr != 0:
					// Broken (or failed to connect). libsrt 1.5.1 then
					// posts IN|OUT|ERR regardless of the subscription;
					// edge-triggering clears only subscribed bits, so an
					// unsubscribed OUT would be reported on every wait
					// from now on: a busy loop. A broken socket needs no
					// more events (every call on it fails at once), so
					// unsubscribe it. Its last messages and its error are
					// drained above.
					ent.gone = true
					gone = append(gone, s)
				case ev&^ent.mask != 0:
					// Bits we never asked for would stick the same way:
					// re-applying the subscription strips them.
					strays = append(strays, s)
				}
			}
			if len(p.dconn) > 0 {
				p.drain(false)
			}
			p.mu.Unlock()
			for _, s := range gone {
				// Final and idempotent (a racing Close removes it too);
				// update() no longer touches a gone entry.
				p.errDrops.Add(1)
				enter()
				C.tsrt_epoll_remove(p.eid, s)
				leave()
			}
			for _, s := range strays {
				p.strays.Add(1)
				p.repair(s)
			}
		}
		if now := time.Now(); now.After(next) {
			next = now.Add(pollTick)
			p.tick()
		}
	}
}

// drain reads every ready message of the connections in p.dconn into their
// queues, in as few C calls as the buffer allows (one, normally), and wakes
// their readers. check asks libsrt before the first read of each socket
// (cheap when nothing is ready, as for the safety net). It returns how
// many of the connections got messages. Called with p.mu held; the
// connections are all in p.entries.
func (p *poller) drain(check bool) int {
	chk := C.int(0)
	if check {
		chk = 1
	}
	hits := 0
	for start := 0; start < len(p.dconn); {
		todo := p.dconn[start:]
		k := min(len(todo), len(p.dr))
		for i := 0; i < k; i++ {
			p.dr[i].sock = todo[i].sock
		}
		done := int(C.tsrt_drain_socks(&p.dr[0], C.int(k), (*C.char)(p.dmem[1]), drainBytes,
			&p.dlens[0], drainMsgs, chk))
		p.drains.Add(1)
		off, mi := 0, 0
		for i := 0; i < done; i++ {
			nm, stop := int(p.dr[i].nmsg), int(p.dr[i].stop)
			if nm > 0 {
				hits++
				p.msgs.Add(int64(nm))
			}
			if stop == C.TSRT_DRAIN_FULL {
				stop = 0
			}
			if nm > 0 || stop != 0 {
				off = todo[i].deliver(p.dbuf, p.dlens[mi:mi+nm], off, stop)
			}
			mi += nm
		}
		start += done
		if done > 0 && p.dr[done-1].stop == C.TSRT_DRAIN_FULL {
			start-- // the buffer filled up during this socket: go on with it
		}
	}
	return hits
}

// repair re-applies the current subscription of s, stripping event bits
// libsrt set that we did not subscribe to.
func (p *poller) repair(s C.SRTSOCKET) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ent := p.entries[s]
	if ent == nil || ent.gone {
		return
	}
	enter()
	C.tsrt_epoll_update(p.eid, s, C.int(ent.mask|evET), nil)
	leave()
}

// tick refreshes every connection's stats sample (so a last sample exists
// even if the owner never called Stats before the link broke) and, as a
// safety net against a lost edge, drains every connection once. That drain
// first asks libsrt whether anything is ready (SRTO_EVENT), which costs no
// more than a lock or two per socket when nothing is.
func (p *poller) tick() {
	p.mu.Lock()
	conns := make([]*Conn, 0, len(p.entries))
	p.dconn = p.dconn[:0]
	for _, ent := range p.entries {
		if ent.conn == nil {
			continue
		}
		conns = append(conns, ent.conn)
		if safetyNet.Load() && !ent.gone {
			p.dconn = append(p.dconn, ent.conn)
		}
	}
	if len(p.dconn) > 0 {
		p.pokes.Add(int64(len(p.dconn)))
		p.pokeHits.Add(int64(p.drain(true)))
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.sampleStats()
	}
}

// pollDiag is a snapshot of the poller's counters (tests, debugging).
type pollDiag struct {
	Waits, Events, Pokes, PokeHits, Msgs, Drains, WaitFails, ErrDrops, Strays int64
}

func diagnostics() pollDiag {
	lib.mu.Lock()
	p := lib.poll
	lib.mu.Unlock()
	if p == nil {
		return pollDiag{}
	}
	return pollDiag{p.waits.Load(), p.events.Load(), p.pokes.Load(), p.pokeHits.Load(), p.msgs.Load(), p.drains.Load(),
		p.waitFails.Load(), p.errDrops.Load(), p.strays.Load()}
}
