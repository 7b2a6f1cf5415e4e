package switcher_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/switcher"
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
	hearHandover(t, srv, "live/r", base+"/live/r.aac", primary)
	found := false
	for _, e := range e2e.GetEvents(t, base, nil) {
		found = found || (e.Kind == "publish-refused" && strings.Contains(e.Reason, "wrong key"))
	}
	if !found {
		t.Error("no publish-refused event for the wrong RTMP key")
	}
}
