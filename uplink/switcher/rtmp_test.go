package switcher_test

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/switcher"
	"tandem/uplink/testpub"
)

func rtmpPublisher(t *testing.T, url string, freq int) *exec.Cmd {
	return toneSource(t, url, freq, "flv")
}

func TestRTMPPublishersPairAndFailOver(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.Streams = map[string]switcher.StreamConfig{"live/r": {Key: "rkey"}}
	})
	base := "http://" + srv.HTTPAddr().String()
	rt := "rtmp://" + srv.RTMPAddr().String()
	primary := rtmpPublisher(t, rt+"/live/r?key=rkey", 440)
	time.Sleep(300 * time.Millisecond)
	rtmpPublisher(t, rt+"/live/r_fallback?key=rkey", 660)
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/r")
		return st != nil && len(st.Inputs) == 2 && st.Inputs[0].Protocol == "rtmp" && st.Active == "primary"
	}) {
		t.Fatalf("RTMP inputs not paired: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/r"))
	}
	// A wrong key is refused in the RTMP publish, with the reason logged.
	bad := rtmpPublisher(t, rt+"/live/r_fallback?key=nope", 550)
	done := make(chan error, 1)
	go func() { done <- bad.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("ffmpeg with a wrong key exited cleanly")
		}
	case <-time.After(10 * time.Second):
		t.Error("ffmpeg with a wrong key was not refused")
	}
	time.Sleep(4 * time.Second)
	l := e2e.Listen(t, base+"/live/r.aac", nil)
	time.Sleep(2 * time.Second)
	primary.Process.Signal(syscall.SIGKILL)
	time.Sleep(4 * time.Second)
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatalf("listener dropped: %v", err)
	}
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	pcm, err := testpub.DecodeToMono(context.Background(), e2e.Need(t, "ffmpeg"), all, 48000)
	if err != nil {
		t.Fatalf("output across the RTMP failover does not decode cleanly: %v", err)
	}
	a, b := toneShare(pcm, 440, 660)
	t.Logf("output: %d blocks of the RTMP primary's tone, %d of the RTMP fallback's", a, b)
	if a < 150 || b < 250 {
		t.Errorf("want the primary's tone, then the fallback's: %d / %d", a, b)
	}
	found := false
	for _, e := range e2e.GetEvents(t, base, nil) {
		found = found || (e.Kind == "publish-refused" && strings.Contains(e.Reason, "wrong key"))
	}
	if !found {
		t.Error("no publish-refused event for the wrong RTMP key")
	}
}
