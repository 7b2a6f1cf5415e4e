package sender

import (
	"sync"

	"tandem/uplink/media"
)

// queue is a bounded FIFO of frames that drops its oldest frame when full,
// so a producer never blocks and the connection always resumes with the
// newest audio.
type queue struct {
	mu     sync.Mutex
	buf    []media.Frame
	head   int // index of the oldest frame
	n      int
	notify chan struct{} // capacity 1: "something was pushed"
}

func newQueue(size int) *queue {
	return &queue{buf: make([]media.Frame, size), notify: make(chan struct{}, 1)}
}

// push appends f, dropping the oldest frame if the queue is full; it
// reports whether one was dropped.
func (q *queue) push(f media.Frame) (dropped bool) {
	q.mu.Lock()
	if q.n == len(q.buf) {
		q.buf[q.head] = media.Frame{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		dropped = true
	}
	q.buf[(q.head+q.n)%len(q.buf)] = f
	q.n++
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return dropped
}

// pop removes and returns the oldest frame.
func (q *queue) pop() (media.Frame, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return media.Frame{}, false
	}
	f := q.buf[q.head]
	q.buf[q.head] = media.Frame{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return f, true
}

// clear empties the queue and returns how many frames it held.
func (q *queue) clear() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	for i := range q.buf {
		q.buf[i] = media.Frame{}
	}
	q.head, q.n = 0, 0
	return n
}

// len is the number of frames waiting.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
