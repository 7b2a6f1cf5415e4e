package switcher_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/netlab"
)

// These tests run the real binaries in the two-ISP lab: the switcher in the
// cloud namespace, publishers in the appliance namespace pinned to link A
// (primary) and link B (fallback), and a listener inside the cloud.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds tandem-switcher and tandem-testpub once per test run.
func binaries(t testing.TB) (switcherBin, testpubBin string) {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "tandem-bin-")
		if binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir, "tandem/uplink/cmd/tandem-switcher", "tandem/uplink/cmd/tandem-testpub").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "tandem-switcher"), filepath.Join(binDir, "tandem-testpub")
}

type labRig struct {
	lab    *netlab.Lab
	base   string
	client *http.Client
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
}

const labStream = "live/lab"

func newLabRig(t testing.TB) *labRig {
	t.Helper()
	netlab.Require(t)
	need(t, "ffmpeg")
	sw, _ := binaries(t)
	lab := netlab.New(t, netlab.Options{})
	r := &labRig{lab: lab, base: "http://127.0.0.1:8000"}
	r.dial = lab.DialContext("cloud")
	r.client = &http.Client{Transport: &http.Transport{DialContext: r.dial}, Timeout: 5 * time.Second}
	r.start(t, "cloud", sw, nil, []string{
		"TANDEM_SWITCHER_SRT_ADDR=" + lab.CloudAddr + ":9000",
		"TANDEM_SWITCHER_HTTP_ADDR=127.0.0.1:8000",
	})
	if !waitFor(10*time.Second, func() bool {
		resp, err := r.client.Get(r.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}) {
		t.Fatal("switcher did not come up in the cloud namespace")
	}
	return r
}

// start runs a program in a namespace until the test ends; its output goes
// to the test log when the test fails or runs verbose.
func (r *labRig) start(t testing.TB, ns, bin string, args, env []string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := r.lab.Command(ctx, ns, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &logWriter{t: t}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s in %s: %v", bin, ns, err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	return cmd
}

// publish starts test publishers in the appliance namespace: one process
// per role given, sharing a session and an epoch.
func (r *labRig) publish(t testing.TB, extra []string, roles ...string) map[string]*exec.Cmd {
	_, pub := binaries(t)
	session := fmt.Sprintf("lab%d", time.Now().UnixNano()%1e9)
	epoch := strconv.FormatInt(time.Now().UnixNano(), 10)
	out := map[string]*exec.Cmd{}
	for _, role := range roles {
		out[role] = r.start(t, "app", pub, append([]string{
			"-addr", r.lab.CloudAddr + ":9000", "-stream", labStream, "-role", role,
			"-session", session, "-epoch", epoch,
			"-local-primary", r.lab.Links["a"].AppAddr, "-local-fallback", r.lab.Links["b"].AppAddr,
		}, extra...), nil)
	}
	return out
}

// listen connects a listener once the stream is in steady state: past the
// merge's startup allowance and the encoders' warm-up, so the frame count
// measures the cuts, not the start.
func (r *labRig) listen(t testing.TB) *listener {
	time.Sleep(6 * time.Second)
	return listen(t, r.base+"/"+labStream+".aac", r.dial)
}

// waitAligned waits until both inputs are merged in aligned mode.
func (r *labRig) waitAligned(t testing.TB) {
	t.Helper()
	if !waitFor(20*time.Second, func() bool {
		st := findStream(getStreams(t, r.base, r.client), labStream)
		return st != nil && st.State == "online" && st.Mode == "aligned"
	}) {
		t.Fatalf("stream never became aligned: %+v", findStream(getStreams(t, r.base, r.client), labStream))
	}
}

// checkOutput asserts the listener heard every frame of the elapsed time,
// and the decoded tone is continuous.
func (r *labRig) checkOutput(t *testing.T, l *listener, wantHoles bool) {
	t.Helper()
	frames, arrived, err := l.stop()
	if err != nil {
		t.Fatalf("the listener's connection dropped: %v", err)
	}
	elapsed := arrived[len(arrived)-1].Sub(arrived[0])
	// The listener gets a burst of buffered frames on connect, then one
	// frame per 1024/48000 s.
	expect := int(elapsed.Seconds()*46.875) + 24
	t.Logf("listener: %d frames over %v (expected about %d)", len(frames), elapsed.Round(time.Millisecond), expect)
	if d := len(frames) - expect; d < -12 || d > 12 {
		t.Errorf("listener got %d frames in %v, expected %d±12: frames were lost or duplicated", len(frames), elapsed, expect)
	}
	st := findStream(getStreams(t, r.base, r.client), labStream)
	if st == nil {
		t.Fatal("stream gone from the API")
	}
	t.Logf("output: %+v", st.Output)
	for _, in := range st.Inputs {
		t.Logf("input %s: %+v srt=%v", in.Role, in.Frames, in.SRT)
	}
	if !wantHoles && st.Output.HolesFilled != 0 {
		t.Errorf("%d holes filled, want 0", st.Output.HolesFilled)
	}
	rep := toneOf(t, frames, 440)
	t.Logf("tone: %v", rep)
	if rep.PhaseJumps != 0 {
		t.Errorf("sine has %d phase discontinuities", rep.PhaseJumps)
	}
	if !wantHoles && rep.SilentAfterStart() != 0 {
		t.Errorf("%d silent 10 ms blocks in the output", rep.SilentAfterStart())
	}
	if rep.FrequencyHz < 439.9 || rep.FrequencyHz > 440.1 {
		t.Errorf("tone at %.3f Hz, want 440", rep.FrequencyHz)
	}
}

func TestLabCutEachLinkFiveTimes(t *testing.T) {
	t.Parallel()
	r := newLabRig(t)
	r.publish(t, nil, "both")
	r.waitAligned(t)
	l := r.listen(t)
	for _, link := range []string{"a", "b"} {
		for i := 0; i < 5; i++ {
			if err := r.lab.Cut(link); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			if err := r.lab.Restore(link); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			if err := l.alive(); err != nil {
				t.Fatalf("during cut %d of link %s: %v", i+1, link, err)
			}
		}
	}
	st := findStream(getStreams(t, r.base, r.client), labStream)
	// Five 1.5 s cuts of link A: the fallback carried about 7.5 s.
	if st.Output.FramesFromFallback < 250 {
		t.Errorf("fallback supplied only %d frames over five 1.5 s cuts of the primary's link", st.Output.FramesFromFallback)
	}
	r.checkOutput(t, l, false)
}

func TestLabLossOnBothLinks(t *testing.T) {
	t.Parallel()
	r := newLabRig(t)
	r.publish(t, nil, "both")
	r.waitAligned(t)
	l := r.listen(t)
	for _, link := range []string{"a", "b"} {
		if err := r.lab.SetLoss(link, 10); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(30 * time.Second)
	st := findStream(getStreams(t, r.base, r.client), labStream)
	for _, in := range st.Inputs {
		if m, ok := in.SRT.(map[string]any); ok && m["recv_loss"].(float64) == 0 {
			t.Errorf("input %s saw no SRT loss: the impairment did not apply", in.Role)
		}
	}
	r.checkOutput(t, l, false)
}

func TestLabKillPrimaryPublisher(t *testing.T) {
	t.Parallel()
	r := newLabRig(t)
	procs := r.publish(t, nil, "primary", "fallback")
	r.waitAligned(t)
	l := r.listen(t)
	time.Sleep(3 * time.Second)
	if err := procs["primary"].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	st := findStream(getStreams(t, r.base, r.client), labStream)
	if st == nil {
		t.Fatal("the stream disappeared when its primary publisher was killed")
	}
	if st.Active != "fallback" || len(st.Inputs) != 1 {
		t.Errorf("after SIGKILL of the primary: active %s with %d inputs, want the fallback alone", st.Active, len(st.Inputs))
	}
	r.checkOutput(t, l, false)
}

func TestLabBothLinksCutThreeSeconds(t *testing.T) {
	t.Parallel()
	r := newLabRig(t)
	r.publish(t, nil, "both")
	r.waitAligned(t)
	l := r.listen(t)
	time.Sleep(2 * time.Second)
	r.lab.Cut("a")
	r.lab.Cut("b")
	time.Sleep(3 * time.Second)
	r.lab.Restore("a")
	r.lab.Restore("b")
	time.Sleep(4 * time.Second)
	st := findStream(getStreams(t, r.base, r.client), labStream)
	// 3 s is 140.6 frames; the hold shifts where the hole starts, not its size.
	if h := st.Output.HolesFilled; h < 120 || h > 160 {
		t.Errorf("%d holes filled for a 3 s outage of both links, want about 141", h)
	}
	if st.State != "online" || st.Active != "primary" {
		t.Errorf("after the outage: state %s, active %s; want online on the primary", st.State, st.Active)
	}
	frames, _, err := l.stop()
	if err != nil {
		t.Fatalf("listener dropped during the outage: %v", err)
	}
	rep := toneOf(t, frames, 440)
	t.Logf("tone: %v", rep)
	if s := rep.SilentAfterStart(); s < 270 || s > 320 {
		t.Errorf("%d silent 10 ms blocks, want about 300 for a 3 s outage", s)
	}
	if rep.PhaseJumps != 0 {
		// The timeline continued through the silence: the tone resumes in phase.
		t.Errorf("tone resumed with %d phase jumps", rep.PhaseJumps)
	}
}

var _ = strings.Contains
