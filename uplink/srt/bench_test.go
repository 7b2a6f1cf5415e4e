package srt

import (
	"context"
	"errors"
	"testing"
	"time"
)

// BenchmarkRoundTrip measures messages per second through the binding on
// loopback, echo style: the caller writes 1316-byte messages, the accepted
// side reads each and writes it back, the caller reads the echo. A window
// of in-flight messages keeps the burst inside the loopback UDP buffers;
// SRTO_LATENCY is 20ms each way, so the window, not the CPU, bounds the
// rate at small windows. Reports msgs/s (round trips completed per second)
// and lost (messages libsrt dropped as too late, which should be 0).
func BenchmarkRoundTrip(b *testing.B) {
	opt := Options{Latency: 20 * time.Millisecond}
	c, s := pair(b, ListenConfig{Options: opt}, opt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		buf := make([]byte, ReadBufferSize)
		for {
			k, err := s.ReadMessage(ctx, buf)
			if err != nil {
				return
			}
			for s.WriteMessage(buf[:k]) != nil && ctx.Err() == nil {
				time.Sleep(50 * time.Microsecond) // send buffer full: back off
			}
		}
	}()
	const window = 1024
	credits := make(chan struct{}, window)
	for i := 0; i < window; i++ {
		credits <- struct{}{}
	}
	msg := make([]byte, MaxMessageSize)
	got := make(chan int, 1)
	b.SetBytes(MaxMessageSize)
	b.ResetTimer()
	start := time.Now()
	go func() {
		buf := make([]byte, ReadBufferSize)
		n := 0
		for n < b.N {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			_, err := c.ReadMessage(rctx, buf)
			rcancel()
			if err != nil {
				break // idle: the rest was dropped
			}
			n++
			credits <- struct{}{}
		}
		got <- n
	}()
	for i := 0; i < b.N; i++ {
		select {
		case <-credits:
		case <-time.After(2 * time.Second):
			b.Fatalf("stalled after %d messages", i)
		}
		for {
			err := c.WriteMessage(msg)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrSendBufferFull) {
				b.Fatal(err)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	n := <-got
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N-n), "lost")
}
