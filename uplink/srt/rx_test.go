package srt

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// TestSlowReaderDropsOldest: nobody reads while more than rxQueueMax
// messages arrive. The poller keeps draining libsrt, the queue keeps the
// newest rxQueueMax messages in order, and the dropped ones are counted in
// Stats.PktRecvDrop.
func TestSlowReaderDropsOldest(t *testing.T) {
	const n = rxQueueMax + 300
	opt := Options{Latency: 20 * time.Millisecond}
	c, s := pair(t, ListenConfig{Options: opt}, opt)
	for i := 0; i < n; i++ {
		if err := c.WriteMessage(message(i, messageSize(i))); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i%50 == 49 {
			time.Sleep(5 * time.Millisecond) // stay inside loopback UDP buffers
		}
	}
	if !waitFor(5*time.Second, func() bool { return s.Stats().PktRecvDrop >= n-rxQueueMax }) {
		t.Fatalf("PktRecvDrop = %d, want >= %d", s.Stats().PktRecvDrop, n-rxQueueMax)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	buf := make([]byte, ReadBufferSize)
	for i := n - rxQueueMax; i < n; i++ {
		k, err := s.ReadMessage(ctx, buf)
		if err != nil {
			t.Fatalf("read (want message %d): %v", i, err)
		}
		if err := checkMessage(buf[:k], i); err != nil {
			t.Fatal(err)
		}
	}
	short, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer scancel()
	if k, err := s.ReadMessage(short, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after the queue: %d bytes, %v; want nothing more", k, err)
	}
	if st := s.Stats(); st.PktRecvDrop != n-rxQueueMax {
		t.Errorf("PktRecvDrop = %d, want %d (libsrt dropped none, the queue %d)", st.PktRecvDrop, n-rxQueueMax, n-rxQueueMax)
	}
}

// TestQueuedThenConnectionLost: the peer sends and goes away before the
// reader reads anything. The reader still gets every message, in order,
// then ErrConnectionLost.
func TestQueuedThenConnectionLost(t *testing.T) {
	const n = 50
	opt := Options{Latency: 20 * time.Millisecond}
	c, s := pair(t, ListenConfig{Options: opt}, opt)
	for i := 0; i < n; i++ {
		if err := c.WriteMessage(message(i, messageSize(i))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // delivered (20ms latency) and drained
	c.Close()
	time.Sleep(300 * time.Millisecond) // the break is seen and queued too
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	buf := make([]byte, ReadBufferSize)
	for i := 0; i < n; i++ {
		k, err := s.ReadMessage(ctx, buf)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if err := checkMessage(buf[:k], i); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.ReadMessage(ctx, buf)
	var se *Error
	if !errors.Is(err, ErrConnectionLost) || !errors.As(err, &se) || se.Code != 2001 {
		t.Fatalf("after the messages: %v, want ErrConnectionLost (SRT 2001)", err)
	}
	// The error stays.
	if _, err := s.ReadMessage(ctx, buf); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("second read after the loss: %v", err)
	}
}

// TestRxQueue exercises the ring directly: growth, wrap-around, drop of
// the oldest, a short buffer, the sticky error and the shrink when empty.
func TestRxQueue(t *testing.T) {
	c := &Conn{}
	c.rx.init()
	q := &c.rx
	msg := func(i int) []byte {
		b := make([]byte, 8+i%700)
		binary.BigEndian.PutUint64(b, uint64(i))
		return b
	}
	buf := make([]byte, ReadBufferSize)
	next, pushed, queued, drops := 0, 0, 0, int64(0)
	for round := 0; round < 5; round++ {
		for k := 0; k < 300*(round+1); k++ {
			q.mu.Lock()
			q.push(msg(pushed))
			q.mu.Unlock()
			pushed++
			if queued++; queued > rxQueueMax {
				queued--
				drops++
				next++
			}
		}
		for k := 0; k < 200 && queued > 0; k++ {
			n, code, ok := q.pop(buf)
			if !ok || code != 0 {
				t.Fatalf("pop: ok=%v code=%d", ok, code)
			}
			if got := int(binary.BigEndian.Uint64(buf[:n])); got != next || n != len(msg(next)) {
				t.Fatalf("round %d: got message %d (%d bytes), want %d", round, got, n, next)
			}
			next++
			queued--
		}
	}
	if q.dropped() != drops || drops == 0 {
		t.Errorf("dropped %d, want %d", q.dropped(), drops)
	}
	// A short buffer leaves the message queued.
	n, code, ok := q.pop(make([]byte, 4))
	if !ok || code != codeInvalMsgAPI || n != len(msg(next)) {
		t.Fatalf("short buffer: n=%d code=%d ok=%v", n, code, ok)
	}
	for ; queued > 0; queued-- {
		n, _, ok := q.pop(buf)
		if !ok || int(binary.BigEndian.Uint64(buf[:n])) != next {
			t.Fatalf("draining: ok=%v, want message %d", ok, next)
		}
		next++
	}
	if q.ring != nil {
		t.Errorf("empty queue kept a ring of %d slots", len(q.ring))
	}
	// Empty: registers the reader as waiting; an error wakes it and stays.
	if _, code, ok := q.pop(buf); ok || code != 0 || !q.waiting {
		t.Fatalf("empty pop: code=%d ok=%v waiting=%v", code, ok, q.waiting)
	}
	c.deliver(nil, nil, 0, codeConnLost)
	select {
	case <-q.wake:
	default:
		t.Fatal("no wake-up for the error")
	}
	for i := 0; i < 2; i++ {
		if _, code, ok := q.pop(buf); ok || code != codeConnLost {
			t.Fatalf("after the error: code=%d ok=%v", code, ok)
		}
	}
}
