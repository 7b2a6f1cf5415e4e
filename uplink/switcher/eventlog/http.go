package eventlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// sseWriteTimeout bounds one write to an SSE client: a client that stops
// reading is dropped instead of holding its handler forever.
const sseWriteTimeout = 30 * time.Second

// Handler serves the log over HTTP:
//
//	GET /api/v1/events?stream=&since=RFC3339&after=seq&limit=
//	    → 200 {"events":[…]} (see Query for the cursor rules)
//	GET /api/v1/events/stream?stream=[&after=seq]
//	    → Server-Sent Events: "id: <seq>", "event: <kind>", "data: <json>".
//	      A Last-Event-ID header (or after=) first replays the missed events
//	      from the store; a ": keep-alive" comment goes out every KeepAlive.
//
// Bad parameters get 400 with {"error": "..."}.
func (l *Log) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/events", l.serveQuery)
	mux.HandleFunc("GET /api/v1/events/stream", l.serveStream)
	return mux
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (l *Log) serveQuery(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since time.Time
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("since %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", s))
			return
		}
		since = t
	}
	var after uint64
	if s := q.Get("after"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("after %q: want a sequence number", s))
			return
		}
		after = v
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a number from 1 to %d", s, MaxLimit))
			return
		}
		limit = v
	}
	events, err := l.Query(q.Get("stream"), since, after, limit)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrClosed) {
			code = http.StatusServiceUnavailable
		}
		l.log.Error("event query failed", "err", err)
		httpError(w, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(struct {
		Events []Event `json:"events"`
	}{events})
}

// sse writes Server-Sent Events to one client.
type sse struct {
	w  *bufio.Writer
	rc *http.ResponseController
}

// arm gives the writes that follow sseWriteTimeout to complete.
func (s *sse) arm() error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (s *sse) flush() error {
	if err := s.arm(); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sse) event(e Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := s.arm(); err != nil {
		return err
	}
	if e.Kind != KindGap {
		fmt.Fprintf(s.w, "id: %d\n", e.Seq)
	}
	fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", e.Kind, data)
	return nil
}

func (l *Log) serveStream(w http.ResponseWriter, r *http.Request) {
	stream := r.URL.Query().Get("stream")
	replay := false
	var last uint64
	for _, src := range []struct{ name, v string }{{"Last-Event-ID", r.Header.Get("Last-Event-ID")}, {"after", r.URL.Query().Get("after")}} {
		if src.v == "" {
			continue
		}
		v, err := strconv.ParseUint(src.v, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("%s %q: want a sequence number", src.name, src.v))
			return
		}
		replay, last = true, v
		break
	}
	ctx := r.Context()
	// Subscribe before replaying: whatever is appended meanwhile is in the
	// subscription, and the replay's duplicates are skipped by Seq.
	ch, subSeq, err := l.subscribe(ctx, stream)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if !replay {
		last = subSeq
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	out := &sse{w: bufio.NewWriter(w), rc: http.NewResponseController(w)}
	fmt.Fprint(out.w, ": tandem events\n\n")

	// fill sends what the store has after last, up to the subscription's
	// start or a gap's end; both are then followed live.
	fill := func() error {
		for {
			events, err := l.Query(stream, time.Time{}, last, MaxLimit)
			if err != nil {
				return err
			}
			for _, e := range events {
				if err := out.event(e); err != nil {
					return err
				}
				last = e.Seq
			}
			if err := out.flush(); err != nil {
				return err
			}
			if len(events) < MaxLimit {
				return nil
			}
		}
	}
	if replay {
		if err := fill(); err != nil {
			l.log.Debug("event stream ended during replay", "err", err)
			return
		}
	} else if err := out.flush(); err != nil {
		return
	}

	keep := time.NewTicker(l.opt.KeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keep.C:
			fmt.Fprint(out.w, ": keep-alive\n\n")
			if err := out.flush(); err != nil {
				return
			}
		case e, ok := <-ch:
			if !ok {
				return // the log closed
			}
			if e.Kind == KindGap {
				// This client fell behind; the store has what it lost.
				if err := fill(); err != nil {
					l.log.Debug("event stream ended during gap fill", "err", err)
					return
				}
				continue
			}
			if e.Seq <= last {
				continue // already sent by a replay
			}
			if err := out.event(e); err != nil {
				return
			}
			last = e.Seq
			if err := out.flush(); err != nil {
				return
			}
		}
	}
}
