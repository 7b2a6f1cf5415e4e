package switcher_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/switcher"
)

// liquidsoapSource runs a real liquidsoap feeding a tone to an Icecast
// mount with output.icecast (AAC in ADTS through its ffmpeg encoder:
// Debian's build has no fdkaac), and setting a title through Icecast's
// metadata update once it is on air.
func liquidsoapSource(t *testing.T, addr, mount, password string, freq int, title string) *exec.Cmd {
	t.Helper()
	bin := e2e.Need(t, "liquidsoap")
	host, port, _ := strings.Cut(addr, ":")
	script := fmt.Sprintf(`
settings.init.allow_root.set(true)
settings.log.stdout.set(true)
settings.log.file.set(false)
s = insert_metadata(sine(%d.))
thread.run(delay=1., fun () -> s.insert_metadata([("title", %q)]))
output.icecast(%%ffmpeg(format="adts", %%audio(codec="aac", b="128k", ar=48000, ac=2)),
  host=%q, port=%s, password=%q, mount=%q, format="audio/aac",
  name="Liquidsoap FM", genre="Test", icy_metadata="true", mksafe(s))
`, freq, title, host, port, password, mount)
	path := filepath.Join(t.TempDir(), "source.liq")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, path)
	cmd.Stdout, cmd.Stderr = e2e.LogWriter(t), e2e.LogWriter(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// Two liquidsoap instances feed /<id>.aac and /<id>_fallback.aac; killing
// the primary moves the output to the fallback with the listener still
// connected and decoding cleanly, and the ICY title follows the input the
// output follows.
func TestLiquidsoapSourcesPairAndFailOver(t *testing.T) {
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.Streams = map[string]switcher.StreamConfig{"live/lq": {Key: "lqpass1234"}}
		c.ICYMetaInt = 4000
	})
	addr := srv.HTTPAddr().String()
	base := "http://" + addr
	primary := liquidsoapSource(t, addr, "/lq.aac", "lqpass1234", 440, "Primary Show")
	if !e2e.WaitFor(30*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/lq")
		return st != nil && st.State == "online"
	}) {
		t.Fatal("liquidsoap's primary did not put the stream on air")
	}
	liquidsoapSource(t, addr, "/lq_fallback.aac", "lqpass1234", 660, "Fallback Show")
	if !e2e.WaitFor(30*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/lq")
		return st != nil && len(st.Inputs) == 2 && st.Active == "primary" && st.Output.Title == "Primary Show"
	}) {
		t.Fatalf("liquidsoap mounts not paired: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/lq"))
	}
	icyL := listenICY(t, addr, "/lq.aac")
	if got := icyL.resp.Header.Get("icy-name"); got != "Liquidsoap FM" {
		t.Errorf("icy-name %q, want liquidsoap's name", got)
	}
	hearHandover(t, srv, "live/lq", base+"/lq.aac", primary)
	if !e2e.WaitFor(5*time.Second, func() bool { return icyL.lastTitle() == "Fallback Show" }) {
		t.Errorf("ICY title after the failover: %q, want the fallback's", icyL.lastTitle())
	}
	icyL.stop()
	if icyL.err != nil && !strings.Contains(icyL.err.Error(), "closed") {
		t.Errorf("ICY listener broke across the failover: %v", icyL.err)
	}
	streams := e2e.GetStreams(t, base, nil)
	st := e2e.FindStream(streams, "live/lq")
	if st.Active != "fallback" || len(streams.Streams) != 1 {
		t.Errorf("after the primary died: %+v", streams.Streams)
	}
}
