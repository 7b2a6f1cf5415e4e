package switcher_test

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"tandem/scripts/e2e"
	"testing"
	"time"

	"tandem/scripts/netlab"
)

// These tests run the real binaries in the two-ISP lab: the switcher in the
// cloud namespace, publishers in the appliance namespace pinned to link A
// (primary) and link B (fallback), and a listener inside the cloud.

const labStream = "live/lab"

// labRig is the e2e lab with test publishers in its appliance namespace.
type labRig struct{ *e2e.Rig }

func newLabRig(t testing.TB) *labRig { return &labRig{e2e.NewRig(t, netlab.Options{})} }

// publish starts test publishers in the appliance namespace: one process
// per role given, sharing a session and an epoch, the primary on link A
// and the fallback on link B.
func (r *labRig) publish(t testing.TB, extra []string, roles ...string) map[string]*exec.Cmd {
	pub := e2e.Binary(t, "tandem/uplink/cmd/tandem-testpub")
	session := fmt.Sprintf("lab%d", time.Now().UnixNano()%1e9)
	epoch := strconv.FormatInt(time.Now().UnixNano(), 10)
	out := map[string]*exec.Cmd{}
	for _, role := range roles {
		out[role] = r.Start(t, "app", pub, append([]string{
			"-addr", r.Lab.CloudAddr + ":9000", "-stream", labStream, "-role", role,
			"-session", session, "-epoch", epoch,
			"-local-primary", r.Lab.Links["a"].AppAddr, "-local-fallback", r.Lab.Links["b"].AppAddr,
		}, extra...), nil)
	}
	return out
}

func (r *labRig) listen(t testing.TB) *e2e.Listener { return r.Listen(t, labStream) }
func (r *labRig) waitAligned(t testing.TB)          { r.WaitAligned(t, labStream) }
func (r *labRig) checkOutput(t *testing.T, l *e2e.Listener, wantHoles bool) {
	r.CheckOutput(t, l, labStream, 440, wantHoles)
}

func TestLabCutEachLinkFiveTimes(t *testing.T) {
	r := newLabRig(t)
	r.publish(t, nil, "both")
	r.waitAligned(t)
	l := r.listen(t)
	for _, link := range []string{"a", "b"} {
		for i := 0; i < 5; i++ {
			if err := r.Lab.Cut(link); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			if err := r.Lab.Restore(link); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			if err := l.Alive(); err != nil {
				t.Fatalf("during cut %d of link %s: %v", i+1, link, err)
			}
		}
	}
	st := e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream)
	// Five 1.5 s cuts of link A: the fallback carried about 7.5 s.
	if st.Output.FramesFromFallback < 250 {
		t.Errorf("fallback supplied only %d frames over five 1.5 s cuts of the primary's link", st.Output.FramesFromFallback)
	}
	r.checkOutput(t, l, false)
}

func TestLabLossOnBothLinks(t *testing.T) {
	r := newLabRig(t)
	r.publish(t, nil, "both")
	r.waitAligned(t)
	l := r.listen(t)
	for _, link := range []string{"a", "b"} {
		if err := r.Lab.SetLoss(link, 10); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(30 * time.Second)
	st := e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream)
	for _, in := range st.Inputs {
		if m, ok := in.SRT.(map[string]any); ok && m["recv_loss"].(float64) == 0 {
			t.Errorf("input %s saw no SRT loss: the impairment did not apply", in.Role)
		}
	}
	r.checkOutput(t, l, false)
}

func TestLabKillPrimaryPublisher(t *testing.T) {
	r := newLabRig(t)
	procs := r.publish(t, nil, "primary", "fallback")
	r.waitAligned(t)
	l := r.listen(t)
	time.Sleep(3 * time.Second)
	if err := procs["primary"].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	st := e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream)
	if st == nil {
		t.Fatal("the stream disappeared when its primary publisher was killed")
	}
	if st.Active != "fallback" || len(st.Inputs) != 1 {
		t.Errorf("after SIGKILL of the primary: active %s with %d inputs, want the fallback alone", st.Active, len(st.Inputs))
	}
	r.checkOutput(t, l, false)
}

func TestLabBothLinksCutThreeSeconds(t *testing.T) {
	r := newLabRig(t)
	r.publish(t, nil, "both")
	r.waitAligned(t)
	l := r.listen(t)
	time.Sleep(2 * time.Second)
	r.Lab.Cut("a")
	r.Lab.Cut("b")
	time.Sleep(3 * time.Second)
	r.Lab.Restore("a")
	r.Lab.Restore("b")
	time.Sleep(4 * time.Second)
	// The primary comes back as the active input by itself, once its
	// health monitor's loss window (5 s) has forgotten the outage.
	e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream)
		return st != nil && st.Active == "primary"
	})
	st := e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream)
	// 3 s is 140.6 frames; the hold shifts where the hole starts, not its size.
	if h := st.Output.HolesFilled; h < 120 || h > 160 {
		t.Errorf("%d holes filled for a 3 s outage of both links, want about 141", h)
	}
	if st.State != "online" || st.Active != "primary" {
		t.Errorf("after the outage: state %s, active %s; want online on the primary", st.State, st.Active)
	}
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatalf("listener dropped during the outage: %v", err)
	}
	rep := e2e.ToneOf(t, frames, 440)
	t.Logf("tone: %v", rep)
	if s := rep.SilentAfterStart(); s < 270 || s > 320 {
		t.Errorf("%d silent 10 ms blocks, want about 300 for a 3 s outage", s)
	}
	if rep.PhaseJumps != 0 {
		// The timeline continued through the silence: the tone resumes in phase.
		t.Errorf("tone resumed with %d phase jumps", rep.PhaseJumps)
	}
}

// Two independent publishers (splice mode) in the lab: 30% loss on the
// primary's link degrades it and the output moves to the fallback; when the
// loss clears, the output returns after the stability window.
func TestLabLossDegradesPrimarySplice(t *testing.T) {
	r := &labRig{e2e.NewRig(t, netlab.Options{}, "TANDEM_SWITCHER_STABLE=5s")}
	pub := e2e.Binary(t, "tandem/uplink/cmd/tandem-testpub")
	for _, role := range []string{"primary", "fallback"} {
		r.Start(t, "app", pub, []string{"-addr", r.Lab.CloudAddr + ":9000", "-stream", labStream, "-role", role,
			"-session", "indep-" + role, "-freq", map[string]string{"primary": "440", "fallback": "660"}[role],
			"-local-primary", r.Lab.Links["a"].AppAddr, "-local-fallback", r.Lab.Links["b"].AppAddr}, nil)
	}
	if !e2e.WaitFor(20*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream)
		return st != nil && st.Mode == "splice" && st.Active == "primary" && len(st.Inputs) == 2
	}) {
		t.Fatalf("not spliced on the primary: %+v", e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream))
	}
	time.Sleep(3 * time.Second)
	lossAt := time.Now()
	if err := r.Lab.SetLoss("a", 30); err != nil {
		t.Fatal(err)
	}
	if !e2e.WaitFor(15*time.Second, func() bool {
		return e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream).Active == "fallback"
	}) {
		t.Fatalf("30%% loss on the primary's link did not move the output: %+v", e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream))
	}
	t.Logf("moved to the fallback %v after 30%% loss began", time.Since(lossAt).Round(time.Millisecond))
	clearAt := time.Now()
	if err := r.Lab.SetLoss("a", 0); err != nil {
		t.Fatal(err)
	}
	if !e2e.WaitFor(20*time.Second, func() bool {
		return e2e.FindStream(e2e.GetStreams(t, r.Base, r.Client), labStream).Active == "primary"
	}) {
		t.Fatal("did not return to the primary after the loss cleared")
	}
	back := time.Since(clearAt)
	t.Logf("back on the primary %v after the loss cleared (stability window 5 s)", back.Round(time.Millisecond))
	if back < 5*time.Second {
		t.Errorf("returned after %v, before the 5 s stability window", back)
	}
	var sawDegraded bool
	for _, e := range e2e.GetEvents(t, r.Base, r.Client) {
		if e.Kind == "health" && e.Input == "primary" && strings.Contains(e.Reason, "loss") {
			sawDegraded = true
		}
	}
	if !sawDegraded {
		t.Error("no health event naming the primary's loss")
	}
}
