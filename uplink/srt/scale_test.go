package srt

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestManyConnections opens 200 connections on one listener, parks a
// ReadMessage on every one of them (both ends), moves traffic, and checks
// that the number of OS threads the Go side uses stays small and does not
// grow with the number of blocked readers. libsrt's own threads are
// counted and reported separately: they grow per socket and are not ours.
func TestManyConnections(t *testing.T) {
	const conns = 200
	const perConn = 5
	total0, srt0, names0 := threadCensus(t)
	tc0 := pprof.Lookup("threadcreate").Count()
	rss0 := vmRSS()
	t.Logf("before: %d threads (%d libsrt) %v; Go threadcreate=%d", total0, srt0, names0, tc0)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	l := listen(t, ListenConfig{Backlog: conns, Options: Options{Latency: 40 * time.Millisecond}})

	var received atomic.Int64
	var parked sync.WaitGroup // accepted-side readers
	var mu sync.Mutex
	var servers []*Conn
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for i := 0; i < conns; i++ {
			s, err := l.Accept(ctx)
			if err != nil {
				t.Errorf("accept %d: %v", i, err)
				return
			}
			mu.Lock()
			servers = append(servers, s)
			mu.Unlock()
			parked.Add(1)
			go func() {
				defer parked.Done()
				buf := make([]byte, ReadBufferSize)
				for {
					if _, err := s.ReadMessage(ctx, buf); err != nil {
						return
					}
					received.Add(1)
				}
			}()
		}
	}()

	clients := make([]*Conn, conns)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, conns)
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := Dial(ctx, l.Addr().String(), Options{StreamID: fmt.Sprintf("c%03d", i), Latency: 40 * time.Millisecond})
			if err != nil {
				errs <- err
				return
			}
			clients[i] = c
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("dial: %v", err)
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	<-acceptDone
	t.Logf("%d connections up in %v", conns, time.Since(start).Round(time.Millisecond))

	// Every client also has a reader parked (nothing will come back).
	var clientReaders sync.WaitGroup
	for _, c := range clients {
		clientReaders.Add(1)
		go func(c *Conn) {
			defer clientReaders.Done()
			c.ReadMessage(ctx, make([]byte, ReadBufferSize))
		}(c)
	}

	for k := 0; k < perConn; k++ {
		for i, c := range clients {
			if err := c.WriteMessage(message(i*perConn+k, 188*7)); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !waitFor(10*time.Second, func() bool { return received.Load() == conns*perConn }) {
		t.Fatalf("received %d of %d messages", received.Load(), conns*perConn)
	}
	time.Sleep(300 * time.Millisecond) // all 400 readers parked again

	total, srtThreads, names := threadCensus(t)
	goThreads := total - srtThreads
	tc := pprof.Lookup("threadcreate").Count()
	t.Logf("with %d connections (%d sockets, %d parked readers): %d threads, %d libsrt, %d Go; threadcreate=%d; GOMAXPROCS=%d",
		conns, 2*conns+1, 2*conns, total, srtThreads, goThreads, tc, runtime.GOMAXPROCS(0))
	t.Logf("libsrt threads per connection (both ends in this process): %.2f", float64(srtThreads-srt0)/conns)
	t.Logf("thread names: %s", census(names))
	t.Logf("VmRSS %s -> %s", rss0, vmRSS())
	t.Logf("poller: %d events, %d safety pokes (%d found data)", diagnostics().Events, diagnostics().Pokes, diagnostics().PokeHits)

	// The real assertion: 400 parked readers must not hold 400 OS threads.
	// The Go side may grow a little (GOMAXPROCS Ms, sysmon, the poller's
	// thread in srt_epoll_uwait, cgo-call Ms, template thread), not per
	// connection.
	const goBudget = 24
	if goThreads > goBudget {
		t.Errorf("Go-side OS threads = %d with %d parked readers, want <= %d", goThreads, 2*conns, goBudget)
	}
	if tc-tc0 > goBudget {
		t.Errorf("Go runtime created %d threads during the test, want <= %d", tc-tc0, goBudget)
	}

	for _, c := range clients {
		c.Close()
	}
	clientReaders.Wait()
	mu.Lock()
	for _, s := range servers {
		s.Close()
	}
	mu.Unlock()
	parked.Wait()
	// libsrt reaps closed sockets' threads asynchronously (its GC thread).
	waitFor(5*time.Second, func() bool { _, n, _ := threadCensus(t); return n <= srt0+4 })
	_, srtAfter, _ := threadCensus(t)
	t.Logf("after closing everything: %d libsrt threads (was %d before)", srtAfter, srt0)
}

func census(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return b.String()
}

func vmRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:"))
		}
	}
	return "?"
}
