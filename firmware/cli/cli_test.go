package cli

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/firmware/config"
)

// run runs the tandem command in-process.
func run(t *testing.T, p Program, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	p.Stdout, p.Stderr = &out, &errb
	if p.Now == nil {
		p.Now = func() time.Time { return now }
	}
	code = p.Main(args)
	return code, out.String(), errb.String()
}

var now = time.Date(2025, 11, 21, 12, 0, 0, 0, time.UTC)

// statusJSON is what a daemon with one healthy and one struggling feed
// answers. It is written out by hand so it pins the wire format.
const statusJSON = `{
  "device_id": "studio1",
  "session_id": "7f3a9c21",
  "version": "1.0.0",
  "started": "2025-11-21T09:57:00Z",
  "uptime_s": 7380,
  "source": {
    "type": "device",
    "name": "alsa:hw:1",
    "state": "running",
    "levels": [{"peak_dbfs": -6, "rms_dbfs": -18}, {"peak_dbfs": -200, "rms_dbfs": -200}],
    "silent_ms": 0
  },
  "feeds": [
    {"role": "primary", "state": "connected", "encoder": {"state": "running", "restarts": 2, "pid": 4242},
     "bitrate_kbps": 128.4, "dest": "srt://10.201.0.1:9000", "link": "a",
     "srt": {"rtt_ms": 12.5, "send_loss": 3, "retrans": 7},
     "sent": 123456, "dropped": 1, "reconnects": 0, "connected_since": "2025-11-21T10:58:00Z"},
    {"role": "fallback", "state": "reconnecting", "encoder": {"state": "running", "restarts": 1, "pid": 4243},
     "bitrate_kbps": 64, "dest": "icecast://source:xxxxx@10.201.0.1:8000/studio1_fallback.aac", "link": "b",
     "srt": {"rtt_ms": 0, "send_loss": 0, "retrans": 0},
     "sent": 5000, "dropped": 88, "reconnects": 4, "error": "connect: connection timed out"}
  ],
  "links": [
    {"name": "a", "interface": "wana", "up": true, "address": "10.201.1.2", "gateway": "10.201.1.1", "table": 101, "routed": true},
    {"name": "b", "interface": "wanb", "up": false, "address": "10.201.2.2", "gateway": "10.201.2.1", "table": 102, "routed": false}
  ],
  "events": [
    {"seq": 24, "time": "2025-11-21T11:58:01Z", "kind": "link-down", "subject": "link b", "reason": "carrier lost on wanb"},
    {"seq": 25, "time": "2025-11-21T11:58:02Z", "kind": "reconnect", "subject": "feed fallback", "reason": "connect: connection timed out"}
  ]
}`

const eventsJSON = `{"events": [
  {"seq": 6, "time": "2025-11-21T11:00:00Z", "kind": "encoder-restart", "subject": "feed primary", "reason": "ffmpeg exited with status 1"},
  {"seq": 7, "time": "2025-11-21T11:00:05Z", "kind": "link-up", "subject": "link b", "reason": "carrier back"}
], "next_since": 7}`

// fakeDaemon answers canned JSON on a unix socket and records the
// queries it got.
type fakeDaemon struct {
	sock    string
	mu      sync.Mutex
	queries []string
}

func startFake(t *testing.T, handler http.HandlerFunc) *fakeDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "tcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeDaemon{sock: filepath.Join(dir, "api.sock")}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(statusJSON))
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.queries = append(f.queries, r.URL.RawQuery)
		f.mu.Unlock()
		w.Write([]byte(eventsJSON))
	})
	var h http.Handler = mux
	if handler != nil {
		h = handler
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

func TestStatusReport(t *testing.T) {
	f := startFake(t, nil)
	code, out, errs := run(t, Program{}, "status", "-socket", f.sock)
	if code != ExitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	t.Logf("tandem status:\n%s", out)
	lines := strings.Split(out, "\n")
	line := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return l
			}
		}
		t.Errorf("no line starting %q in:\n%s", prefix, out)
		return ""
	}
	expect := func(l string, words ...string) {
		t.Helper()
		for _, w := range words {
			if !strings.Contains(l, w) {
				t.Errorf("line %q lacks %q", l, w)
			}
		}
	}
	expect(lines[0], "studio1", "session 7f3a9c21", "up 2h03m", "version 1.0.0")
	// Links: the words a person looks for.
	expect(line("a "), " up ", "wana", "10.201.1.2", "gw 10.201.1.1", "table 101", "routed")
	expect(line("b "), "DOWN", "wanb", "10.201.2.2", "not routed")
	// Feeds: state, bitrate, link, dest, then the numbers.
	expect(line("primary"), "connected", "128 kbit/s", "link a", "srt://10.201.0.1:9000")
	expect(line("fallback"), "RECONNECTING", "64 kbit/s", "link b", "xxxxx@")
	expect(line("rtt 12.5 ms"), "loss 3", "retrans 7", "reconnects 0", "encoder running pid 4242, 2 restarts", "dropped 1")
	expect(line("rtt -"), "reconnects 4", "dropped 88", "pid 4243, 1 restart")
	expect(line("connected 1h02m ago"), "since 2025-11-21 10:58:00")
	expect(line("last error:"), "connection timed out")
	// Input levels: dBFS and a bar; silence shows as -inf.
	expect(line("INPUT"), "device", "alsa:hw:1", "running")
	expect(line("L "), "peak  -6.0 dBFS", "rms -18.0 dBFS", "[#################")
	expect(line("R "), "-inf dBFS", "[------------------------------]")
	// Events with times and reasons.
	expect(line("#24"), "2025-11-21 11:58:01", "link-down", "link b", "carrier lost on wanb")
	expect(line("#25"), "reconnect", "feed fallback", "connection timed out")
	if strings.Contains(out, "hackme") {
		t.Error("a password shows")
	}
}

func TestStatusJSON(t *testing.T) {
	f := startFake(t, nil)
	code, out, _ := run(t, Program{}, "status", "-json", "-socket", f.sock)
	if code != ExitOK || out != statusJSON {
		t.Fatalf("status -json: exit %d, %q", code, out)
	}
}

func TestStatusWhenDaemonIsNotRunning(t *testing.T) {
	dir, _ := os.MkdirTemp("", "tcli")
	defer os.RemoveAll(dir)
	missing := filepath.Join(dir, "api.sock")
	code, out, errs := run(t, Program{}, "status", "-socket", missing)
	if code != ExitError || out != "" || strings.TrimSpace(errs) != "tandem daemon not running (no socket at "+missing+")" {
		t.Fatalf("no socket: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// A socket file nobody listens on (the daemon was killed).
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: missing, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	code, _, errs = run(t, Program{}, "status", "-socket", missing)
	if code != ExitError || !strings.Contains(errs, "tandem daemon not running (socket "+missing+" refuses connections") {
		t.Fatalf("stale socket: exit %d, stderr %q", code, errs)
	}
	// events says the same.
	code, _, errs = run(t, Program{}, "events", "-socket", filepath.Join(dir, "nope.sock"))
	if code != ExitError || !strings.Contains(errs, "tandem daemon not running (no socket at") {
		t.Fatalf("events without a daemon: exit %d, stderr %q", code, errs)
	}
}

func TestSocketFromEnvironmentAndFlag(t *testing.T) {
	f := startFake(t, nil)
	code, out, errs := run(t, Program{Environ: []string{"TANDEM_API_SOCKET=" + f.sock}}, "status")
	if code != ExitOK || !strings.Contains(out, "studio1") {
		t.Fatalf("TANDEM_API_SOCKET: exit %d %q %q", code, out, errs)
	}
	// The flag wins over the environment.
	code, _, errs = run(t, Program{Environ: []string{"TANDEM_API_SOCKET=" + f.sock}}, "status", "-socket", f.sock+".other")
	if code != ExitError || !strings.Contains(errs, f.sock+".other") {
		t.Fatalf("-socket over the environment: exit %d %q", code, errs)
	}
}

func TestAPIErrorIsShown(t *testing.T) {
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		w.Write([]byte(`{"error": "state: read events: disk on fire"}`))
	})
	code, _, errs := run(t, Program{}, "events", "-socket", f.sock)
	if code != ExitError || !strings.Contains(errs, "disk on fire") {
		t.Fatalf("API error: exit %d, stderr %q", code, errs)
	}
}

func TestEventsCommand(t *testing.T) {
	f := startFake(t, nil)
	code, out, errs := run(t, Program{}, "events", "-socket", f.sock, "-since", "5", "-n", "2")
	if code != ExitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{"#6", "2025-11-21 11:00:00", "encoder-restart", "feed primary", "ffmpeg exited with status 1", "#7", "link-up", "carrier back"} {
		if !strings.Contains(out, want) {
			t.Errorf("events output lacks %q:\n%s", want, out)
		}
	}
	run(t, Program{}, "events", "-socket", f.sock)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) != 2 || f.queries[0] != "limit=2&since=5" || f.queries[1] != "limit=50" {
		t.Errorf("queries %q, want limit=2&since=5 then limit=50", f.queries)
	}
	if code, _, errs := run(t, Program{}, "events", "-socket", f.sock, "-n", "0"); code != ExitUsage || !strings.Contains(errs, "-n 0") {
		t.Errorf("-n 0: exit %d %q", code, errs)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"feeds": {"fallback": {"sample_rate": 44100, "link": "c"}, "primary": {"dest": "http://x"}}}`), 0o600)
	code, out, errs := run(t, Program{}, "config", "check", "-config", bad)
	if code != ExitUsage {
		t.Fatalf("bad config: exit %d, want %d", code, ExitUsage)
	}
	t.Logf("stderr:\n%s", errs)
	for _, want := range []string{bad + " is invalid",
		"feeds.fallback.sample_rate (44100) must equal feeds.primary.sample_rate (48000)",
		`feeds.fallback.link: "c" is not in links`,
		"feeds.primary.dest: http://x: scheme"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if out != "" {
		t.Errorf("stdout %q on failure", out)
	}

	unknown := filepath.Join(dir, "unknown.json")
	os.WriteFile(unknown, []byte(`{"feeds": {"primary": {"bitrat": 1}}}`), 0o600)
	if code, _, errs := run(t, Program{}, "config", "check", "-config", unknown); code != ExitUsage || !strings.Contains(errs, "config "+unknown+": unknown key feeds.primary.bitrat") {
		t.Errorf("unknown key: exit %d %q", code, errs)
	}
	if code, _, errs := run(t, Program{Environ: []string{"TANDEM_NOPE=1"}}, "config", "check"); code != ExitUsage || !strings.Contains(errs, "TANDEM_NOPE") {
		t.Errorf("unknown variable: exit %d %q", code, errs)
	}

	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"device_id": "studio1", "passphrase": "0123456789ab"}`), 0o600)
	code, out, errs = run(t, Program{}, "config", "check", "-config", good, "-print")
	if code != ExitOK || !strings.Contains(out, "config OK ("+good+")") || !strings.Contains(out, "live/studio1") || errs != "" {
		t.Fatalf("good config: exit %d %q %q", code, out, errs)
	}
	if strings.Contains(out, "0123456789ab") {
		t.Error("-print shows the passphrase")
	}
}

func TestUsageAndExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{nil, ExitUsage, "", "usage: tandem"},
		{[]string{"frobnicate"}, ExitUsage, "", `unknown command "frobnicate"`},
		{[]string{"config"}, ExitUsage, "", "usage: tandem"},
		{[]string{"config", "bless"}, ExitUsage, "", `unknown command "bless"`},
		{[]string{"status", "-bogus"}, ExitUsage, "", "flag provided but not defined"},
		{[]string{"status", "extra"}, ExitUsage, "", `unexpected argument "extra"`},
		{[]string{"help"}, ExitOK, "usage: tandem", ""},
		{[]string{"version"}, ExitOK, "tandem ", ""},
		{[]string{"config", "env"}, ExitOK, "TANDEM_FEEDS_FALLBACK_DEST", ""},
	} {
		code, out, errs := run(t, Program{}, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderr) || (tc.stdout == "" && out != "") {
			t.Errorf("tandem %v: exit %d, stdout %q, stderr %q; want exit %d, %q, %q", tc.args, code, out, errs, tc.code, tc.stdout, tc.stderr)
		}
	}
}

func TestRunCallsTheHook(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.json")
	os.WriteFile(path, []byte(`{"device_id": "studio9"}`), 0o600)
	var got config.Config
	calls := 0
	p := Program{
		Environ: []string{"TANDEM_FEEDS_FALLBACK_BITRATE=48000"},
		Run: func(ctx context.Context, cfg config.Config, log *slog.Logger) error {
			calls++
			got = cfg
			if ctx.Err() != nil || log == nil {
				t.Error("Run got a dead context or no logger")
			}
			return nil
		},
	}
	if code, _, errs := run(t, p, "run", "-config", path); code != ExitOK || calls != 1 {
		t.Fatalf("run: exit %d, %d calls, stderr %q", code, calls, errs)
	}
	if got.DeviceID != "studio9" || got.Feeds.Fallback.Bitrate != 48000 {
		t.Errorf("Run got %+v", got)
	}
	// An invalid config never reaches Run.
	p.Environ = []string{"TANDEM_FEEDS_FALLBACK_SAMPLE_RATE=44100"}
	code, _, errs := run(t, p, "run", "-config", path)
	if code != ExitUsage || calls != 1 || !strings.Contains(errs, "feeds.fallback.sample_rate (44100)") {
		t.Fatalf("invalid config: exit %d, %d calls, stderr %q", code, calls, errs)
	}
	// A failing daemon exits 1.
	p.Environ = nil
	p.Run = func(context.Context, config.Config, *slog.Logger) error { return errors.New("boom") }
	if code, _, errs := run(t, p, "run"); code != ExitError || !strings.Contains(errs, "boom") {
		t.Fatalf("failing Run: exit %d %q", code, errs)
	}
}

func TestHumanAndBar(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 45 * time.Second: "45s", 12*time.Minute + 3*time.Second: "12m03s",
		2*time.Hour + 3*time.Minute: "2h03m", 76 * time.Hour: "3d04h", -time.Second: "0s",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%v) = %q, want %q", d, got, want)
		}
	}
	for _, tc := range []struct {
		rms, peak float64
		want      string
	}{
		{-200, -200, "[------------------------------]"},
		{-30, -20, "[###############----|----------]"},
		{0, 0, "[#############################|]"},
		{-70, 3, "[-----------------------------|]"},
	} {
		if got := bar(tc.rms, tc.peak); got != tc.want {
			t.Errorf("bar(%v, %v) = %s, want %s", tc.rms, tc.peak, got, tc.want)
		}
	}
}
