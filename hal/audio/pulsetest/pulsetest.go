// Package pulsetest runs a private PulseAudio server for tests that
// capture real audio: a null sink whose monitor is the capture device, fed
// by ffmpeg, read through ALSA's Pulse plugin (the path the appliance uses
// for capture through PulseAudio).
//
// What works on the build machine (Debian bookworm, PulseAudio 16.1, as
// root, in a container without a session bus):
//
//   - pulseaudio runs as root without --system; it only warns. It needs
//     XDG_RUNTIME_DIR and HOME pointing at writable private directories;
//     its socket is $XDG_RUNTIME_DIR/pulse/native.
//   - The server is started in the foreground (the design's command minus
//     -D, plus --daemonize=no and Pdeathsig) so the test owns the process:
//     -D forks a daemon that would outlive a crashed test.
//   - ALSA is pointed at it with ALSA_CONFIG_PATH=<alsa.conf>:<ours>, where
//     ours is `pcm.!default { type pulse server "unix:<socket>" device
//     "<sink>.monitor" }`. Naming the server in the PCM makes it
//     independent of PULSE_SERVER, and a new ALSA_CONFIG_PATH makes
//     alsa-lib reload its configuration even if this process already
//     loaded one (a ~/.asoundrc in a temporary HOME would not be re-read).
//     PULSE_SERVER is set too, for libpulse clients.
//   - ffmpeg plays into the sink with -f pulse -device <sink>.
package pulsetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options for Start; zero values take the defaults.
type Options struct {
	Sink       string // null sink name, default "s"
	SampleRate int    // default 48000
	Channels   int    // default 2
}

// Server is a running private PulseAudio.
type Server struct {
	Dir        string // everything lives under it
	RuntimeDir string // XDG_RUNTIME_DIR of the server
	Home       string
	Socket     string // the native protocol socket
	Sink       string
	Monitor    string // the capture device: <sink>.monitor
	SampleRate int
	Channels   int
	// ALSAConfig is the ALSA_CONFIG_PATH that makes "default" capture the
	// monitor.
	ALSAConfig string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *lockedBuffer
}

// Require skips the test, naming what is missing, unless pulseaudio,
// ffmpeg and ALSA's Pulse plugin are installed; under CI=true it fails
// instead (scripts/deps.sh installs them).
func Require(t testing.TB) {
	t.Helper()
	var miss []string
	for _, p := range []string{"pulseaudio", "pactl", "arecord", "ffmpeg"} {
		if _, err := exec.LookPath(p); err != nil {
			miss = append(miss, "no "+p+" in PATH")
		}
	}
	if pluginPath() == "" {
		miss = append(miss, "no ALSA pulse plugin (libasound_module_pcm_pulse.so, package libasound2-plugins)")
	}
	if len(miss) == 0 {
		return
	}
	msg := strings.Join(miss, "; ")
	if os.Getenv("CI") == "true" {
		t.Fatalf("pulsetest: cannot run real capture: %s (CI=true: this is a failure, not a skip; run scripts/deps.sh)", msg)
	}
	t.Skipf("pulsetest: skipping real capture: %s (run scripts/deps.sh)", msg)
}

func pluginPath() string {
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu/alsa-lib", "/usr/lib/aarch64-linux-gnu/alsa-lib",
		"/usr/lib/arm-linux-gnueabihf/alsa-lib", "/usr/lib/alsa-lib", "/usr/lib64/alsa-lib"} {
		p := filepath.Join(dir, "libasound_module_pcm_pulse.so")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so"); len(m) > 0 {
		return m[0]
	}
	return ""
}

// Start runs a PulseAudio with one null sink and points this process at it
// (t.Setenv of PULSE_SERVER and ALSA_CONFIG_PATH, so tests using it cannot
// be parallel). It is stopped when the test ends. Start calls Require.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	Require(t)
	if opt.Sink == "" {
		opt.Sink = "s"
	}
	if opt.SampleRate == 0 {
		opt.SampleRate = 48000
	}
	if opt.Channels == 0 {
		opt.Channels = 2
	}
	dir := t.TempDir()
	s := &Server{Dir: dir, RuntimeDir: filepath.Join(dir, "run"), Home: filepath.Join(dir, "home"),
		Sink: opt.Sink, Monitor: opt.Sink + ".monitor", SampleRate: opt.SampleRate, Channels: opt.Channels}
	s.Socket = filepath.Join(s.RuntimeDir, "pulse", "native")
	for _, d := range []string{s.RuntimeDir, s.Home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "asound.conf")
	pcm := fmt.Sprintf("pcm.!default {\n\ttype pulse\n\tserver \"unix:%s\"\n\tdevice \"%s\"\n}\nctl.!default {\n\ttype pulse\n\tserver \"unix:%s\"\n}\n",
		s.Socket, s.Monitor, s.Socket)
	if err := os.WriteFile(conf, []byte(pcm), 0o644); err != nil {
		t.Fatal(err)
	}
	// Also as ~/.asoundrc in the server's HOME, for child processes given Env.
	if err := os.WriteFile(filepath.Join(s.Home, ".asoundrc"), []byte(pcm), 0o644); err != nil {
		t.Fatal(err)
	}
	top := "/usr/share/alsa/alsa.conf"
	if v := os.Getenv("ALSA_CONFIG_PATH"); v != "" && !strings.Contains(v, "asound.conf") {
		top = v
	}
	s.ALSAConfig = top + ":" + conf
	if err := s.start(); err != nil {
		t.Fatalf("pulsetest: %v", err)
	}
	t.Cleanup(s.Stop)
	t.Setenv("PULSE_SERVER", "unix:"+s.Socket)
	t.Setenv("ALSA_CONFIG_PATH", s.ALSAConfig)
	return s
}

// Env is the environment for a child process (ffmpeg, the appliance
// daemon) that should use this server, appended to os.Environ().
func (s *Server) Env() []string {
	return append(os.Environ(), "XDG_RUNTIME_DIR="+s.RuntimeDir, "HOME="+s.Home,
		"PULSE_SERVER=unix:"+s.Socket, "ALSA_CONFIG_PATH="+s.ALSAConfig)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	os.Remove(s.Socket)
	cmd := exec.Command("pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n",
		"--log-target=stderr", "--log-level=notice",
		"--load=module-native-protocol-unix",
		fmt.Sprintf("--load=module-null-sink sink_name=%s rate=%d channels=%d", s.Sink, s.SampleRate, s.Channels))
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+s.RuntimeDir, "HOME="+s.Home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s.out = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pulseaudio: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// Ready when the socket exists and the sink answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("pulseaudio exited at start: %s", s.out.String())
		default:
		}
		if _, err := os.Stat(s.Socket); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c := exec.CommandContext(ctx, "pactl", "list", "short", "sources")
			c.Env = append(os.Environ(), "PULSE_SERVER=unix:"+s.Socket)
			out, err := c.Output()
			cancel()
			if err == nil && strings.Contains(string(out), s.Monitor) {
				break
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("pulseaudio not ready after 10 s: %s", s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The first recording stream of a fresh server takes about 1.8 s to
	// deliver its first frame (later ones start at once): take that hit
	// here, so tests measure the capture path, not the server's warm-up.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	warm := exec.CommandContext(ctx, "arecord", "-q", "-D", "default", "-f", "S16_LE", "-r", fmt.Sprint(s.SampleRate),
		"-c", fmt.Sprint(s.Channels), "-s", fmt.Sprint(s.SampleRate/10), "-t", "raw", os.DevNull)
	warm.Env = append(os.Environ(), "ALSA_CONFIG_PATH="+s.ALSAConfig)
	if out, err := warm.CombinedOutput(); err != nil {
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("warming up with arecord through ALSA's pulse plugin: %v: %s", err, out)
	}
	s.cmd = cmd
	s.exited = exited
	return nil
}

// Stop kills the server (a capture device vanishing). Idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Restart starts the server again after Stop, on the same socket.
func (s *Server) Restart() error { return s.start() }

// Log is what the server printed.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Player is an ffmpeg playing into the sink.
type Player struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

// PlaySine plays a sine of freq Hz (lavfi's sine: amplitude 1/8, a peak
// of −18.06 dBFS) into the sink in real time until the test ends or Stop.
func (s *Server) PlaySine(t testing.TB, freq float64) *Player {
	t.Helper()
	src := fmt.Sprintf("sine=f=%g:sample_rate=%d", freq, s.SampleRate)
	return s.Play(t, "-re", "-f", "lavfi", "-i", src)
}

// Play runs ffmpeg with the given input arguments and the sink as output.
func (s *Server) Play(t testing.TB, inputArgs ...string) *Player {
	t.Helper()
	args := append([]string{"-hide_banner", "-nostdin", "-loglevel", "error"}, inputArgs...)
	args = append(args, "-f", "pulse", "-device", s.Sink, "tandem-test")
	cmd := exec.Command("ffmpeg", args...)
	cmd.Env = s.Env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Player{cmd: cmd, out: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("pulsetest: start ffmpeg: %v", err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.Stop)
	return p
}

// Stop ends the player. Idempotent.
func (p *Player) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.exited
}

// Output is what ffmpeg printed.
func (p *Player) Output() string { return p.out.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
