package eventlog

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"tandem/scripts/logbuf"
	"testing"
	"time"
)

func TestQueryHandler(t *testing.T) {
	l := openTest(t, "", Options{})
	fill(t, l)
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()

	get := func(q string) (int, string, []uint64) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/api/v1/events" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return resp.StatusCode, string(body), nil
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type %q", ct)
		}
		var out struct {
			Events []Event `json:"events"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if out.Events == nil {
			t.Errorf("%s: events is not an array: %s", q, body)
		}
		return 200, string(body), seqs(out.Events)
	}
	for _, c := range []struct {
		q    string
		want []uint64
	}{
		{"", []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"?limit=2", []uint64{9, 10}},
		{"?stream=live/a&after=3&limit=2", []uint64{5, 7}},
		{"?stream=live%2Fb&since=2026-03-01T12:07:00Z", []uint64{8, 10}},
		{"?since=2026-03-01T13:07:00%2B01:00&after=8", []uint64{9, 10}},
		{"?stream=nope", []uint64{}},
	} {
		code, body, got := get(c.q)
		if code != 200 || !eq(got, c.want) {
			t.Errorf("%s: %d %v, want %v (%s)", c.q, code, got, c.want, body)
		}
	}
	_, body, _ := get("?stream=live/a&limit=1")
	if !strings.Contains(body, `"seq":9,"time":"2026-03-01T12:09:00Z","stream":"live/a","input":"primary","kind":"switch","from":"primary","to":"fallback","reason":"event 9"`) {
		t.Errorf("event JSON: %s", body)
	}
	for _, q := range []string{"?since=yesterday", "?after=-1", "?limit=x"} {
		code, body, _ := get(q)
		if code != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	resp, err := http.Post(srv.URL+"/api/v1/events", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

// frame is one Server-Sent Events message, or a comment.
type frame struct {
	id, event, data, comment string
}

func readFrame(t *testing.T, r *bufio.Reader) frame {
	t.Helper()
	var f frame
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the event stream: %v (partial %+v)", err, f)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return f
		}
		switch k, v, _ := strings.Cut(line, ": "); k {
		case "id":
			f.id = v
		case "event":
			f.event = v
		case "data":
			f.data = v
		case "":
			f.comment = v
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
}

// sseClient connects and reads the opening comment, so the subscription
// is in place when it returns.
func sseClient(t *testing.T, url string, lastID string) (*bufio.Reader, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	if f := readFrame(t, r); f.comment == "" {
		t.Fatalf("first frame %+v, want the opening comment", f)
	}
	return r, func() { cancel(); resp.Body.Close() }
}

func wantEvent(t *testing.T, r *bufio.Reader, seq uint64, kind string) Event {
	t.Helper()
	for {
		f := readFrame(t, r)
		if f.comment != "" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(f.data), &e); err != nil {
			t.Fatalf("data %q: %v", f.data, err)
		}
		if f.id != strconv.FormatUint(seq, 10) || e.Seq != seq || f.event != kind || e.Kind != kind {
			t.Fatalf("got id %q event %q %+v, want seq %d kind %s", f.id, f.event, e, seq, kind)
		}
		return e
	}
}

func TestSSELive(t *testing.T) {
	l := openTest(t, "", Options{})
	mustAppend(t, l, Event{Kind: "old", Stream: "live/a"})
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	r, stop := sseClient(t, srv.URL+"/api/v1/events/stream?stream=live/a", "")
	defer stop()
	mustAppend(t, l, Event{Kind: "switch", Stream: "live/b"})
	mustAppend(t, l, Event{Kind: "switch", Stream: "live/a", From: "primary", To: "fallback", Reason: "stall"})
	mustAppend(t, l, Event{Kind: "online", Stream: "live/a"})
	e := wantEvent(t, r, 3, "switch") // no replay of 1 without Last-Event-ID; 2 is another stream
	if e.From != "primary" || e.To != "fallback" || e.Reason != "stall" {
		t.Errorf("event %+v", e)
	}
	wantEvent(t, r, 4, "online")
}

func TestSSELastEventIDReplay(t *testing.T) {
	l := openTest(t, "", Options{})
	fill(t, l)
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()

	r, stop := sseClient(t, srv.URL+"/api/v1/events/stream", "6")
	for seq := uint64(7); seq <= 10; seq++ {
		wantEvent(t, r, seq, "switch")
	}
	mustAppend(t, l, Event{Kind: "online", Stream: "live/a"})
	wantEvent(t, r, 11, "online")
	stop()

	// With a stream filter, and with after= for clients that cannot set
	// the header.
	r, stop = sseClient(t, srv.URL+"/api/v1/events/stream?stream=live/b&after=5", "")
	defer stop()
	for _, seq := range []uint64{6, 8, 10} {
		wantEvent(t, r, seq, "switch")
	}
	mustAppend(t, l, Event{Kind: "offline", Stream: "live/b"})
	wantEvent(t, r, 12, "offline")

	resp, err := http.Get(srv.URL + "/api/v1/events/stream?after=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("bad after: %d", resp.StatusCode)
	}
}

func TestSSEKeepAlive(t *testing.T) {
	l := openTest(t, "", Options{KeepAlive: 20 * time.Millisecond})
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	r, stop := sseClient(t, srv.URL+"/api/v1/events/stream", "")
	defer stop()
	for i := 0; i < 2; i++ {
		if f := readFrame(t, r); f.comment != "keep-alive" {
			t.Fatalf("frame %+v, want a keep-alive comment", f)
		}
	}
}

func TestSSEEndsWhenLogCloses(t *testing.T) {
	l := openTest(t, "", Options{})
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	r, stop := sseClient(t, srv.URL+"/api/v1/events/stream", "")
	defer stop()
	l.Close()
	if _, err := io.ReadAll(r); err != nil {
		t.Fatalf("stream did not end cleanly: %v", err)
	}
}

// stuckWriter is an SSE client that reads nothing until released.
type stuckWriter struct {
	header http.Header
	gate   chan struct{}
	logbuf.Buffer
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Flush()              {}
func (w *stuckWriter) Write(p []byte) (int, error) {
	<-w.gate
	return w.Buffer.Write(p)
}

// A client that stops reading holds neither Append nor anyone else, and
// once it reads again it gets every event, in order, exactly once: the
// handler fills its gap from the store.
func TestSSESlowClient(t *testing.T) {
	l := openTest(t, "", Options{SubscriberQueue: 2})
	w := &stuckWriter{header: http.Header{}, gate: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "GET", "/api/v1/events/stream", nil)
	served := make(chan struct{})
	go func() {
		defer close(served)
		l.Handler().ServeHTTP(w, req)
	}()
	// Wait for the handler's subscription.
	for deadline := time.Now().Add(5 * time.Second); ; {
		l.mu.Lock()
		n := len(l.subs)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("handler did not subscribe")
		}
		time.Sleep(time.Millisecond)
	}
	const total = 300
	appended := make(chan error, 1)
	go func() {
		for i := 0; i < total; i++ {
			if _, err := l.Append(Event{Kind: "k", Reason: strings.Repeat("x", 100)}); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Append blocked on a stuck SSE client")
	}
	if l.Dropped() == 0 {
		t.Fatal("the stuck client's subscription dropped nothing; the test proves nothing")
	}
	close(w.gate)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(w.String(), fmt.Sprintf("id: %d\n", total)); {
		if time.Now().After(deadline) {
			t.Fatalf("the client never got event %d", total)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-served
	var ids []uint64
	for _, line := range strings.Split(w.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			ids = append(ids, n)
		}
		if strings.HasPrefix(line, "event: "+KindGap) {
			t.Errorf("the gap marker reached the client: the handler should have filled it")
		}
	}
	if len(ids) != total {
		t.Fatalf("got %d events, want %d", len(ids), total)
	}
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("event %d has id %d: out of order or duplicated", i, id)
		}
	}
}
