package daemon

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/firmware/api"
	"tandem/firmware/cli"
	"tandem/firmware/config"
	"tandem/firmware/state"
	"tandem/scripts/e2e"
	"tandem/uplink/sender"
)

func testConfig(t *testing.T) config.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "tdmn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := config.Default()
	c.StateDir = filepath.Join(dir, "state")
	c.API = config.API{Socket: filepath.Join(dir, "run", "api.sock")}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs Run until the returned stop is called.
func start(t *testing.T, cfg config.Config) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code := (cli.Program{}).Main([]string{"status", "-socket", cfg.API.Socket}); code == 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon's API never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

func status(t *testing.T, cfg config.Config) string {
	t.Helper()
	var out, errs strings.Builder
	code := cli.Program{Stdout: &out, Stderr: &errs}.Main([]string{"status", "-socket", cfg.API.Socket})
	if code != 0 {
		t.Fatalf("tandem status: exit %d: %s", code, errs.String())
	}
	return out.String()
}

func TestRunServesStatusAndRecordsStartAndStop(t *testing.T) {
	cfg := testConfig(t)
	stop := start(t, cfg)
	out := status(t, cfg)
	// Nothing listens at the feeds' destination: both feeds are trying.
	for _, want := range []string{"tandem  device tandem", "primary ", "fallback ", "srt://127.0.0.1:",
		"127.0.0.2", "not watched", "INPUT  tone 440 Hz at -12 dBFS", "start", "first run with this state directory"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Lstat(cfg.API.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}

	// The second run records what changed, and the first run's stop.
	cfg.Feeds.Fallback.Bitrate = 48000
	stop = start(t, cfg)
	out = status(t, cfg)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stop", "shutdown requested", "changed since the last run: feeds.fallback.bitrate"} {
		if !strings.Contains(out, want) {
			t.Errorf("second run's status lacks %q:\n%s", want, out)
		}
	}
	st, err := state.Open(filepath.Join(cfg.StateDir, config.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, _ := st.Events(0, 0)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, " "); got != "start config stop start config stop" {
		t.Errorf("events %s", got)
	}
	saved, err := st.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := config.Parse(saved); err != nil || c.Feeds.Fallback.Bitrate != 48000 {
		t.Errorf("last good config %s: %v", saved, err)
	}
}

func TestRunMovesACorruptStateAside(t *testing.T) {
	cfg := testConfig(t)
	path := filepath.Join(cfg.StateDir, config.DBFile)
	os.MkdirAll(cfg.StateDir, 0o750)
	os.WriteFile(path, []byte(strings.Repeat("garbage ", 4096)), 0o600)
	stop := start(t, cfg)
	out := status(t, cfg)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "the state database was corrupt and was moved to "+path+".corrupt-") {
		t.Errorf("the start event does not say the state was recovered:\n%s", out)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 1 {
		t.Errorf("corrupt file not kept aside: %v", m)
	}
}

func TestStartAfterAnUncleanStopSaysSo(t *testing.T) {
	cfg := testConfig(t)
	st, _, err := OpenState(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Append(state.Event{Kind: state.KindStart, Subject: "daemon"})
	st.Append(state.Event{Kind: state.KindLinkDown, Subject: "link b", Reason: "carrier lost"})
	if r := StartReason(st, ""); !strings.Contains(r, "previous run ended without stopping") || !strings.Contains(r, "#2") {
		t.Errorf("start reason after a kill: %q", r)
	}
	st.Append(state.Event{Kind: state.KindStop, Subject: "daemon"})
	if r := StartReason(st, ""); strings.Contains(r, "without stopping") {
		t.Errorf("start reason after a clean stop: %q", r)
	}
	st.Close()
}

func TestSecondDaemonIsRefused(t *testing.T) {
	cfg := testConfig(t)
	stop := start(t, cfg)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Run(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second daemon on the same state: %v", err)
	}
}

// statusJSON reads GET /api/v1/status from the daemon's socket.
func statusJSON(t *testing.T, cfg config.Config) api.Status {
	t.Helper()
	resp, err := api.Client(cfg.API.Socket).Get(api.BaseURL + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decoding the status: %v", err)
	}
	return st
}

func TestStatusDatesTheCaptureTimeline(t *testing.T) {
	cfg := testConfig(t)
	before := time.Now()
	stop := start(t, cfg)
	defer stop()
	var st api.Status
	if !e2e.WaitFor(5*time.Second, func() bool { st = statusJSON(t, cfg); return !st.SessionStarted.IsZero() }) {
		t.Fatalf("status never dated the session: %+v", st)
	}
	// The tone's sample 0 is due when capture starts: after Run was
	// called, and before the status that reports it.
	if st.SessionStarted.Before(before) || st.SessionStarted.After(time.Now()) {
		t.Errorf("session_started %v is not between the start (%v) and now", st.SessionStarted, before)
	}
	if st.Source.SampleRate != 48000 || st.Source.Channels != 2 {
		t.Errorf("capture format %d Hz %d ch, want the default 48000 Hz 2 ch", st.Source.SampleRate, st.Source.Channels)
	}
	if st.SessionID == "" {
		t.Error("no session id next to session_started")
	}
}

// The config's bound on max_pack_delay is the sender's: a value the config
// accepts never fails the sender at start.
func TestMaxPackDelayBoundMatchesSender(t *testing.T) {
	if config.MaxPackDelay != sender.MaxPackDelayLimit {
		t.Errorf("config allows max_pack_delay up to %v, the sender up to %v", config.MaxPackDelay, sender.MaxPackDelayLimit)
	}
}
