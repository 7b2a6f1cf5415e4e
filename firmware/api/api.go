// Package api is the appliance's local API: JSON over HTTP on a unix socket
// (for the tandem CLI over SSH) and optionally on a TCP address (for the
// web UI).
//
//	GET /api/v1/status                   Status
//	GET /api/v1/events?since=N&limit=M   {"events":[...],"next_since":S}
//	GET /healthz                         "ok"
//
// /api/v1/events without since returns the newest limit events; with
// since, the oldest limit events after seq since (poll with
// since=next_since to follow the log). limit defaults to 50, at most 1000.
// Both lists are oldest first.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"tandem/firmware/state"
)

// StatusEvents is how many of the newest events Status carries.
const StatusEvents = 10

// Event paging limits for /api/v1/events.
const (
	DefaultEventLimit = 50
	MaxEventLimit     = 1000
)

// BaseURL is the URL prefix to use with Client (the host is ignored).
const BaseURL = "http://tandem"

// ErrSocketInUse is returned by Serve when another process answers on
// the socket (a second daemon).
var ErrSocketInUse = errors.New("api socket is in use by a running daemon")

// shutdownGrace is how long Serve waits for requests in flight.
const shutdownGrace = 2 * time.Second

// Serve serves the API on the unix socket (created with mode 0660; a
// stale socket file from a crashed run is replaced; removed on return) and,
// if httpAddr is not empty, on that TCP address. It returns nil when ctx
// ends, once every connection and goroutine it started is gone, or the
// error that stopped it.
func Serve(ctx context.Context, socketPath, httpAddr string, p Provider, ev EventSource, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ul, removeSocket, err := listenUnix(socketPath, log)
	if err != nil {
		return err
	}
	defer removeSocket()
	listeners := []net.Listener{ul}
	if httpAddr != "" {
		tl, err := net.Listen("tcp", httpAddr)
		if err != nil {
			ul.Close()
			return fmt.Errorf("api: listen on %s: %w", httpAddr, err)
		}
		listeners = append(listeners, tl)
	}
	srv := &http.Server{
		Handler:           Handler(p, ev, log),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errc <- srv.Serve(l) }()
	}
	log.Info("api listening", "socket", socketPath, "http", httpAddr)

	running := len(listeners)
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-errc:
		running--
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	for ; running > 0; running-- {
		if err := <-errc; failed == nil && !errors.Is(err, http.ErrServerClosed) {
			failed = err
		}
	}
	if failed != nil && !errors.Is(failed, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", failed)
	}
	return nil
}

// bindSeq keeps temporary socket names apart within a process.
var bindSeq atomic.Uint64

// listenUnix listens on path with mode 0660. The socket is bound under a
// temporary name, given its mode, then renamed into place, so it never
// appears with the umask's permissions.
func listenUnix(path string, log *slog.Logger) (*net.UnixListener, func(), error) {
	if path == "" {
		return nil, nil, errors.New("api: no socket path")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("api: create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, nil, fmt.Errorf("api: %s exists and is not a socket; not replacing it", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, nil, fmt.Errorf("api: %s: %w", path, ErrSocketInUse)
		case !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT):
			// A timeout may be a live daemon with a full backlog.
			return nil, nil, fmt.Errorf("api: cannot tell whether %s is in use: %w", path, err)
		}
		log.Info("replacing stale api socket", "socket", path)
		if err := os.Remove(path); err != nil {
			return nil, nil, fmt.Errorf("api: remove stale socket: %w", err)
		}
	}
	bind := filepath.Join(dir, fmt.Sprintf(".tandem-api-%d-%d.sock", os.Getpid(), bindSeq.Add(1)))
	direct := len(bind) > 107 // too long for sun_path: bind in place
	if direct {
		bind = path
	}
	os.Remove(bind)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: bind, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false) // removeSocket removes the final name
	fail := func(err error) (*net.UnixListener, func(), error) {
		l.Close()
		os.Remove(bind)
		return nil, nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	if err := os.Chmod(bind, 0o660); err != nil {
		return fail(err)
	}
	if !direct {
		if err := os.Rename(bind, path); err != nil {
			return fail(err)
		}
	}
	ours, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	remove := func() {
		l.Close()
		// Only our own socket: a later daemon may have replaced it.
		if cur, err := os.Lstat(path); err == nil && os.SameFile(cur, ours) {
			os.Remove(path)
		}
	}
	return l, remove, nil
}

// Handler serves the API routes; Serve uses it, and the web UI can mount
// it on its own server.
func Handler(p Provider, ev EventSource, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := p.Status()
		if !st.Started.IsZero() {
			st.UptimeSeconds = time.Since(st.Started).Round(time.Millisecond).Seconds()
		}
		st.Events = []state.Event{}
		if ev != nil {
			evs, err := ev.Events(0, -StatusEvents)
			if err != nil {
				log.Warn("status: reading events failed", "err", err)
			} else if evs != nil {
				st.Events = evs
			}
		}
		if st.Feeds == nil {
			st.Feeds = []FeedStatus{}
		}
		if st.Links == nil {
			st.Links = []LinkStatus{}
		}
		if st.Source.Levels == nil {
			st.Source.Levels = []Level{}
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := DefaultEventLimit
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxEventLimit {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q must be 1 to %d", s, MaxEventLimit))
				return
			}
			limit = n
		}
		var since uint64
		newest := true
		if s := q.Get("since"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("since %q must be an event sequence number", s))
				return
			}
			since, newest = n, false
		}
		if ev == nil {
			writeError(w, http.StatusServiceUnavailable, "no event log")
			return
		}
		var evs []state.Event
		var err error
		if newest {
			evs, err = ev.Events(0, -limit)
		} else {
			evs, err = ev.Events(since, limit)
		}
		if err != nil {
			log.Warn("events: read failed", "err", err)
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if evs == nil {
			evs = []state.Event{}
		}
		next := since
		if len(evs) > 0 {
			next = evs[len(evs)-1].Seq
		}
		writeJSON(w, http.StatusOK, EventsResponse{Events: evs, NextSince: next})
	})
	return mux
}

// EventsResponse is GET /api/v1/events.
type EventsResponse struct {
	Events []state.Event `json:"events"`
	// NextSince is the since to ask for next to follow the log.
	NextSince uint64 `json:"next_since"`
}

// ErrorResponse is the body of every API error.
type ErrorResponse struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{Error: msg})
}

// Client is an HTTP client that reaches the API on its unix socket; use it
// with BaseURL + "/api/v1/...".
func Client(socketPath string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socketPath)
			},
			MaxIdleConns:    1,
			IdleConnTimeout: 10 * time.Second,
		},
	}
}
