package daemon_test

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/testpub"
)

// tcpProxy forwards to target until killed, like a link that carries one
// feed; kill drops every connection at once.
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go io.Copy(u, c)
			go io.Copy(c, u)
		}
	}()
	t.Cleanup(p.kill)
	return p
}

func (p *tcpProxy) kill() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// A real Icecast with a fallback mount: the appliance pushes both mounts
// (/ice.aac and /ice_fallback.aac); a listener on Icecast hears audio; when
// the primary push dies, Icecast moves the listener to the fallback mount
// and it keeps hearing the tone.
func TestDaemonPushesBothIcecastMounts(t *testing.T) {
	ice := e2e.StartIcecast(t, `<mount type="normal"><mount-name>/ice.aac</mount-name>`+
		`<fallback-mount>/ice_fallback.aac</fallback-mount><fallback-override>1</fallback-override></mount>`)
	proxy := startProxy(t, ice)
	cfg := map[string]any{
		"device_id": "ice",
		"source":    map[string]any{"type": "tone", "tone": map[string]any{"frequency": 440, "level_dbfs": -12}},
		"feeds": map[string]any{
			"primary":  map[string]any{"bitrate": 128000, "dest": "icecast://source:" + e2e.IcecastPassword + "@" + proxy.ln.Addr().String(), "link": "a"},
			"fallback": map[string]any{"bitrate": 64000, "dest": "icecast://source:" + e2e.IcecastPassword + "@" + ice, "link": "b"},
		},
	}
	runDaemon(t, cfg, os.Environ())
	// Listen retries until the mount answers 200, i.e. the primary push is on.
	l := e2e.Listen(t, "http://"+ice+"/ice.aac", nil)
	time.Sleep(4 * time.Second)
	before := l.Count()
	proxy.kill() // the primary push dies
	time.Sleep(6 * time.Second)
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatalf("the Icecast listener was dropped when the primary push died: %v", err)
	}
	after := len(frames) - before
	t.Logf("listener: %d frames before the primary push died, %d after (6 s)", before, after)
	if after < 200 {
		t.Fatalf("only %d frames in the 6 s after the primary push died: Icecast did not move the listener to the fallback mount", after)
	}
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	pcm, _ := testpub.DecodeToMono(context.Background(), e2e.Need(t, "ffmpeg"), all, 48000)
	r := testpub.AnalyzeTone(pcm, 48000, 440)
	t.Logf("heard through Icecast: %v", r)
	if r.FrequencyHz < 439.5 || r.FrequencyHz > 440.5 {
		t.Errorf("heard %.2f Hz through Icecast, want 440", r.FrequencyHz)
	}
}
