// Package scripts_test tests the shell scripts behind the Makefile's
// targets.
package scripts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/scripts/logbuf"
	"tandem/scripts/testenv"
	"tandem/uplink/adts"
)

// TestDemo runs scripts/demo.sh (what `make demo` runs) as a user would:
// it comes on air, the switcher's output has no hole, a listener gets
// ADTS, and Ctrl-C (SIGINT to the whole foreground group) stops
// everything, the script included. A SIGTERM to the script alone (kill
// <pid>) stops everything too.
func TestDemo(t *testing.T) {
	for _, prog := range []string{"ffmpeg", "curl", "python3"} {
		testenv.Need(t, prog)
	}
	sw := e2e.Binary(t, "tandem/uplink/cmd/tandem-switcher")
	e2e.Binary(t, "tandem/firmware/cmd/tandem")
	binDir := filepath.Dir(sw)

	// A process started with SIGINT ignored (a background job of a
	// script, as CI may be) passes that on to its children, and bash
	// cannot trap a signal ignored at its start. Handling it here makes
	// exec give the demo the default disposition, as a terminal does.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt)
	defer signal.Stop(sigc)

	t.Run("ctrl-c", func(t *testing.T) {
		d := startDemo(t, binDir)
		d.onAir(t)
		// A listener hears the stream: whole ADTS frames.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", d.base+"/live/demo.aac", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16<<10)
		n, err := io.ReadFull(resp.Body, buf)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("listener read %d bytes: %v", n, err)
		}
		frames, _, err := adts.Split(buf)
		if err != nil || len(frames) < 20 {
			t.Errorf("listener got %d ADTS frames in 16 KiB (%v), want a stream of them", len(frames), err)
		}
		d.stop(t, -d.cmd.Process.Pid, syscall.SIGINT)
	})
	t.Run("sigterm", func(t *testing.T) {
		d := startDemo(t, binDir)
		d.onAir(t)
		d.stop(t, d.cmd.Process.Pid, syscall.SIGTERM)
	})
}

// demo is one run of scripts/demo.sh.
type demo struct {
	cmd     *exec.Cmd
	out     logbuf.Buffer // the script's output
	base    string        // the switcher's HTTP address
	binDir  string
	exited  chan error
	stopped bool
}

// startDemo starts the demo in a process group of its own, on free ports;
// it is killed when the test ends if it still runs.
func startDemo(t *testing.T, binDir string) *demo {
	httpPort, srtPort := e2e.FreeTCPPort(t), e2e.FreeUDPPort(t)
	d := &demo{base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), binDir: binDir, exited: make(chan error, 1)}
	d.cmd = exec.Command("bash", "demo.sh")
	d.cmd.Env = append(os.Environ(), "TANDEM_DEMO_BIN="+binDir,
		fmt.Sprintf("TANDEM_DEMO_HTTP_PORT=%d", httpPort), fmt.Sprintf("TANDEM_DEMO_SRT_PORT=%d", srtPort))
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if !d.stopped {
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.exited
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", d.out.String())
		}
	})
	return d
}

// onAir waits for the demo to say it is on air and for its stream to
// emit 200 frames, and checks it has no hole.
func (d *demo) onAir(t *testing.T) {
	t.Helper()
	if !e2e.WaitFor(30*time.Second, func() bool { return strings.Contains(d.out.String(), "Tandem demo is on air") }) {
		t.Fatal("the demo did not say it is on air within 30 s")
	}
	type stream struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Output struct {
			Emitted int64 `json:"frames_emitted"`
			Holes   int64 `json:"holes_filled"`
		} `json:"output"`
	}
	var last stream
	if !e2e.WaitFor(20*time.Second, func() bool {
		body, err := e2e.HTTPGet(d.base + "/api/v1/streams")
		if err != nil {
			return false
		}
		var resp struct{ Streams []stream }
		if json.Unmarshal([]byte(body), &resp) != nil || len(resp.Streams) != 1 {
			return false
		}
		last = resp.Streams[0]
		return last.State == "online" && last.Output.Emitted >= 200
	}) {
		t.Fatalf("the demo stream did not emit 200 frames within 20 s: %+v", last)
	}
	if last.ID != "live/demo" || last.Output.Holes != 0 {
		t.Errorf("stream %+v, want live/demo with no hole", last)
	}
}

// stop sends sig to pid (negative: a process group) and checks that the
// demo ends, cleanly, with nothing left running.
func (d *demo) stop(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		d.stopped = true
		if err != nil {
			t.Errorf("the demo exited with %v after %v, want 0", err, sig)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the demo still runs 20 s after %v", sig)
	}
	if !strings.Contains(d.out.String(), "stopped.") {
		t.Error("the demo did not say it stopped")
	}
	if left := processesRunning(t, d.binDir); len(left) > 0 {
		t.Errorf("still running after %v: %v", sig, left)
	}
	if _, err := e2e.HTTPGet(d.base + "/healthz"); err == nil {
		t.Errorf("the switcher still answers after %v", sig)
	}
}

// processesRunning lists the processes whose executable lies in dir.
func processesRunning(t *testing.T, dir string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range ents {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && filepath.Dir(exe) == dir {
			found = append(found, e.Name()+" "+exe)
		}
	}
	return found
}
