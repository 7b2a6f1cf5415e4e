package srt

import (
	"context"
	"math/rand"
	"sync"
	"testing"
	"time"
)

// TestNoLostEdges runs without the poller's safety net: a connection is only
// drained when a real srt_epoll event reports it. Many connections, bursty
// writers and slow readers (so several messages pile up in the queues, are
// partly read, and more arrive meanwhile). If libsrt ever failed to report
// new data edge-triggered, or the drain left a ready message behind, a
// reader would hang on its last message.
func TestNoLostEdges(t *testing.T) {
	safetyNet.Store(false)
	defer safetyNet.Store(true)
	const conns, perConn = 40, 150
	opt := Options{Latency: 30 * time.Millisecond}
	l := listen(t, ListenConfig{Options: opt, Backlog: conns})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ev0 := diagnostics().Events
	var wg sync.WaitGroup
	results := make(chan int, conns)
	go func() {
		for i := 0; i < conns; i++ {
			s, err := l.Accept(ctx)
			if err != nil {
				return
			}
			wg.Add(1)
			go func(s *Conn, seed int64) {
				defer wg.Done()
				defer s.Close()
				rng := rand.New(rand.NewSource(seed))
				buf := make([]byte, ReadBufferSize)
				n := 0
				for n < perConn {
					if _, err := s.ReadMessage(ctx, buf); err != nil {
						break
					}
					n++
					if rng.Intn(4) == 0 {
						time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond)
					}
				}
				results <- n
			}(s, int64(i))
		}
	}()
	var cw sync.WaitGroup
	for i := 0; i < conns; i++ {
		c := dial(t, l.Addr().String(), opt)
		cw.Add(1)
		go func(c *Conn, seed int64) {
			defer cw.Done()
			rng := rand.New(rand.NewSource(seed))
			for k := 0; k < perConn; k++ {
				if err := c.WriteMessage(message(k, 188*(1+rng.Intn(7)))); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				switch rng.Intn(10) {
				case 0:
					time.Sleep(time.Duration(rng.Intn(40)) * time.Millisecond) // gap: the reader parks
				case 1, 2, 3:
					time.Sleep(time.Duration(rng.Intn(2000)) * time.Microsecond)
				}
			}
		}(c, int64(1000+i))
	}
	cw.Wait()
	sent := time.Now()
	for i := 0; i < conns; i++ {
		select {
		case n := <-results:
			if n != perConn {
				t.Errorf("a reader got %d of %d messages", n, perConn)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("%d readers still waiting 3s after the last write: a lost edge (or lost data)", conns-i)
		}
	}
	wg.Wait()
	ev := diagnostics().Events - ev0
	t.Logf("all %d×%d messages delivered, last reader done %v after the last write; %d poller events",
		conns, perConn, time.Since(sent).Round(time.Millisecond), ev)
	// Edge-triggered: at most about one event per message, plus
	// connection setup and teardown. A level-triggered leak would be
	// millions.
	if max := int64(conns*perConn + 10*conns); ev > max {
		t.Errorf("%d poller events for %d messages: event storm", ev, conns*perConn)
	}
}

// TestBrokenSocketIsQuiet: callers whose peer went away stay open (nobody
// reads or closes them). libsrt 1.5.1 posts IN|OUT|ERR on a break
// regardless of the subscription; without the poller's unsubscribe-on-ERR
// the stray OUT was reported on every srt_epoll_uwait: ~3 million events a
// second, a busy loop.
func TestBrokenSocketIsQuiet(t *testing.T) {
	const n = 10
	var callers []*Conn
	for i := 0; i < n; i++ {
		c, s := pair(t, ListenConfig{}, Options{})
		callers = append(callers, c)
		s.Close()
	}
	// Wait until every caller has seen the break.
	for _, c := range callers {
		ok := waitFor(3*time.Second, func() bool { return c.WriteMessage([]byte("x")) != nil })
		if !ok {
			t.Fatal("caller did not notice its peer closing")
		}
	}
	time.Sleep(100 * time.Millisecond)
	ev0 := diagnostics().Events
	time.Sleep(500 * time.Millisecond)
	if ev := diagnostics().Events - ev0; ev > 5 {
		t.Errorf("%d poller events in 500ms with %d idle broken sockets, want ~0", ev, n)
	}
	t.Logf("unsubscribed after ERR: %d, stray-bit re-arms: %d", diagnostics().ErrDrops, diagnostics().Strays)
}
