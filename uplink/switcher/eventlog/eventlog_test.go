package eventlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is an injected clock for Append's stamps and retention.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func openTest(t *testing.T, path string, opt Options) *Log {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "events.db")
	}
	if opt.Now == nil {
		// Events are stamped around t0; a real clock would find them
		// older than the retention.
		opt.Now = (&fakeClock{now: t0.Add(time.Hour)}).Now
	}
	// Tests need no fsync (TestDurableAcrossReopen uses the default).
	opt.NoSync = true
	l, err := OpenOptions(path, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mustAppend(t *testing.T, l *Log, e Event) Event {
	t.Helper()
	got, err := l.Append(e)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func seqs(es []Event) []uint64 {
	out := []uint64{}
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func eq(a, b []uint64) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// fill appends 10 events: odd seqs on live/a, even on live/b, one a minute
// from t0.
func fill(t *testing.T, l *Log) {
	t.Helper()
	for i := 1; i <= 10; i++ {
		stream := "live/a"
		if i%2 == 0 {
			stream = "live/b"
		}
		mustAppend(t, l, Event{Time: t0.Add(time.Duration(i) * time.Minute), Stream: stream, Input: "primary", Kind: "switch", From: "primary", To: "fallback", Reason: fmt.Sprintf("event %d", i)})
	}
}

func TestAppendAndQuery(t *testing.T) {
	l := openTest(t, "", Options{})
	fill(t, l)
	if l.LastSeq() != 10 {
		t.Fatalf("LastSeq %d", l.LastSeq())
	}
	cases := []struct {
		name   string
		stream string
		since  time.Time
		after  uint64
		limit  int
		want   []uint64
	}{
		{"newest, all", "", time.Time{}, 0, 0, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"newest 3", "", time.Time{}, 0, 3, []uint64{8, 9, 10}},
		{"newest 2 of a stream", "live/a", time.Time{}, 0, 2, []uint64{7, 9}},
		{"newest of the last stream in the index", "live/b", time.Time{}, 0, 2, []uint64{8, 10}},
		{"unknown stream", "live/x", time.Time{}, 0, 0, []uint64{}},
		{"after", "", time.Time{}, 7, 0, []uint64{8, 9, 10}},
		{"after, paged", "", time.Time{}, 3, 2, []uint64{4, 5}},
		{"after, stream", "live/b", time.Time{}, 3, 0, []uint64{4, 6, 8, 10}},
		{"after the end", "", time.Time{}, 10, 0, []uint64{}},
		{"since", "", t0.Add(8 * time.Minute), 0, 0, []uint64{8, 9, 10}},
		{"since, between events", "", t0.Add(7*time.Minute + time.Second), 0, 0, []uint64{8, 9, 10}},
		{"since, stream", "live/a", t0.Add(4 * time.Minute), 0, 0, []uint64{5, 7, 9}},
		{"since, limit is the oldest", "", t0.Add(2 * time.Minute), 0, 3, []uint64{2, 3, 4}},
		{"since and after", "live/b", t0.Add(2 * time.Minute), 6, 0, []uint64{8, 10}},
		{"since in the future", "", t0.Add(time.Hour), 0, 0, []uint64{}},
	}
	for _, c := range cases {
		got, err := l.Query(c.stream, c.since, c.after, c.limit)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !eq(seqs(got), c.want) {
			t.Errorf("%s: got %v, want %v", c.name, seqs(got), c.want)
		}
	}
	got, _ := l.Query("live/b", time.Time{}, 1, 1)
	want := Event{Seq: 2, Time: t0.Add(2 * time.Minute), Stream: "live/b", Input: "primary", Kind: "switch", From: "primary", To: "fallback", Reason: "event 2"}
	if len(got) != 1 || !got[0].Time.Equal(want.Time) {
		t.Fatalf("got %+v", got)
	}
	got[0].Time = want.Time
	if got[0] != want {
		t.Errorf("stored %+v\nwant     %+v", got[0], want)
	}
}

func TestStreamNamesThatArePrefixes(t *testing.T) {
	l := openTest(t, "", Options{})
	for _, s := range []string{"live/a", "live/a2", "live/a", "live/", "live/a2", "live/a"} {
		mustAppend(t, l, Event{Kind: "k", Stream: s, Time: t0})
	}
	for _, c := range []struct {
		stream string
		after  uint64
		want   []uint64
	}{
		{"live/a", 0, []uint64{1, 3, 6}},
		{"live/a", 1, []uint64{3, 6}},
		{"live/a2", 0, []uint64{2, 5}},
		{"live/", 0, []uint64{4}},
		{"live", 0, []uint64{}},
	} {
		got, err := l.Query(c.stream, time.Time{}, c.after, 0)
		if err != nil || !eq(seqs(got), c.want) {
			t.Errorf("%q after %d: %v %v, want %v", c.stream, c.after, seqs(got), err, c.want)
		}
	}
}

func TestOpenTrimsToSmallerRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.db")
	l := openTest(t, path, Options{})
	fill(t, l)
	l.Close()
	l2 := openTest(t, path, Options{MaxEvents: 3})
	if got, _ := l2.Query("", time.Time{}, 0, 0); !eq(seqs(got), []uint64{8, 9, 10}) {
		t.Errorf("after open with MaxEvents 3: %v", seqs(got))
	}
}

func TestAppendStampsTimeAndRejectsBadEvents(t *testing.T) {
	clk := &fakeClock{now: t0}
	l := openTest(t, "", Options{Now: clk.Now})
	e := mustAppend(t, l, Event{Kind: "online"})
	if e.Seq != 1 || !e.Time.Equal(t0) {
		t.Errorf("appended %+v", e)
	}
	e = mustAppend(t, l, Event{Kind: "x", Time: time.Now().In(time.FixedZone("X", 3600))})
	if e.Time.Location() != time.UTC || e.Time != e.Time.Round(0) {
		t.Errorf("stored time %v is not plain UTC", e.Time)
	}
	for _, bad := range []Event{{}, {Kind: KindGap}, {Kind: "x", Stream: "a\x00b"}} {
		if _, err := l.Append(bad); err == nil {
			t.Errorf("Append(%+v) accepted", bad)
		}
	}
	if l.LastSeq() != 2 {
		t.Errorf("a refused append used a sequence number: %d", l.LastSeq())
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	// fsync on, as in production; the clock is fake so the retention
	// keeps the events stamped around t0.
	opt := Options{Now: (&fakeClock{now: t0.Add(time.Hour)}).Now}
	l, err := OpenOptions(path, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(Event{Kind: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	if _, err := l.Query("", time.Time{}, 0, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("query after close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}

	l2, err := OpenOptions(path, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	got, err := l2.Query("live/a", time.Time{}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !eq(seqs(got), []uint64{1, 3, 5, 7, 9}) || got[2].Reason != "event 5" {
		t.Fatalf("after reopen: %+v", got)
	}
	e := mustAppend(t, l2, Event{Kind: "online", Stream: "live/a"})
	if e.Seq != 11 {
		t.Errorf("sequence after reopen: %d, want 11", e.Seq)
	}
}

func TestOpenRefusesCorruptFile(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	if err := os.WriteFile(garbage, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(garbage, nil)
	if err == nil || !strings.Contains(err.Error(), garbage) {
		t.Fatalf("open of a garbage file: %v", err)
	}
	t.Log(err)

	// A real log whose pages were overwritten after the meta pages.
	damaged := filepath.Join(dir, "damaged.db")
	l, err := Open(damaged, nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, l)
	l.Close()
	raw, err := os.ReadFile(damaged)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	for i := 2 * page; i < len(raw); i++ {
		raw[i] = 0xA5
	}
	os.WriteFile(damaged, raw, 0o600)
	l2, err := Open(damaged, nil)
	if err == nil {
		l2.Close()
		t.Fatal("open of a damaged log succeeded")
	}
	if !strings.Contains(err.Error(), damaged) {
		t.Fatalf("error does not name the file: %v", err)
	}
	t.Log(err)

	if _, err := Open(filepath.Join(dir, "no", "such", "dir", "x.db"), nil); err == nil || !strings.Contains(err.Error(), "no/such/dir") {
		t.Errorf("open in a missing directory: %v", err)
	}
}

func TestRetention(t *testing.T) {
	clk := &fakeClock{now: t0}
	l := openTest(t, "", Options{MaxEvents: 5, MaxAge: time.Hour, TrimEvery: 1 << 30, Now: clk.Now})
	for i := 0; i < 12; i++ {
		mustAppend(t, l, Event{Time: t0.Add(time.Duration(i) * time.Minute), Stream: "s", Kind: "k"})
	}
	n, err := l.Trim()
	if err != nil || n != 7 {
		t.Fatalf("trim: %d, %v", n, err)
	}
	got, _ := l.Query("", time.Time{}, 0, 0)
	if !eq(seqs(got), []uint64{8, 9, 10, 11, 12}) {
		t.Fatalf("after count trim: %v", seqs(got))
	}
	// The indexes went with them.
	if got, _ := l.Query("s", time.Time{}, 0, 100); !eq(seqs(got), []uint64{8, 9, 10, 11, 12}) {
		t.Errorf("stream index after trim: %v", seqs(got))
	}
	if got, _ := l.Query("", t0.Add(-time.Hour), 0, 100); !eq(seqs(got), []uint64{8, 9, 10, 11, 12}) {
		t.Errorf("time index after trim: %v", seqs(got))
	}
	// An hour later, events older than an hour go.
	clk.Set(t0.Add(time.Hour + 8*time.Minute + 30*time.Second)) // events at 7 and 8 min go
	if n, err := l.Trim(); err != nil || n != 2 {
		t.Fatalf("age trim: %d, %v", n, err)
	}
	if got, _ := l.Query("", time.Time{}, 0, 0); !eq(seqs(got), []uint64{10, 11, 12}) {
		t.Fatalf("after age trim: %v", seqs(got))
	}
}

func TestTrimRunsByItself(t *testing.T) {
	l := openTest(t, "", Options{MaxEvents: 3, TrimEvery: 10})
	for i := 0; i < 10; i++ {
		mustAppend(t, l, Event{Kind: "k"})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := l.Query("", time.Time{}, 0, 100)
		if len(got) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no automatic trim: %d events", len(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return Event{}
}

func closed(t *testing.T, ch <-chan Event) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("subscription not closed")
		}
	}
}

func TestSubscribe(t *testing.T) {
	l := openTest(t, "", Options{})
	mustAppend(t, l, Event{Kind: "before", Stream: "live/a"})
	ctx, cancel := context.WithCancel(context.Background())
	all, err := l.Subscribe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	onlyA, err := l.Subscribe(ctx, "live/a")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{"live/a", "live/b", "live/a", ""} {
		mustAppend(t, l, Event{Kind: fmt.Sprint("k", i), Stream: s})
	}
	for _, want := range []uint64{2, 3, 4, 5} {
		if e := recv(t, all); e.Seq != want {
			t.Fatalf("all: seq %d, want %d", e.Seq, want)
		}
	}
	for _, want := range []uint64{2, 4} {
		if e := recv(t, onlyA); e.Seq != want || e.Stream != "live/a" {
			t.Fatalf("live/a: %+v, want seq %d", e, want)
		}
	}
	cancel()
	closed(t, all)
	closed(t, onlyA)

	ch, err := l.Subscribe(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	closed(t, ch)
	if _, err := l.Subscribe(context.Background(), ""); !errors.Is(err, ErrClosed) {
		t.Errorf("subscribe after close: %v", err)
	}
}

func TestSlowSubscriberDoesNotBlockAppend(t *testing.T) {
	l := openTest(t, "", Options{SubscriberQueue: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, err := l.Subscribe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100; i++ {
			if _, err := l.Append(Event{Kind: "k"}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Append blocked on a subscriber that does not read")
	}
	if l.Dropped() == 0 {
		t.Fatal("nothing dropped for the slow subscriber")
	}

	// The slow one now reads: what was queued, then one gap marker naming
	// the lost range, and nothing else is lost after that.
	var got []uint64
	var gap Event
	for {
		e := recv(t, slow)
		if e.Kind == KindGap {
			gap = e
			break
		}
		got = append(got, e.Seq)
	}
	if len(got) == 0 {
		t.Fatal("nothing was queued before the gap")
	}
	first := got[len(got)-1] + 1
	if gap.From != fmt.Sprint(first) || gap.To != "100" || gap.Seq != 0 {
		t.Fatalf("gap %+v after %v", gap, got)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("queued events out of order: %v", got)
		}
	}
	if uint64(100-len(got)) != l.Dropped() {
		t.Errorf("dropped %d, but %d arrived", l.Dropped(), len(got))
	}
	if !strings.Contains(gap.Reason, "events lost") {
		t.Errorf("gap reason %q", gap.Reason)
	}
	lost, err := l.Query("", time.Time{}, first-1, 1000)
	if err != nil || len(lost) != 100-len(got) {
		t.Fatalf("the lost events are not in the store: %d, %v", len(lost), err)
	}
	mustAppend(t, l, Event{Kind: "after"})
	if e := recv(t, slow); e.Seq != 101 {
		t.Fatalf("after the gap: %+v", e)
	}
}

// A gap that happens while the subscriber still has queued events puts
// the marker in order, before the next event.
func TestGapMarkerInOrder(t *testing.T) {
	clk := &fakeClock{now: t0}
	s := &subscriber{max: 3, wake: make(chan struct{}, 1), now: clk.Now}
	for seq := uint64(1); seq <= 5; seq++ {
		s.offer(Event{Seq: seq, Kind: "k"})
	}
	// Queue: 1 2 3; lost: 4 5. Take two: there is room for the marker and
	// one event, so 6 goes in after the marker.
	s.next()
	s.next()
	s.offer(Event{Seq: 6, Kind: "k"})
	var got []string
	for {
		e, ok := s.next()
		if !ok {
			break
		}
		if e.Kind == KindGap {
			got = append(got, "gap "+e.From+"-"+e.To)
		} else {
			got = append(got, fmt.Sprint(e.Seq))
		}
	}
	if want := "[3 gap 4-5 6]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

func TestNoGoroutineLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	l, err := Open(filepath.Join(t.TempDir(), "e.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for i := 0; i < 5; i++ {
		if _, err := l.Subscribe(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	l.Subscribe(context.Background(), "x")
	mustAppend(t, l, Event{Kind: "k"})
	cancel()
	l.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
