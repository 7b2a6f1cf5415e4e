package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/uplink/switcher/eventlog"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ev(seq uint64, stream, kind string) eventlog.Event {
	return eventlog.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Stream: stream, Input: "primary", Kind: kind, From: "primary", To: "fallback", Reason: fmt.Sprintf("event %d", seq)}
}

// request is what a receiver saw.
type request struct {
	header http.Header
	body   []byte
	id     uint64
	status int
}

// receiver is a webhook endpoint whose answers a test scripts.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []request
	answer func(n int, id uint64) int // n counts requests from 0
	got    chan request
}

func newReceiver(t *testing.T, answer func(n int, id uint64) int) *receiver {
	r := &receiver{t: t, answer: answer, got: make(chan request, 1000)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var p struct {
		ID uint64 `json:"id"`
	}
	json.Unmarshal(body, &p)
	r.mu.Lock()
	n := len(r.reqs)
	r.mu.Unlock()
	status := 200
	if r.answer != nil {
		status = r.answer(n, p.ID)
	}
	rq := request{header: req.Header.Clone(), body: body, id: p.ID, status: status}
	r.mu.Lock()
	r.reqs = append(r.reqs, rq)
	r.mu.Unlock()
	r.got <- rq
	w.WriteHeader(status)
}

// accepted lists the ids answered with 2xx, in order.
func (r *receiver) accepted() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, q := range r.reqs {
		if q.status/100 == 2 {
			out = append(out, q.id)
		}
	}
	return out
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// results collects Results.
type results struct {
	mu  sync.Mutex
	all []Result
}

func (rs *results) add(r Result) {
	rs.mu.Lock()
	rs.all = append(rs.all, r)
	rs.mu.Unlock()
}

func (rs *results) list() []Result {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]Result(nil), rs.all...)
}

func (rs *results) count(f func(Result) bool) int {
	n := 0
	for _, r := range rs.list() {
		if f(r) {
			n++
		}
	}
	return n
}

func delivered(r Result) bool { return r.Delivered }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// start makes a notifier with fast backoff and runs it until the test ends.
func start(t *testing.T, cfg Config) (*Notifier, *results) {
	t.Helper()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	rs := &results{}
	n, err := New(cfg, rs.add, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return n, rs
}

func seqList(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func eq(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestSignedPayload(t *testing.T) {
	rcv := newReceiver(t, nil)
	n, rs := start(t, Config{Hooks: []Hook{{URL: rcv.srv.URL + "/hook?token=abc", Secret: "s3cret"}}})
	n.Notify(ev(41, "live/a", "switch"))
	n.Notify(eventlog.Event{Seq: 42, Time: t0, Kind: "publish-refused", Reason: "bad key"})
	waitFor(t, "two deliveries", func() bool { return rs.count(delivered) == 2 })

	reqs := rcv.requests()
	q := reqs[0]
	if err := Verify("s3cret", q.header.Get("X-Tandem-Timestamp"), q.body, q.header.Get("X-Tandem-Signature")); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	want := `{"id":41,"time":"2026-03-01T12:00:41Z","stream":"live/a","kind":"switch","input":"primary","from":"primary","to":"fallback","reason":"event 41"}`
	if string(q.body) != want {
		t.Errorf("body\n got %s\nwant %s", q.body, want)
	}
	if string(reqs[1].body) != `{"id":42,"time":"2026-03-01T12:00:00Z","stream":"","kind":"publish-refused","input":"","from":"","to":"","reason":"bad key"}` {
		t.Errorf("second body %s", reqs[1].body)
	}
	for i, wantKind := range []string{"switch", "publish-refused"} {
		h := reqs[i].header
		if h.Get("Content-Type") != "application/json" || h.Get("X-Tandem-Event") != wantKind || h.Get("X-Tandem-Delivery") != strconv.Itoa(i+1) {
			t.Errorf("request %d headers %v", i, h)
		}
		ts, err := strconv.ParseInt(h.Get("X-Tandem-Timestamp"), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("timestamp %q", h.Get("X-Tandem-Timestamp"))
		}
	}
	// Tampering is caught.
	ts, sig := q.header.Get("X-Tandem-Timestamp"), q.header.Get("X-Tandem-Signature")
	for _, c := range []struct{ secret, ts, body, sig string }{
		{"wrong", ts, string(q.body), sig},
		{"s3cret", ts + "1", string(q.body), sig},
		{"s3cret", ts, strings.Replace(string(q.body), "41", "40", 1), sig},
		{"s3cret", ts, string(q.body), strings.TrimPrefix(sig, "sha256=")},
		{"s3cret", ts, string(q.body), "sha256=zz"},
	} {
		if err := Verify(c.secret, c.ts, []byte(c.body), c.sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Verify(%+v) = %v", c, err)
		}
	}
}

func TestSignatureIsHMACOfTimestampDotBody(t *testing.T) {
	// Computed independently: printf '1700000000.{"id":1}' | openssl dgst -sha256 -hmac key
	const want = "sha256=1d542af0cd7355fefa5c19021ad89d3e2afd77ebff5448db280f180e013d2651"
	if got := Sign("key", "1700000000", []byte(`{"id":1}`)); got != want {
		t.Fatalf("signature %q, want %q", got, want)
	}
	if err := Verify("key", "1700000000", []byte(`{"id":1}`), want); err != nil {
		t.Fatal(err)
	}
}

func TestNoSignatureWithoutSecret(t *testing.T) {
	rcv := newReceiver(t, nil)
	n, rs := start(t, Config{Hooks: []Hook{{URL: rcv.srv.URL}}})
	n.Notify(ev(1, "s", "k"))
	waitFor(t, "delivery", func() bool { return rs.count(delivered) == 1 })
	if h := rcv.requests()[0].header; h.Get("X-Tandem-Signature") != "" {
		t.Errorf("signature sent without a secret: %v", h)
	}
}

func TestOrderAcrossReceiverOutage(t *testing.T) {
	// 503 for the first 12 requests, then fine.
	rcv := newReceiver(t, func(n int, _ uint64) int {
		if n < 12 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	n, rs := start(t, Config{Hooks: []Hook{{URL: rcv.srv.URL}}})
	for i := uint64(1); i <= 20; i++ {
		n.Notify(ev(i, "live/a", "switch"))
	}
	waitFor(t, "20 deliveries", func() bool { return rs.count(delivered) == 20 })
	if got := rcv.accepted(); !eq(got, seqList(1, 20)) {
		t.Fatalf("accepted %v", got)
	}
	// Every attempt went in order: the receiver never saw an id before a
	// lower one was accepted.
	var last uint64
	for _, q := range rcv.requests() {
		if q.id < last {
			t.Fatalf("request for %d after %d", q.id, last)
		}
		last = q.id
	}
	failed := rs.count(func(r Result) bool { return !r.Delivered })
	if failed != 12 {
		t.Errorf("%d failed attempts reported, want 12", failed)
	}
	for _, r := range rs.list() {
		if !r.Delivered && (r.Status != 503 || r.Event != 1 || r.Err == nil || errors.Is(r.Err, ErrRefused)) {
			t.Errorf("failed attempt %+v", r)
		}
		if r.Delivered && r.Event == 1 && r.Attempt != 13 {
			t.Errorf("event 1 delivered at attempt %d, want 13", r.Attempt)
		}
	}
	// The retries kept their delivery number.
	for _, q := range rcv.requests() {
		if q.id == 1 && q.header.Get("X-Tandem-Delivery") != "1" {
			t.Errorf("retry of event 1 has delivery %q", q.header.Get("X-Tandem-Delivery"))
		}
	}
}

func TestOrderAcrossUnreachableReceiver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	n, rs := start(t, Config{Hooks: []Hook{{URL: "http://" + addr + "/hook"}}})
	for i := uint64(1); i <= 10; i++ {
		n.Notify(ev(i, "live/a", "switch"))
	}
	waitFor(t, "three failed attempts", func() bool { return rs.count(func(r Result) bool { return !r.Delivered }) >= 3 })
	for _, r := range rs.list() {
		if r.Delivered || r.Status != 0 || r.Event != 1 || r.Err == nil {
			t.Fatalf("attempt while down: %+v", r)
		}
	}
	// The receiver comes up on that address.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot listen on %s again: %v", addr, err)
		}
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	rcv := &receiver{t: t, got: make(chan request, 100)}
	srv := &http.Server{Handler: http.HandlerFunc(rcv.serve)}
	go srv.Serve(ln)
	defer srv.Close()
	waitFor(t, "10 deliveries", func() bool { return rs.count(delivered) == 10 })
	if got := rcv.accepted(); !eq(got, seqList(1, 10)) {
		t.Fatalf("accepted %v", got)
	}
}

func TestFullQueueDropsOldest(t *testing.T) {
	release := make(chan struct{})
	rcv := newReceiver(t, func(n int, _ uint64) int {
		if n == 0 {
			<-release // the first event stays in flight
		}
		return 200
	})
	n, rs := start(t, Config{Hooks: []Hook{{URL: rcv.srv.URL}}, Queue: 3})
	n.Notify(ev(1, "s", "k"))
	waitFor(t, "event 1 in flight", func() bool {
		n.hooks[0].mu.Lock()
		defer n.hooks[0].mu.Unlock()
		return n.hooks[0].sending
	})
	for i := uint64(2); i <= 10; i++ {
		n.Notify(ev(i, "s", "k"))
	}
	if q := n.Queued(0); q != 4 {
		t.Errorf("queued %d, want 3 waiting + 1 in flight", q)
	}
	waitFor(t, "6 drop reports", func() bool {
		return rs.count(func(r Result) bool { return errors.Is(r.Err, ErrDropped) }) == 6
	})
	var dropped []uint64
	for _, r := range rs.list() {
		if errors.Is(r.Err, ErrDropped) {
			dropped = append(dropped, r.Event)
			if !strings.Contains(r.Err.Error(), "queue of 3 full, dropped the oldest") {
				t.Errorf("drop reason %q", r.Err)
			}
		}
	}
	if !eq(dropped, seqList(2, 7)) {
		t.Errorf("dropped %v, want 2..7", dropped)
	}
	close(release)
	waitFor(t, "4 deliveries", func() bool { return rs.count(delivered) == 4 })
	if got := rcv.accepted(); !eq(got, []uint64{1, 8, 9, 10}) {
		t.Errorf("accepted %v", got)
	}
}

// While the head waits out a backoff it is the oldest, and a full queue
// drops it: the worker moves on at once.
func TestFullQueueDropsHeadInBackoff(t *testing.T) {
	var mu sync.Mutex
	down := true
	rcv := newReceiver(t, func(_ int, _ uint64) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return 500
		}
		return 200
	})
	n, rs := start(t, Config{Hooks: []Hook{{URL: rcv.srv.URL}}, Queue: 2, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	n.Notify(ev(1, "s", "k"))
	waitFor(t, "first failure", func() bool { return rs.count(func(r Result) bool { return r.Status == 500 }) == 1 })
	mu.Lock()
	down = false
	mu.Unlock()
	n.Notify(ev(2, "s", "k"))
	n.Notify(ev(3, "s", "k")) // full: 1 (backing off for an hour) goes
	waitFor(t, "2 and 3 delivered", func() bool { return rs.count(delivered) == 2 })
	if got := rcv.accepted(); !eq(got, []uint64{2, 3}) {
		t.Errorf("accepted %v", got)
	}
	if rs.count(func(r Result) bool { return errors.Is(r.Err, ErrDropped) && r.Event == 1 && r.Attempt == 1 }) != 1 {
		t.Errorf("no drop report for event 1: %+v", rs.list())
	}
}

func TestFilters(t *testing.T) {
	all := newReceiver(t, nil)
	onlyA := newReceiver(t, nil)
	onlySwitch := newReceiver(t, nil)
	both := newReceiver(t, nil)
	n, rs := start(t, Config{Hooks: []Hook{
		{URL: all.srv.URL},
		{URL: onlyA.srv.URL, Streams: []string{"live/a"}},
		{URL: onlySwitch.srv.URL, Kinds: []string{"switch", "health"}},
		{URL: both.srv.URL, Streams: []string{"live/b"}, Kinds: []string{"switch"}},
	}})
	n.Notify(ev(1, "live/a", "switch"))
	n.Notify(ev(2, "live/b", "online"))
	n.Notify(ev(3, "live/b", "switch"))
	n.Notify(ev(4, "live/a", "health"))
	n.Notify(ev(5, "", "publish-refused"))
	waitFor(t, "deliveries", func() bool { return rs.count(delivered) == 5+2+3+1 })
	for name, c := range map[string]struct {
		r    *receiver
		want []uint64
	}{
		"all": {all, []uint64{1, 2, 3, 4, 5}}, "stream": {onlyA, []uint64{1, 4}},
		"kind": {onlySwitch, []uint64{1, 3, 4}}, "both": {both, []uint64{3}},
	} {
		if got := c.r.accepted(); !eq(got, c.want) {
			t.Errorf("%s: got %v, want %v", name, got, c.want)
		}
	}
	// Delivery numbers are per hook.
	if d := both.requests()[0].header.Get("X-Tandem-Delivery"); d != "1" {
		t.Errorf("delivery number %q", d)
	}
}

func TestPermanentAndRetriedStatuses(t *testing.T) {
	answers := map[uint64][]int{
		1: {400},      // refused: reported, move on
		2: {408, 200}, // retried
		3: {429, 200},
		4: {404},
		5: {302}, // redirects are not followed
		6: {502, 504, 200},
	}
	var mu sync.Mutex
	rcv := newReceiver(t, func(_ int, id uint64) int {
		mu.Lock()
		defer mu.Unlock()
		a := answers[id]
		s := a[0]
		if len(a) > 1 {
			answers[id] = a[1:]
		}
		return s
	})
	n, rs := start(t, Config{Hooks: []Hook{{URL: rcv.srv.URL}}})
	for i := uint64(1); i <= 6; i++ {
		n.Notify(ev(i, "s", "k"))
	}
	waitFor(t, "all settled", func() bool {
		return rs.count(func(r Result) bool { return r.Delivered || errors.Is(r.Err, ErrRefused) }) == 6
	})
	var got []string
	for _, r := range rs.list() {
		s := fmt.Sprintf("%d:%d", r.Event, r.Status)
		if errors.Is(r.Err, ErrRefused) {
			s += " refused"
		}
		got = append(got, s)
	}
	want := "[1:400 refused 2:408 2:200 3:429 3:200 4:404 refused 5:302 refused 6:502 6:504 6:200]"
	if fmt.Sprint(got) != want {
		t.Errorf("results\n got %v\nwant %s", got, want)
	}
}

func TestMaxAttempts(t *testing.T) {
	rcv := newReceiver(t, func(_ int, id uint64) int {
		if id == 1 {
			return 500
		}
		return 200
	})
	n, rs := start(t, Config{Hooks: []Hook{{URL: rcv.srv.URL}}, MaxAttempts: 3})
	n.Notify(ev(1, "s", "k"))
	n.Notify(ev(2, "s", "k"))
	waitFor(t, "event 2", func() bool { return rs.count(delivered) == 1 })
	list := rs.list()
	if len(list) != 4 {
		t.Fatalf("results %+v", list)
	}
	last := list[2]
	if last.Attempt != 3 || !errors.Is(last.Err, ErrGaveUp) || errors.Is(list[1].Err, ErrGaveUp) {
		t.Errorf("third attempt %+v", last)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	var first time.Time
	var gap time.Duration
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			return
		}
		gap = time.Since(first)
	}))
	defer srv.Close()
	n, rs := start(t, Config{Hooks: []Hook{{URL: srv.URL}}, MinBackoff: 5 * time.Millisecond, MaxBackoff: 5 * time.Second})
	n.Notify(ev(1, "s", "k"))
	waitFor(t, "delivery", func() bool { return rs.count(delivered) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if gap < time.Second {
		t.Errorf("retried after %v despite Retry-After: 1", gap)
	}
}

func TestAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		c := calls
		mu.Unlock()
		if c == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release) // before srv.Close
	n, rs := start(t, Config{Hooks: []Hook{{URL: srv.URL}}, Timeout: 50 * time.Millisecond})
	n.Notify(ev(1, "s", "k"))
	waitFor(t, "delivery after a timeout", func() bool { return rs.count(delivered) == 1 })
	list := rs.list()
	if len(list) != 2 || list[0].Delivered || !errors.Is(list[0].Err, context.DeadlineExceeded) {
		t.Errorf("results %+v", list)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Hooks: []Hook{{URL: "ftp://x/y"}}}, "hooks[0].url"},
		{Config{Hooks: []Hook{{URL: "http://ok"}, {URL: "http://"}}}, "hooks[1].url"},
		{Config{Hooks: []Hook{{URL: "::nope"}}}, "hooks[0].url"},
		{Config{Hooks: []Hook{{URL: "https://user:pw@x/"}}}, "credentials"},
		{Config{MaxAttempts: -1}, "max_attempts"},
		{Config{Queue: -1}, "queue"},
		{Config{MinBackoff: time.Minute, MaxBackoff: time.Second}, "min_backoff"},
	} {
		_, err := New(c.cfg, nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	if _, err := New(Config{Hooks: []Hook{{URL: "https://example.com/hook"}}}, nil, nil); err != nil {
		t.Error(err)
	}
}

func TestRunStopsWithoutLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

	rs := &results{}
	n, err := New(Config{Hooks: []Hook{{URL: slow.URL}, {URL: failing.URL}, {URL: ok.URL}, {URL: ok.URL + "/idle"}},
		MinBackoff: time.Hour, MaxBackoff: time.Hour}, rs.add, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	n.Notify(ev(1, "s", "k"))
	n.Notify(ev(2, "s", "k"))
	waitFor(t, "the ok hooks", func() bool { return rs.count(delivered) == 4 })
	if err := n.Run(ctx); err == nil { // the first Run is surely running now
		t.Error("a second concurrent Run was accepted")
	}
	waitFor(t, "the failing hook's first attempt", func() bool { return rs.count(func(r Result) bool { return r.Status == 500 }) == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// What was still queued is reported, by the time Run returns.
	stillQueued := rs.count(func(r Result) bool { return errors.Is(r.Err, ErrDropped) })
	if stillQueued != 4 { // slow: 1 (cut short) and 2; failing: 1 (backing off) and 2
		t.Errorf("%d queued events reported at stop, want 4: %+v", stillQueued, rs.list())
	}
	close(hang)
	slow.Close()
	failing.Close()
	ok.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNotifyBeforeRunAndNeverBlocks(t *testing.T) {
	rs := &results{}
	n, err := New(Config{Hooks: []Hook{{URL: "http://127.0.0.1:1/"}}, Queue: 10}, rs.add, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := uint64(1); i <= 2000; i++ {
		n.Notify(ev(i, "s", "k"))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("2000 Notify calls took %v", d)
	}
	if n.Queued(0) != 10 {
		t.Errorf("queued %d", n.Queued(0))
	}
	// The drops are reported once Run runs, without Notify ever calling back.
	if len(rs.list()) != 0 {
		t.Fatal("Notify called the result callback itself")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx) }()
	waitFor(t, "drop reports", func() bool {
		return rs.count(func(r Result) bool { return errors.Is(r.Err, ErrDropped) }) >= 1990
	})
	cancel()
	<-done
}
