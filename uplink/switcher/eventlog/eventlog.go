// Package eventlog is the switcher's persistent event log: every switch,
// health change, connect and refusal, numbered, kept in a bbolt file across
// restarts, queryable, and streamed live to subscribers (and to browsers as
// Server-Sent Events).
//
// Append is durable when it returns (one fsync'd bbolt transaction) and
// never waits for a subscriber: each subscriber has its own bounded queue,
// and one that falls behind loses events and then receives a "gap" marker
// saying which ones. The SSE handler fills such a gap from the store, so a
// browser misses nothing.
//
// Layout of the file: bucket "events" maps the 8-byte big-endian sequence
// number to the event's JSON; "by-stream" maps stream + 0x00 + seq to the
// event's time, and "by-time" maps time + seq to the stream, so queries by
// stream or time do not decode unrelated events.
package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Event is one thing that happened.
type Event struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Stream string    `json:"stream,omitempty"`
	Input  string    `json:"input,omitempty"`
	Kind   string    `json:"kind"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Reason string    `json:"reason"`
}

// KindGap marks, in a subscription only (never in the store), that the
// subscriber fell behind and lost events. Its Seq is 0; From and To are the
// first and last lost sequence numbers in decimal, and Query(stream, {},
// From-1, …) returns them.
const KindGap = "gap"

// ErrClosed is returned by a closed Log.
var ErrClosed = errors.New("eventlog: closed")

// Options tune a Log. Zero values take the defaults documented on each field.
type Options struct {
	// MaxEvents is how many events are kept; older ones are trimmed.
	// Default 1 000 000.
	MaxEvents int
	// MaxAge is how long events are kept. Default 30 days.
	MaxAge time.Duration
	// TrimEvery is how many appends pass between trims (there is also one
	// in Open and one an hour). Default 1000.
	TrimEvery int
	// SubscriberQueue is how many events a subscriber may have waiting
	// before it starts losing them. Default 1024.
	SubscriberQueue int
	// KeepAlive is the interval of the SSE keep-alive comment. Default 15 s.
	KeepAlive time.Duration
	// NoSync skips the fsync of each append (tests and benchmarks only:
	// an append is then not durable when it returns).
	NoSync bool
	// Now stamps events appended with a zero Time and decides their age.
	// Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxEvents <= 0 {
		o.MaxEvents = 1_000_000
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 30 * 24 * time.Hour
	}
	if o.TrimEvery <= 0 {
		o.TrimEvery = 1000
	}
	if o.SubscriberQueue <= 0 {
		o.SubscriberQueue = 1024
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

var (
	bucketEvents   = []byte("events")
	bucketByStream = []byte("by-stream")
	bucketByTime   = []byte("by-time")
)

// Log is an open event log. Its methods are safe for concurrent use.
type Log struct {
	path string
	db   *bolt.DB
	log  *slog.Logger
	opt  Options

	// mu orders appends: sequence numbers, the store and the fan-out
	// advance together, so every subscriber sees events in Seq order.
	mu        sync.Mutex
	seq       uint64
	subs      map[*subscriber]struct{}
	closed    bool
	sinceTrim int

	dropped  uint64 // events lost by slow subscribers, in total; under mu
	trimNow  chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

// Open opens (or creates) the event log at path with default options.
func Open(path string, log *slog.Logger) (*Log, error) {
	return OpenOptions(path, Options{}, log)
}

// OpenOptions opens (or creates) the event log at path. A file that is not
// an event log, or is corrupt, is refused with an error naming it; the file
// is left as it is.
func OpenOptions(path string, opt Options, log *slog.Logger) (*Log, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opt = opt.withDefaults()
	db, err := openDB(path, opt.NoSync)
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("eventlog: open %s: the file is locked (is another switcher using it?): %w", path, err)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, errCorrupt):
			return nil, fmt.Errorf("eventlog: open %s: not a valid event log, or corrupt (move it aside to start a new one): %w", path, err)
		}
		return nil, fmt.Errorf("eventlog: open %s: %w", path, err)
	}
	l := &Log{
		path:    path,
		db:      db,
		log:     log,
		opt:     opt,
		subs:    map[*subscriber]struct{}{},
		trimNow: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if err := l.init(); err != nil {
		db.Close()
		return nil, err
	}
	// The first trim runs before Open returns, so a log opened with a
	// smaller retention is trimmed before anyone reads it.
	if _, err := l.Trim(); err != nil {
		l.log.Error("event log trim failed", "err", err)
	}
	l.wg.Add(1)
	go l.trimmer()
	return l, nil
}

// openDB opens the bbolt file. bbolt panics (or faults) on some damaged
// files instead of returning an error; that becomes an error naming the
// file. (After such a panic the file's descriptor stays open until the
// process exits: bbolt does not hand it back.)
func openDB(path string, noSync bool) (db *bolt.DB, err error) {
	defer guard(&err)()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: noSync})
}

var errCorrupt = errors.New("the file is corrupt")

// guard turns a bbolt panic on a damaged page (or a fault reading the
// mapped file) into an error instead of a crash of the whole switcher.
// bbolt rolls the transaction back as the panic unwinds. Use as
// defer guard(&err)().
func guard(err *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			*err = fmt.Errorf("%w: %v", errCorrupt, r)
		}
	}
}

// init creates the buckets and reads the last sequence number. A damaged
// file can make bbolt panic or fault on a bad page; that becomes an error.
func (l *Log) init() (err error) {
	err = l.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEvents, bucketByStream, bucketByTime} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		c := tx.Bucket(bucketEvents).Cursor()
		if k, v := c.Last(); k != nil {
			if len(k) != 8 {
				return fmt.Errorf("key of %d bytes in bucket events", len(k))
			}
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("last event: %w", err)
			}
			l.seq = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("eventlog: open %s: the file is not a usable event log (move it aside to start a new one): %w", l.path, err)
	}
	return nil
}

func (l *Log) update(fn func(*bolt.Tx) error) (err error) {
	defer guard(&err)()
	return l.db.Update(fn)
}

func (l *Log) view(fn func(*bolt.Tx) error) (err error) {
	defer guard(&err)()
	return l.db.View(fn)
}

// Path is the file the log is stored in.
func (l *Log) Path() string { return l.path }

// LastSeq is the sequence number of the newest event (0 when empty).
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// Dropped counts events lost by slow subscribers since Open.
func (l *Log) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// timeKey orders times as unsigned big-endian bytes.
func timeKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^(1<<63))
}

func streamKey(stream string, seq uint64) []byte {
	k := append([]byte(stream), 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// Append stores e with the next sequence number (and the current time if
// e.Time is zero), and hands it to every matching subscriber without
// waiting for any. The returned event is what was stored.
func (l *Log) Append(e Event) (Event, error) {
	if e.Kind == "" {
		return Event{}, errors.New("eventlog: append: the event has no kind")
	}
	if e.Kind == KindGap {
		return Event{}, fmt.Errorf("eventlog: append: kind %q is reserved for subscriptions", KindGap)
	}
	if bytes.IndexByte([]byte(e.Stream), 0) >= 0 {
		return Event{}, fmt.Errorf("eventlog: append: stream name %q contains a NUL byte", e.Stream)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Event{}, ErrClosed
	}
	if e.Time.IsZero() {
		e.Time = l.opt.Now()
	}
	e.Time = e.Time.Round(0).UTC() // no monotonic reading: what is stored is what is returned
	e.Seq = l.seq + 1
	val, err := json.Marshal(e)
	if err != nil {
		return Event{}, fmt.Errorf("eventlog: append %s: %w", e.Kind, err)
	}
	err = l.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketEvents).Put(seqKey(e.Seq), val); err != nil {
			return err
		}
		tk := timeKey(e.Time)
		if e.Stream != "" {
			if err := tx.Bucket(bucketByStream).Put(streamKey(e.Stream, e.Seq), tk); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketByTime).Put(append(tk, seqKey(e.Seq)...), []byte(e.Stream))
	})
	if err != nil {
		return Event{}, fmt.Errorf("eventlog: append %s to %s: %w", e.Kind, l.path, err)
	}
	l.seq = e.Seq
	for s := range l.subs {
		if s.stream == "" || s.stream == e.Stream {
			if !s.offer(e) {
				l.dropped++
			}
		}
	}
	if l.sinceTrim++; l.sinceTrim >= l.opt.TrimEvery {
		l.sinceTrim = 0
		select {
		case l.trimNow <- struct{}{}:
		default:
		}
	}
	return e, nil
}

// Query limits.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Query returns events of stream ("" for every stream), in sequence order.
//
// With a cursor (afterSeq > 0 and/or a non-zero since) it returns the
// oldest limit events with Seq > afterSeq and Time >= since: page forward
// by passing the last Seq back as afterSeq. Without a cursor it returns the
// newest limit events. limit <= 0 means DefaultLimit; it is capped at
// MaxLimit.
func (l *Log) Query(stream string, since time.Time, afterSeq uint64, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	var seqs []uint64
	events := []Event{}
	err := l.view(func(tx *bolt.Tx) error {
		switch {
		case !since.IsZero():
			seqs = l.queryTime(tx, stream, since, afterSeq, limit)
		case afterSeq > 0:
			seqs = queryForward(tx, stream, afterSeq, limit)
		default:
			seqs = queryNewest(tx, stream, limit)
		}
		slices.Sort(seqs)
		b := tx.Bucket(bucketEvents)
		for _, s := range seqs {
			v := b.Get(seqKey(s))
			if v == nil {
				continue // trimmed between index and event: cannot happen in one tx, but harmless
			}
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %d: %w", s, err)
			}
			events = append(events, e)
		}
		return nil
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: query %s: %w", l.path, err)
	}
	return events, nil
}

func queryForward(tx *bolt.Tx, stream string, after uint64, limit int) []uint64 {
	var out []uint64
	if stream == "" {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, _ := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, _ = c.Next() {
			out = append(out, binary.BigEndian.Uint64(k))
		}
		return out
	}
	prefix := append([]byte(stream), 0)
	c := tx.Bucket(bucketByStream).Cursor()
	for k, _ := c.Seek(streamKey(stream, after+1)); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
		out = append(out, binary.BigEndian.Uint64(k[len(prefix):]))
	}
	return out
}

func queryNewest(tx *bolt.Tx, stream string, limit int) []uint64 {
	var out []uint64
	if stream == "" {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, _ := c.Last(); k != nil && len(out) < limit; k, _ = c.Prev() {
			out = append(out, binary.BigEndian.Uint64(k))
		}
		return out
	}
	prefix := append([]byte(stream), 0)
	c := tx.Bucket(bucketByStream).Cursor()
	k, _ := c.Seek(streamKey(stream, ^uint64(0)))
	if k == nil {
		k, _ = c.Last()
	} else if !bytes.Equal(k, streamKey(stream, ^uint64(0))) {
		k, _ = c.Prev()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Prev() {
		out = append(out, binary.BigEndian.Uint64(k[len(prefix):]))
	}
	return out
}

func (l *Log) queryTime(tx *bolt.Tx, stream string, since time.Time, after uint64, limit int) []uint64 {
	var out []uint64
	c := tx.Bucket(bucketByTime).Cursor()
	for k, v := c.Seek(timeKey(since)); k != nil && len(out) < limit; k, v = c.Next() {
		if len(k) != 16 {
			continue
		}
		seq := binary.BigEndian.Uint64(k[8:])
		if seq <= after || stream != "" && string(v) != stream {
			continue
		}
		out = append(out, seq)
	}
	return out
}

// Trim deletes the events beyond MaxEvents and those older than MaxAge,
// oldest first, and returns how many it deleted. It runs by itself now and
// then; calling it is only needed to force one.
func (l *Log) Trim() (int, error) {
	total := 0
	for {
		n, err := l.trimBatch(10000)
		total += n
		if err != nil {
			return total, fmt.Errorf("eventlog: trim %s: %w", l.path, err)
		}
		if n < 10000 {
			if total > 0 {
				l.log.Info("event log trimmed", "deleted", total)
			}
			return total, nil
		}
	}
}

func (l *Log) trimBatch(max int) (int, error) {
	cutoff := l.opt.Now().Add(-l.opt.MaxAge)
	n := 0
	err := l.update(func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		c := events.Cursor()
		lastK, _ := c.Last()
		if lastK == nil {
			return nil
		}
		last := binary.BigEndian.Uint64(lastK)
		type victim struct {
			seq    uint64
			time   time.Time
			stream string
		}
		var vs []victim
		for k, v := c.First(); k != nil && len(vs) < max; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			if last-seq+1 <= uint64(l.opt.MaxEvents) && !e.Time.Before(cutoff) {
				break
			}
			vs = append(vs, victim{seq, e.Time, e.Stream})
		}
		for _, v := range vs {
			if err := events.Delete(seqKey(v.seq)); err != nil {
				return err
			}
			if v.stream != "" {
				if err := tx.Bucket(bucketByStream).Delete(streamKey(v.stream, v.seq)); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketByTime).Delete(append(timeKey(v.time), seqKey(v.seq)...)); err != nil {
				return err
			}
		}
		n = len(vs)
		return nil
	})
	return n, err
}

func (l *Log) trimmer() {
	defer l.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.trimNow:
		case <-t.C:
		}
		if _, err := l.Trim(); err != nil {
			l.log.Error("event log trim failed", "err", err)
		}
	}
}

// Close ends every subscription, waits for the log's goroutines and closes
// the file. Further calls return the first result.
func (l *Log) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.done)
		l.mu.Unlock()
		l.wg.Wait()
		if err := l.db.Close(); err != nil {
			l.closeErr = fmt.Errorf("eventlog: close %s: %w", l.path, err)
		}
	})
	return l.closeErr
}

// Subscribe returns the events appended from now on for stream ("" for
// every stream), in order. The channel is closed when ctx ends or the log
// is closed. A subscriber that does not keep up loses events and then
// receives a KindGap marker naming them.
func (l *Log) Subscribe(ctx context.Context, stream string) (<-chan Event, error) {
	ch, _, err := l.subscribe(ctx, stream)
	return ch, err
}

// subscribe also returns the last Seq before the subscription: every later
// event reaches the channel (or a gap marker covering it).
func (l *Log) subscribe(ctx context.Context, stream string) (<-chan Event, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("eventlog: subscribe: %w", err)
	}
	s := &subscriber{
		stream: stream,
		max:    l.opt.SubscriberQueue,
		out:    make(chan Event),
		wake:   make(chan struct{}, 1),
		now:    l.opt.Now,
	}
	l.subs[s] = struct{}{}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		s.pump(ctx, l.done, l.log)
		l.mu.Lock()
		delete(l.subs, s)
		l.mu.Unlock()
	}()
	return s.out, l.seq, nil
}

// subscriber is one subscription: a bounded queue filled by Append and a
// pump goroutine that delivers it.
type subscriber struct {
	stream string
	max    int
	out    chan Event
	wake   chan struct{}
	now    func() time.Time

	mu       sync.Mutex
	queue    []Event
	gapN     uint64
	gapFirst uint64
	gapLast  uint64
}

// offer queues e without blocking; false if it had to be dropped.
func (s *subscriber) offer(e Event) bool {
	s.mu.Lock()
	need := 1
	if s.gapN > 0 {
		need = 2 // the marker goes first
	}
	if len(s.queue)+need > s.max {
		if s.gapN == 0 {
			s.gapFirst = e.Seq
		}
		s.gapLast = e.Seq
		s.gapN++
		s.mu.Unlock()
		return false
	}
	if s.gapN > 0 {
		s.queue = append(s.queue, s.gapLocked())
	}
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// gapLocked makes the marker for the pending gap and clears it.
func (s *subscriber) gapLocked() Event {
	e := Event{
		Time:   s.now().Round(0),
		Stream: s.stream,
		Kind:   KindGap,
		From:   strconv.FormatUint(s.gapFirst, 10),
		To:     strconv.FormatUint(s.gapLast, 10),
		Reason: fmt.Sprintf("%d events lost: this subscriber fell behind; they are in the log (seq %d to %d)", s.gapN, s.gapFirst, s.gapLast),
	}
	s.gapN = 0
	return e
}

// next takes the head of the queue, or the pending gap marker once the
// queue is empty.
func (s *subscriber) next() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		e := s.queue[0]
		s.queue[0] = Event{}
		s.queue = s.queue[1:]
		if len(s.queue) == 0 {
			s.queue = nil // let the backing array go
		}
		return e, true
	}
	if s.gapN > 0 {
		return s.gapLocked(), true
	}
	return Event{}, false
}

func (s *subscriber) pump(ctx context.Context, done <-chan struct{}, log *slog.Logger) {
	defer close(s.out)
	for {
		e, ok := s.next()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
		if e.Kind == KindGap {
			log.Warn("event subscriber fell behind", "stream", s.stream, "lost_from", e.From, "lost_to", e.To)
		}
		select {
		case s.out <- e:
		case <-ctx.Done():
			return
		case <-done:
			return
		}
	}
}
