package srt

/*
#include "csrt.h"
*/
import "C"

import "sync"

// rxQueueMax bounds the messages a Conn holds for its reader. When the
// reader falls further behind, the oldest message is dropped for the newest
// and counted (Stats.PktRecvDrop). That is what live mode does anyway: libsrt
// drops what cannot be delivered in time, and a stale message is worth less
// than a current one. 1024 messages are about 20 s of one AAC stream at one
// frame per message, or 2 s of a 5 Mbit/s TS.
const rxQueueMax = 1024

// rxShrink: an empty queue whose ring grew beyond this gives its memory back.
const rxShrink = 64

// rxQueue holds the messages the poller drained from libsrt for one Conn,
// and the error that ended the connection. The poller pushes; ReadMessage
// pops. Slots keep their byte slices, so a steady stream allocates nothing.
type rxQueue struct {
	mu      sync.Mutex
	ring    [][]byte
	head, n int
	code    int  // libsrt error that ended the drain: returned once the queue is empty
	waiting bool // the reader found the queue empty and waits for a token on wake
	drops   int64

	wake chan struct{} // capacity 1: a message or an error arrived while waiting
}

func (q *rxQueue) init() { q.wake = make(chan struct{}, 1) }

// deliver queues the messages lens (packed in buf from off on) and the
// drain's stop code (0 or an SRT error code), wakes a waiting reader, and
// returns the offset after the messages. Called by the poller.
func (c *Conn) deliver(buf []byte, lens []C.int, off int, code int) int {
	q := &c.rx
	q.mu.Lock()
	for _, l := range lens {
		q.push(buf[off : off+int(l)])
		off += int(l)
	}
	if code != 0 && q.code == 0 {
		q.code = code
	}
	w := q.waiting
	q.waiting = false
	q.mu.Unlock()
	if w {
		notify(q.wake)
	}
	return off
}

// push copies m into the ring, growing it up to rxQueueMax, then dropping
// the oldest message. q.mu held.
func (q *rxQueue) push(m []byte) {
	if q.n == len(q.ring) {
		if len(q.ring) < rxQueueMax {
			ring := make([][]byte, min(max(4, 2*len(q.ring)), rxQueueMax))
			for i := 0; i < q.n; i++ {
				ring[i] = q.ring[(q.head+i)%len(q.ring)]
			}
			q.ring, q.head = ring, 0
		} else {
			q.head = (q.head + 1) % len(q.ring)
			q.n--
			q.drops++
		}
	}
	i := (q.head + q.n) % len(q.ring)
	s := q.ring[i]
	if cap(s) < len(m) {
		// Round up so that a stream of similar sizes reuses the slot.
		s = make([]byte, 0, (len(m)+255)&^255)
	}
	q.ring[i] = append(s[:0], m...)
	q.n++
}

// pop copies the oldest message into buf. ok reports that a message was
// there: n is its length and code is 0, or codeInvalMsgAPI if buf is too
// short (the message stays queued). Without a message, code is the error
// that ended the connection, or 0: then the caller is registered as
// waiting and must wait for a token on q.wake.
func (q *rxQueue) pop(buf []byte) (n, code int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		if q.code == 0 {
			q.waiting = true
		}
		return 0, q.code, false
	}
	m := q.ring[q.head]
	if len(buf) < len(m) {
		return len(m), codeInvalMsgAPI, true
	}
	n = copy(buf, m)
	q.ring[q.head] = m[:0]
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	if q.n == 0 && len(q.ring) > rxShrink {
		q.ring, q.head = nil, 0
	}
	return n, 0, true
}

// dropped reports how many messages the queue dropped for a slow reader.
func (q *rxQueue) dropped() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.drops
}

// reset frees the queued messages (Close).
func (q *rxQueue) reset() {
	q.mu.Lock()
	q.ring, q.head, q.n = nil, 0, 0
	q.mu.Unlock()
}
