package daemon_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/firmware/api"
	"tandem/hal/audio/pulsetest"
	"tandem/scripts/e2e"
	"tandem/uplink/testpub"
)

// runDaemon writes cfg and runs `tandem run` with env until the test ends.
func runDaemon(t *testing.T, cfg map[string]any, env []string) (socket string, cmd *exec.Cmd) {
	t.Helper()
	bin := e2e.Binary(t, "tandem/firmware/cmd/tandem")
	dir := t.TempDir()
	socket = filepath.Join(dir, "api.sock")
	cfg["state_dir"] = dir
	cfg["api"] = map[string]any{"socket": socket, "http": ""}
	b, _ := json.Marshal(cfg)
	file := filepath.Join(dir, "tandem.json")
	os.WriteFile(file, b, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	cmd = exec.CommandContext(ctx, bin, "run", "-config", file)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = e2e.LogWriter(t), e2e.LogWriter(t)
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	return socket, cmd
}

func statusOf(t *testing.T, socket string) (api.Status, error) {
	var st api.Status
	resp, err := api.Client(socket).Get(api.BaseURL + "/api/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func loopbackFeeds(srtAddr string) map[string]any {
	return map[string]any{
		"primary":  map[string]any{"bitrate": 128000, "dest": "srt://" + srtAddr, "link": "a"},
		"fallback": map[string]any{"bitrate": 64000, "dest": "srt://" + srtAddr, "link": "b"},
	}
}

// Real capture: PulseAudio with a null sink fed a 997 Hz sine; the daemon
// captures it through malgo's ALSA backend and the switcher's listener
// hears 997 Hz at the level fed.
func TestDaemonCapturesRealAudio(t *testing.T) {
	pulse := pulsetest.Start(t, pulsetest.Options{})
	pulse.PlaySine(t, 997)
	base, srtAddr := e2e.StartSwitcher(t)
	cfg := map[string]any{
		"device_id": "cap",
		"source":    map[string]any{"type": "device", "device": map[string]any{"backend": "alsa", "name": "default", "sample_rate": 48000, "channels": 2}},
		"feeds":     loopbackFeeds(srtAddr),
	}
	runDaemon(t, cfg, pulse.Env())
	if !e2e.WaitFor(30*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/cap")
		return st != nil && st.State == "online" && st.Mode == "aligned"
	}) {
		t.Fatalf("the captured stream never came online aligned: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/cap"))
	}
	time.Sleep(3 * time.Second)
	l := e2e.Listen(t, base+"/live/cap.aac", nil)
	time.Sleep(6 * time.Second)
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	pcm, err := testpub.DecodeToMono(context.Background(), e2e.Need(t, "ffmpeg"), all, 48000)
	if err != nil {
		t.Fatal(err)
	}
	r := testpub.AnalyzeTone(pcm, 48000, 997)
	// lavfi's sine has amplitude 1/8: a peak of -18.06 dBFS.
	const fed = -18.06
	t.Logf("captured and heard: %v (fed 997 Hz at %.2f dBFS)", r, fed)
	if r.FrequencyHz < 996 || r.FrequencyHz > 998 {
		t.Errorf("heard %.3f Hz, want 997 ± 1", r.FrequencyHz)
	}
	if r.LevelDBFS < fed-1 || r.LevelDBFS > fed+1 {
		t.Errorf("heard %.2f dBFS, want %.2f ± 1 dB", r.LevelDBFS, fed)
	}
}

// A capture device that does not exist and a destination nobody answers are
// events and retries at runtime, never a crash.
func TestDaemonRetriesMissingDeviceAndDestination(t *testing.T) {
	deadPort := e2e.FreeUDPPort(t)
	cfg := map[string]any{
		"device_id": "gone",
		"source":    map[string]any{"type": "device", "device": map[string]any{"backend": "alsa", "name": "no-such-device-xyz", "sample_rate": 48000, "channels": 2}},
		"feeds":     loopbackFeeds("127.0.0.1:" + strings.TrimSpace(itoa(deadPort))),
	}
	socket, cmd := runDaemon(t, cfg, os.Environ())
	var st api.Status
	if !e2e.WaitFor(20*time.Second, func() bool {
		var err error
		st, err = statusOf(t, socket)
		if err != nil {
			return false
		}
		var capture, connect bool
		for _, e := range st.Events {
			capture = capture || (e.Kind == "capture-reopen" && strings.Contains(e.Reason, "no-such-device-xyz"))
			connect = connect || (e.Kind == "reconnect" && strings.Contains(e.Reason, "connect-failed"))
		}
		return capture && connect
	}) {
		t.Fatalf("want capture and connect failures as events; status: %+v", st)
	}
	if cmd.ProcessState != nil {
		t.Fatalf("the daemon exited: %v", cmd.ProcessState)
	}
	for _, e := range st.Events {
		t.Logf("event %s %s: %s", e.Kind, e.Subject, e.Reason)
	}
	if st.Source.State == "running" {
		t.Errorf("source state %q for a missing device", st.Source.State)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
