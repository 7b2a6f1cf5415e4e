// Package capturetest helps tests of capture sources: it records what a
// subscription delivers.
package capturetest

import (
	"sync"

	"tandem/capture"
)

// Recorder collects every block of a subscription until it is closed.
type Recorder struct {
	mu     sync.Mutex
	blocks []capture.Block
	done   chan struct{}
}

// Record starts collecting ch.
func Record(ch <-chan capture.Block) *Recorder {
	r := &Recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for b := range ch {
			r.mu.Lock()
			r.blocks = append(r.blocks, b)
			r.mu.Unlock()
		}
	}()
	return r
}

// Done is closed when the subscription has ended and every block is in.
func (r *Recorder) Done() <-chan struct{} { return r.done }

// Blocks returns a copy of the blocks collected so far.
func (r *Recorder) Blocks() []capture.Block {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]capture.Block(nil), r.blocks...)
}
