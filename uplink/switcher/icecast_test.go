package switcher_test

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/switcher"
)

func icecastSource(t *testing.T, url string, freq int) *exec.Cmd {
	return toneSource(t, url, freq, "adts", "-content_type", "audio/aac")
}

func TestIcecastSourcesPairAndFailOver(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.Streams = map[string]switcher.StreamConfig{"live/ice": {Key: "icepass1"}}
	})
	base := "http://" + srv.HTTPAddr().String()
	ice := "icecast://source:icepass1@" + srv.HTTPAddr().String()
	primary := icecastSource(t, ice+"/ice.aac", 440)
	time.Sleep(300 * time.Millisecond)
	icecastSource(t, ice+"/ice_fallback.aac", 660)
	if !e2e.WaitFor(15*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/ice")
		return st != nil && len(st.Inputs) == 2 && st.Active == "primary" && st.State == "online"
	}) {
		t.Fatalf("Icecast mounts not paired: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/ice"))
	}
	// Wrong password: refused with 401 and logged; an oversized header: 431.
	bad := exec.Command(e2e.Need(t, "curl"), "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
		"-u", "source:wrong", "--data-binary", "xx", base+"/ice_fallback.aac")
	if out, _ := bad.Output(); string(out) != "401" {
		t.Errorf("wrong password: HTTP %s, want 401", out)
	}
	c, err := net.Dial("tcp", srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "SOURCE /ice.aac HTTP/1.0\r\nX-Junk: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	resp := make([]byte, 64)
	n, _ := c.Read(resp)
	c.Close()
	if !strings.Contains(string(resp[:n]), "431") {
		t.Errorf("oversized header answered %q, want 431", resp[:n])
	}

	time.Sleep(4 * time.Second)
	hearHandover(t, srv, "live/ice", base+"/ice.aac", primary) // Icecast-style mount without app
	st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/ice")
	if st.Active != "fallback" || st.Inputs[0].Protocol != "icecast" {
		t.Errorf("after the primary source died: %+v", st)
	}
}
