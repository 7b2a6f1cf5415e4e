package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/netlab"
	"tandem/uplink/switcher"
)

// Rig is the two-ISP lab with a switcher running in its cloud namespace on
// the lab's cloud address (SRT :9000) and 127.0.0.1:8000 (HTTP).
type Rig struct {
	Lab    *netlab.Lab
	Base   string
	Client *http.Client
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewRig builds the lab and starts the switcher in it; env adds
// TANDEM_SWITCHER_* settings.
func NewRig(t testing.TB, opt netlab.Options, env ...string) *Rig {
	t.Helper()
	netlab.Require(t)
	Need(t, "ffmpeg")
	sw := Binary(t, "tandem/uplink/cmd/tandem-switcher")
	lab := netlab.New(t, opt)
	r := &Rig{Lab: lab, Base: "http://127.0.0.1:8000"}
	r.Dial = lab.DialContext("cloud")
	r.Client = &http.Client{Transport: &http.Transport{DialContext: r.Dial}, Timeout: 5 * time.Second}
	r.Start(t, "cloud", sw, nil, append([]string{
		"TANDEM_SWITCHER_SRT_ADDR=" + lab.CloudAddr + ":9000",
		"TANDEM_SWITCHER_HTTP_ADDR=127.0.0.1:8000",
		"TANDEM_SWITCHER_STATE_DIR=" + t.TempDir(),
	}, env...))
	if !WaitFor(10*time.Second, func() bool {
		resp, err := r.Client.Get(r.Base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}) {
		t.Fatal("switcher did not come up in the cloud namespace")
	}
	return r
}

// Start runs a program in a namespace until the test ends; its output goes
// to the test log.
func (r *Rig) Start(t testing.TB, ns, bin string, args, env []string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := r.Lab.Command(ctx, ns, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := LogWriter(t)
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

// Listen connects a listener to a stream once it is in steady state: past
// the merge's startup allowance and the encoders' warm-up, so frame counts
// measure what the test does, not the start.
func (r *Rig) Listen(t testing.TB, stream string) *Listener {
	time.Sleep(6 * time.Second)
	return Listen(t, r.Base+"/"+stream+".aac", r.Dial)
}

// WaitAligned waits until both inputs of a stream are merged in aligned mode.
func (r *Rig) WaitAligned(t testing.TB, stream string) {
	t.Helper()
	if !WaitFor(20*time.Second, func() bool {
		st := FindStream(GetStreams(t, r.Base, r.Client), stream)
		return st != nil && st.State == "online" && st.Mode == "aligned"
	}) {
		t.Fatalf("stream never became aligned: %+v", FindStream(GetStreams(t, r.Base, r.Client), stream))
	}
}

// CheckOutput asserts the listener heard every frame of the elapsed time,
// and the decoded tone is continuous.
func (r *Rig) CheckOutput(t *testing.T, l *Listener, stream string, tone float64, wantHoles bool) {
	t.Helper()
	frames, arrived, err := l.Stop()
	if err != nil {
		t.Fatalf("the listener's connection dropped: %v", err)
	}
	elapsed := arrived[len(arrived)-1].Sub(arrived[0])
	// The listener gets a burst of buffered frames on connect, then one
	// frame per 1024/48000 s.
	expect := int(elapsed.Seconds()*46.875) + switcher.DefaultConfig().ListenerBurst
	t.Logf("listener: %d frames over %v (expected about %d)", len(frames), elapsed.Round(time.Millisecond), expect)
	if d := len(frames) - expect; d < -12 || d > 12 {
		t.Errorf("listener got %d frames in %v, expected %d±12: frames were lost or duplicated", len(frames), elapsed, expect)
	}
	st := FindStream(GetStreams(t, r.Base, r.Client), stream)
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
	rep := ToneOf(t, frames, tone)
	t.Logf("tone: %v", rep)
	if rep.PhaseJumps != 0 {
		t.Errorf("sine has %d phase discontinuities", rep.PhaseJumps)
	}
	if !wantHoles && rep.SilentAfterStart() != 0 {
		t.Errorf("%d silent 10 ms blocks in the output", rep.SilentAfterStart())
	}
	if rep.FrequencyHz < tone-0.1 || rep.FrequencyHz > tone+0.1 {
		t.Errorf("tone at %.3f Hz, want %v", rep.FrequencyHz, tone)
	}
}
