package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// IcecastPassword is the source password of the Icecast StartIcecast runs.
const IcecastPassword = "tandem-source-pw"

// StartIcecast runs a real Icecast 2 on a free loopback port and returns
// its address; mounts is extra <mount> configuration (fallback mounts).
// Icecast refuses to run as root: it runs as the Debian
// package's icecast2 user (what `runuser -u icecast2` does, with the
// process a direct child so it can be stopped by its pid).
//
// Icecast 2.4.4 was seen to crash (SIGSEGV) 3 times in ~40 starts, each
// time as the first source after startup logged in, on a heavily loaded
// machine. So a throwaway source logs in first, and an Icecast that dies
// doing so is started again (up to 3 times).
func StartIcecast(t testing.TB, mounts string) string {
	t.Helper()
	return StartIcecastWith(t, IcecastConfig{Mounts: mounts}).Addr
}

// IcecastConfig is what StartIcecastWith may change.
type IcecastConfig struct {
	// Mounts is extra <mount> configuration (fallback mounts).
	Mounts string
	// Clients is Icecast's <clients> limit (listeners and sources
	// together); 0 keeps 20.
	Clients int
}

// Icecast is a running icecast2.
type Icecast struct {
	Addr string
	PID  int
}

// StartIcecastWith is StartIcecast with more settings, returning the
// process id too (benchmarks read its CPU time).
func StartIcecastWith(t testing.TB, cfg IcecastConfig) *Icecast {
	t.Helper()
	if cfg.Clients == 0 {
		cfg.Clients = 20
	}
	bin := Need(t, "icecast2")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the Icecast test needs root to run icecast2 as its own user (CI=true: this is a failure)")
		}
		t.Skip("needs root to run icecast2 as the icecast2 user")
	}
	u, err := user.Lookup("icecast2")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no icecast2 user (install the icecast2 package): %v", err)
		}
		t.Skipf("no icecast2 user (install the icecast2 package): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	var errs []string
	for attempt := 1; attempt <= 3; attempt++ {
		ice, err := launchIcecast(t, bin, uid, gid, cfg)
		if err == nil {
			return ice
		}
		errs = append(errs, fmt.Sprintf("attempt %d: %v", attempt, err))
		t.Logf("NOTE: icecast2 start attempt %d failed: %v", attempt, err)
	}
	t.Fatalf("icecast2 would not start:\n%s", strings.Join(errs, "\n"))
	return nil
}

// launchIcecast starts one Icecast and warms it up with a throwaway
// source. On failure everything it started is stopped already.
func launchIcecast(t testing.TB, bin string, uid, gid int, cfg IcecastConfig) (*Icecast, error) {
	dir, err := os.MkdirTemp("", "tandem-icecast-")
	if err != nil {
		return nil, err
	}
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for _, p := range []string{dir, logDir} {
		if err := os.Chown(p, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A free port: bind, note, release (Icecast binds it right after).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := fmt.Sprintf(`<icecast>
  <location>test</location><admin>test@localhost</admin>
  <limits>
    <clients>%d</clients><sources>4</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-on-connect>1</burst-on-connect><burst-size>65535</burst-size>
  </limits>
  <authentication>
    <source-password>%s</source-password><relay-password>relay-pw-unused</relay-password>
    <admin-user>admin</admin-user><admin-password>admin-pw-unused</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>%d</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>%s</basedir><logdir>%s</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel><logsize>10000</logsize></logging>
  <security><chroot>0</chroot></security>
%s
</icecast>
`, cfg.Clients, IcecastPassword, port, dir, logDir, cfg.Mounts)
	confPath := filepath.Join(dir, "icecast.xml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	waited := make(chan struct{})
	var exitErr error
	go func() {
		exitErr = cmd.Wait()
		close(waited)
	}()
	errorLog := func() string {
		b, _ := os.ReadFile(filepath.Join(logDir, "error.log"))
		return string(b)
	}
	stop := func() {
		select {
		case <-waited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
	}
	fail := func(err error) (*Icecast, error) {
		stop()
		log := errorLog()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\noutput: %s\nerror.log:\n%s", err, out.String(), log)
	}
	dead := func() bool {
		select {
		case <-waited:
			return true
		default:
			return false
		}
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if !WaitFor(10*time.Second, func() bool {
		if dead() {
			return true
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) || dead() {
		return fail(fmt.Errorf("icecast2 did not listen on %s (exit: %v)", addr, exitErr))
	}
	// The throwaway source.
	if err := warmUp(addr); err != nil {
		return fail(fmt.Errorf("warm-up source: %w", err))
	}
	time.Sleep(300 * time.Millisecond)
	if dead() {
		return fail(fmt.Errorf("icecast2 died after warming up: %v", exitErr))
	}
	t.Cleanup(func() {
		died := dead()
		stop()
		if died {
			t.Errorf("icecast2 died during the test: %v", exitErr)
		}
		if t.Failed() {
			t.Logf("icecast output:\n%s\nerror.log:\n%s", out.String(), errorLog())
		}
		os.RemoveAll(dir)
	})
	return &Icecast{Addr: addr, PID: cmd.Process.Pid}, nil
}

// warmUp logs a source in on /warmup.aac, sends a little, and leaves.
func warmUp(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte("source:" + IcecastPassword))
	fmt.Fprintf(c, "PUT /warmup.aac HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: audio/aac\r\nIce-Public: 0\r\nExpect: 100-continue\r\n\r\n", addr, auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusContinue && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("warm-up source refused: %s", resp.Status)
	}
	_, err = c.Write(make([]byte, 4096))
	return err
}
