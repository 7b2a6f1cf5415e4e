package media

import (
	"context"
	"errors"
	"sync"
)

// ErrReaderTooSlow is returned to a reader the writer has lapped: it missed
// items that are gone from the ring. The reader must stop (a slow listener
// is dropped) or start again from the newest items.
var ErrReaderTooSlow = errors.New("reader fell behind the stream and was dropped")

// ErrFanoutClosed is returned once the writer closed the fan-out and the
// reader has read everything that was written.
var ErrFanoutClosed = errors.New("stream ended")

// Fanout is a ring that one writer fills and many readers drain at their own
// pace. A write never blocks on a reader: a reader that falls more than the
// ring's size behind learns so with ErrReaderTooSlow. Items are shared, not
// copied: the writer must not modify an item after writing it.
type Fanout[T any] struct {
	mu     sync.Mutex
	ring   []T
	next   uint64 // sequence number of the next write
	wake   chan struct{}
	closed bool
	// batchWake wakes batched readers once every batchEvery writes.
	batchEvery uint64
	batchWake  chan struct{}
}

// NewFanout makes a fan-out that keeps the last size items.
func NewFanout[T any](size int) *Fanout[T] {
	if size < 1 {
		size = 1
	}
	return &Fanout[T]{ring: make([]T, size), wake: make(chan struct{}), batchEvery: 1, batchWake: make(chan struct{})}
}

// SetBatch makes batched readers (NewBatchedReader) wait for every n-th
// write instead of each one, so a thousand readers that each cost a
// syscall per wake-up (network listeners) wake n times less often and
// take n items at once. Readers that need every item at once are not
// affected.
func (f *Fanout[T]) SetBatch(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batchEvery = uint64(max(1, n))
}

// Write appends an item and wakes every waiting reader.
func (f *Fanout[T]) Write(item T) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.ring[f.next%uint64(len(f.ring))] = item
	f.next++
	w := f.wake
	f.wake = make(chan struct{})
	var bw chan struct{}
	if f.next%f.batchEvery == 0 {
		bw = f.batchWake
		f.batchWake = make(chan struct{})
	}
	f.mu.Unlock()
	close(w)
	if bw != nil {
		close(bw)
	}
}

// Close ends the stream: readers get what is left, then ErrFanoutClosed.
func (f *Fanout[T]) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	close(f.wake)
	close(f.batchWake)
}

// Written is the number of items written so far.
func (f *Fanout[T]) Written() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next
}

// Reader is one consumer's position in a Fanout.
type Reader[T any] struct {
	f       *Fanout[T]
	pos     uint64
	batched bool
}

// NewReader starts a reader burst items back from the newest (0: only new
// items), never further back than the ring holds.
func (f *Fanout[T]) NewReader(burst int) *Reader[T] {
	f.mu.Lock()
	defer f.mu.Unlock()
	if burst < 0 {
		burst = 0
	}
	if burst > len(f.ring) {
		burst = len(f.ring)
	}
	pos := uint64(0)
	if f.next > uint64(burst) {
		pos = f.next - uint64(burst)
	}
	return &Reader[T]{f: f, pos: pos}
}

// NewBatchedReader is NewReader for a reader that, once it has read
// everything, waits for the next batch (see SetBatch) rather than the next
// item. Its burst counts only the items for which counts is true (nil:
// every item), so a reader of one kind of item in a mixed ring (audio
// among video) starts that much of its kind back.
func (f *Fanout[T]) NewBatchedReader(burst int, counts func(T) bool) *Reader[T] {
	var r *Reader[T]
	if counts == nil {
		r = f.NewReader(burst)
	} else {
		r = f.readerCounting(burst, counts)
	}
	r.batched = true
	return r
}

// readerCounting starts a reader at the burst-th newest item that counts,
// never further back than the ring holds.
func (f *Fanout[T]) readerCounting(burst int, counts func(T) bool) *Reader[T] {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldest := uint64(0)
	if f.next > uint64(len(f.ring)) {
		oldest = f.next - uint64(len(f.ring))
	}
	pos := f.next
	for n := 0; n < burst && pos > oldest; {
		pos--
		if counts(f.ring[pos%uint64(len(f.ring))]) {
			n++
		}
	}
	return &Reader[T]{f: f, pos: pos}
}

// Read appends every item available to dst, waiting for at least one, and
// returns the extended slice. It fails with ErrReaderTooSlow if items were
// lost, ErrFanoutClosed at the end, or ctx's error.
func (r *Reader[T]) Read(ctx context.Context, dst []T) ([]T, error) {
	for {
		f := r.f
		f.mu.Lock()
		size := uint64(len(f.ring))
		if f.next-r.pos > size {
			f.mu.Unlock()
			return dst, ErrReaderTooSlow
		}
		if r.pos < f.next {
			for ; r.pos < f.next; r.pos++ {
				dst = append(dst, f.ring[r.pos%size])
			}
			f.mu.Unlock()
			return dst, nil
		}
		if f.closed {
			f.mu.Unlock()
			return dst, ErrFanoutClosed
		}
		w := f.wake
		if r.batched {
			w = f.batchWake
		}
		f.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}

// Lag is how many written items this reader has not read yet.
func (r *Reader[T]) Lag() uint64 {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	return r.f.next - r.pos
}
