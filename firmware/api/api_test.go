package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"tandem/firmware/state"
)

// fakeProvider is a Provider with a function field.
type fakeProvider struct{ status func() Status }

func (f fakeProvider) Status() Status { return f.status() }

var _ Provider = fakeProvider{}

// fakeEvents is an EventSource over a slice.
type fakeEvents struct {
	evs []state.Event
	err error
}

func (f fakeEvents) Events(since uint64, limit int) ([]state.Event, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []state.Event
	for _, e := range f.evs {
		if e.Seq > since {
			out = append(out, e)
		}
	}
	switch {
	case limit > 0 && len(out) > limit:
		out = out[:limit]
	case limit < 0 && len(out) > -limit:
		out = out[len(out)+limit:]
	}
	return out, nil
}

func someEvents(n int) fakeEvents {
	var f fakeEvents
	t0 := time.Date(2025, 11, 21, 11, 0, 0, 0, time.UTC)
	for i := 1; i <= n; i++ {
		f.evs = append(f.evs, state.Event{Seq: uint64(i), Time: t0.Add(time.Duration(i) * time.Minute), Kind: state.KindReconnect, Subject: "feed fallback", Reason: fmt.Sprint("reason ", i)})
	}
	return f
}

// shortDir is a temp dir with a path short enough for a unix socket.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "tapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serve runs Serve until the test ends and waits for the socket to answer.
func serve(t *testing.T, sock, httpAddr string, p Provider, ev EventSource) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, httpAddr, p, ev, nil) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	waitReady(t, sock, done)
	return stop
}

func waitReady(t *testing.T, sock string, done chan error) {
	t.Helper()
	c := Client(sock)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		default:
		}
		resp, err := c.Get(BaseURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("API never answered on", sock)
}

func get(t *testing.T, c *http.Client, url string, v any) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v in %s", url, err, body)
		}
	}
	return resp.StatusCode
}

func TestStatusOverUnixSocket(t *testing.T) {
	sock := filepath.Join(shortDir(t), "run", "api.sock")
	up := true
	started := time.Now().Add(-90 * time.Second)
	p := fakeProvider{status: func() Status {
		return Status{
			DeviceID: "studio1", SessionID: "s-1", Started: started,
			Source: SourceStatus{Type: "device", State: StateRunning, Levels: []Level{{-6, -18}, {-7, -19}}},
			Feeds: []FeedStatus{{Role: "primary", State: StateConnected, BitrateKbps: 128, Link: "a",
				SRT: SRTStatus{RTTms: 12.5, SendLoss: 3}, Encoder: EncoderStatus{State: StateRunning, PID: 42}}},
			Links: []LinkStatus{{Name: "a", Interface: "wana", Up: &up, Address: "10.201.1.2"}},
		}
	}}
	serve(t, sock, "", p, someEvents(25))

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(sock), ".tandem-api-*")); len(left) > 0 {
		t.Errorf("temporary socket names left behind: %v", left)
	}

	var st Status
	if code := get(t, Client(sock), BaseURL+"/api/v1/status", &st); code != 200 {
		t.Fatalf("status: HTTP %d", code)
	}
	if st.DeviceID != "studio1" || st.Source.Levels[1].RMSDBFS != -19 || st.Feeds[0].SRT.RTTms != 12.5 || *st.Links[0].Up != true {
		t.Errorf("status came back as %+v", st)
	}
	if st.UptimeSeconds < 89 || st.UptimeSeconds > 120 {
		t.Errorf("uptime %v s, want about 90", st.UptimeSeconds)
	}
	if len(st.Events) != StatusEvents || st.Events[0].Seq != 16 || st.Events[9].Seq != 25 {
		t.Errorf("status events %+v, want the newest %d oldest first", st.Events, StatusEvents)
	}
}

func TestEventsEndpoint(t *testing.T) {
	sock := filepath.Join(shortDir(t), "api.sock")
	serve(t, sock, "", fakeProvider{status: func() Status { return Status{} }}, someEvents(120))
	c := Client(sock)
	seqs := func(r EventsResponse) string {
		if len(r.Events) == 0 {
			return "none"
		}
		return fmt.Sprintf("%d..%d next %d", r.Events[0].Seq, r.Events[len(r.Events)-1].Seq, r.NextSince)
	}
	for _, tc := range []struct{ query, want string }{
		{"", "71..120 next 120"},
		{"?limit=5", "116..120 next 120"},
		{"?since=0&limit=5", "1..5 next 5"},
		{"?since=100", "101..120 next 120"},
		{"?since=120", "none"},
	} {
		var r EventsResponse
		if code := get(t, c, BaseURL+"/api/v1/events"+tc.query, &r); code != 200 {
			t.Fatalf("%s: HTTP %d", tc.query, code)
		}
		if got := seqs(r); got != tc.want {
			t.Errorf("events%s = %s, want %s", tc.query, got, tc.want)
		}
		if tc.query == "?since=120" && (r.Events == nil || r.NextSince != 120) {
			t.Errorf("an empty page must be [] with next_since kept: %+v", r)
		}
	}
	for _, q := range []string{"?limit=0", "?limit=5000", "?limit=x", "?since=-1"} {
		var e ErrorResponse
		if code := get(t, c, BaseURL+"/api/v1/events"+q, &e); code != 400 || e.Error == "" {
			t.Errorf("events%s: HTTP %d %+v, want 400 with a message", q, code, e)
		}
	}
}

func TestEventReadFailureStillServesStatus(t *testing.T) {
	sock := filepath.Join(shortDir(t), "api.sock")
	serve(t, sock, "", fakeProvider{status: func() Status { return Status{DeviceID: "x"} }}, fakeEvents{err: errors.New("disk gone")})
	var st Status
	if code := get(t, Client(sock), BaseURL+"/api/v1/status", &st); code != 200 || st.DeviceID != "x" || st.Events == nil {
		t.Fatalf("status with a failing event log: %d %+v", code, st)
	}
	var e ErrorResponse
	if code := get(t, Client(sock), BaseURL+"/api/v1/events", &e); code != 500 || !strings.Contains(e.Error, "disk gone") {
		t.Fatalf("events with a failing event log: %d %+v", code, e)
	}
}

func TestHTTPListenerAndSocketLifecycle(t *testing.T) {
	before := runtime.NumGoroutine()
	sock := filepath.Join(shortDir(t), "api.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	stop := serve(t, sock, addr, fakeProvider{status: func() Status { return Status{DeviceID: "over-tcp"} }}, someEvents(1))
	var st Status
	if code := get(t, http.DefaultClient, "http://"+addr+"/api/v1/status", &st); code != 200 || st.DeviceID != "over-tcp" {
		t.Fatalf("HTTP status: %d %+v", code, st)
	}
	// A keep-alive connection open on each listener must not hold Serve.
	if resp, err := http.DefaultClient.Get("http://" + addr + "/healthz"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v after cancel, want nil", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("HTTP listener still open after Serve returned")
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before Serve, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	sock := filepath.Join(shortDir(t), "api.sock")
	// A socket file nobody listens on: what a crashed daemon leaves.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatal("stale socket was not left behind:", err)
	}
	serve(t, sock, "", fakeProvider{status: func() Status { return Status{DeviceID: "fresh"} }}, nil)
	var st Status
	if get(t, Client(sock), BaseURL+"/api/v1/status", &st); st.DeviceID != "fresh" {
		t.Fatalf("status over the replaced socket: %+v", st)
	}
}

func TestSocketInUseIsRefused(t *testing.T) {
	sock := filepath.Join(shortDir(t), "api.sock")
	serve(t, sock, "", fakeProvider{status: func() Status { return Status{DeviceID: "first"} }}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Serve(ctx, sock, "", fakeProvider{status: func() Status { return Status{} }}, nil, nil)
	if !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second Serve on a live socket: %v, want ErrSocketInUse", err)
	}
	var st Status
	if get(t, Client(sock), BaseURL+"/api/v1/status", &st); st.DeviceID != "first" {
		t.Fatalf("the first daemon's socket was disturbed: %+v", st)
	}
}

func TestNonSocketFileIsNotReplaced(t *testing.T) {
	sock := filepath.Join(shortDir(t), "api.sock")
	os.WriteFile(sock, []byte("precious"), 0o600)
	err := Serve(context.Background(), sock, "", fakeProvider{status: func() Status { return Status{} }}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(sock); string(b) != "precious" {
		t.Fatal("the file was touched")
	}
}

func TestHTTPListenFailureCleansUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sock := filepath.Join(shortDir(t), "api.sock")
	err = Serve(context.Background(), sock, l.Addr().String(), fakeProvider{status: func() Status { return Status{} }}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("Serve on a taken HTTP address: %v", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after a failed start: %v", err)
	}
}
