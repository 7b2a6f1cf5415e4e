package daemon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/firmware/api"
	"tandem/scripts/e2e"
	"tandem/scripts/netlab"
)

// The real daemon in the two-ISP lab: it installs its own policy routing
// (the lab starts without any), captures a tone, encodes both feeds and
// pushes them to the switcher in the cloud namespace over links A and B.

const labStream = "live/lab"

type appliance struct {
	*e2e.Rig
	socket string
}

func startAppliance(t *testing.T, mutate func(map[string]any)) *appliance {
	t.Helper()
	r := e2e.NewRig(t, netlab.Options{NoPolicyRouting: true})
	bin := e2e.Binary(t, "tandem/firmware/cmd/tandem")
	dir := t.TempDir()
	la, lb := r.Lab.Links["a"], r.Lab.Links["b"]
	cfg := map[string]any{
		"device_id": "lab",
		"source":    map[string]any{"type": "tone", "tone": map[string]any{"frequency": 440, "level_dbfs": -12}},
		"feeds": map[string]any{
			"primary":  map[string]any{"bitrate": 128000, "dest": "srt://" + r.Lab.CloudAddr + ":9000", "link": "a"},
			"fallback": map[string]any{"bitrate": 64000, "dest": "srt://" + r.Lab.CloudAddr + ":9000", "link": "b"},
		},
		"links": map[string]any{
			"a": map[string]any{"interface": la.AppIf, "gateway": la.CloudLinkAddr, "table": 101, "address": la.AppAddr},
			"b": map[string]any{"interface": lb.AppIf, "gateway": lb.CloudLinkAddr, "table": 102, "address": lb.AppAddr},
		},
		"state_dir": dir,
		"api":       map[string]any{"socket": filepath.Join(dir, "api.sock"), "http": ""},
	}
	if mutate != nil {
		mutate(cfg)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	file := filepath.Join(dir, "tandem.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r.Start(t, "app", bin, []string{"run", "-config", file}, nil)
	a := &appliance{Rig: r, socket: filepath.Join(dir, "api.sock")}
	if !e2e.WaitFor(15*time.Second, func() bool { _, err := a.status(); return err == nil }) {
		t.Fatal("the daemon's API never answered")
	}
	return a
}

func (a *appliance) status() (api.Status, error) {
	var st api.Status
	resp, err := api.Client(a.socket).Get(api.BaseURL + "/api/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func (a *appliance) encoderPID(t *testing.T, role string) int {
	if pid := a.runningEncoder(t, role); pid > 0 {
		return pid
	}
	st, _ := a.status()
	t.Fatalf("no running %s encoder in %+v", role, st.Feeds)
	return 0
}

// runningEncoder is the pid of role's ffmpeg, 0 while none runs (between
// a death and the restart, which waits for the next capture block).
func (a *appliance) runningEncoder(t *testing.T, role string) int {
	st, err := a.status()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range st.Feeds {
		if f.Role == role && f.Encoder.PID > 0 {
			return f.Encoder.PID
		}
	}
	return 0
}

func TestLabDaemonSurvivesCutsAndEncoderKills(t *testing.T) {
	a := startAppliance(t, nil)
	a.WaitAligned(t, labStream)
	l := a.Listen(t, labStream)
	for _, link := range []string{"a", "b"} {
		for i := 0; i < 5; i++ {
			if err := a.Lab.Cut(link); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			if err := a.Lab.Restore(link); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			if err := l.Alive(); err != nil {
				t.Fatalf("during cut %d of link %s: %v", i+1, link, err)
			}
		}
	}
	for _, role := range []string{"primary", "fallback"} {
		pid := a.encoderPID(t, role)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s encoder %d: %v", role, pid, err)
		}
		if !e2e.WaitFor(2*time.Second, func() bool { p := a.runningEncoder(t, role); return p > 0 && p != pid }) {
			t.Fatalf("the %s encoder was not restarted within 2 s", role)
		}
		time.Sleep(3 * time.Second)
	}
	a.CheckOutput(t, l, labStream, 440, false)

	st, _ := a.status()
	var restarts, linkUp int
	for _, e := range st.Events {
		t.Logf("event %s %s: %s", e.Kind, e.Subject, e.Reason)
	}
	for _, f := range st.Feeds {
		restarts += int(f.Encoder.Restarts)
	}
	for _, ln := range st.Links {
		if ln.Up != nil && *ln.Up && ln.Routed {
			linkUp++
		}
	}
	if restarts != 2 {
		t.Errorf("%d encoder restarts recorded, want 2", restarts)
	}
	if linkUp != 2 {
		t.Errorf("%d links up and routed, want 2: %+v", linkUp, st.Links)
	}
}

// With link A down, nothing from the primary's address leaves through link
// B, and the primary comes back on A by itself.
func TestLabDaemonNoLeakAndReconnect(t *testing.T) {
	a := startAppliance(t, nil)
	a.WaitAligned(t, labStream)
	la := a.Lab.Links["a"]
	lb := a.Lab.Links["b"]
	// Count what leaves link B from link A's address.
	rules := fmt.Sprintf("table inet leak {\n chain out {\n  type filter hook postrouting priority 0;\n  oifname %q ip saddr %s counter\n }\n}\n", lb.AppIf, la.AppAddr)
	cmd := a.Lab.Command(t.Context(), "app", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	if err := a.Lab.Down("a"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second) // longer than libsrt's 5 s: the primary redials meanwhile
	counter, err := a.Lab.Command(t.Context(), "app", "nft", "list", "chain", "inet", "leak", "out").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, counter)
	}
	if !strings.Contains(string(counter), "packets 0 bytes 0") {
		t.Fatalf("the primary's traffic leaked through link B:\n%s", counter)
	}
	st := e2e.FindStream(e2e.GetStreams(t, a.Base, a.Client), labStream)
	if st == nil || st.State != "online" {
		t.Fatalf("stream with link A down: %+v", st)
	}
	// Link A going down must not disturb link B: this once stalled every
	// connection on the switcher's port (see uplink/srt options: UDP
	// buffer).
	if st.Output.HolesFilled != 0 {
		t.Fatalf("%d holes while link A was down: link B's feed was disturbed", st.Output.HolesFilled)
	}
	if err := a.Lab.Restore("a"); err != nil {
		t.Fatal(err)
	}
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, a.Base, a.Client), labStream)
		if st == nil {
			return false
		}
		for _, in := range st.Inputs {
			if in.Role == "primary" && strings.HasPrefix(in.Remote, la.AppAddr+":") {
				return st.Mode == "aligned"
			}
		}
		return false
	}) {
		t.Fatalf("the primary did not come back on link A: %+v", e2e.FindStream(e2e.GetStreams(t, a.Base, a.Client), labStream))
	}
}
