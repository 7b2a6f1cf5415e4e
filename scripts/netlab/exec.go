package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// CommandError is a failed command: its command line, its stderr and the error
// from running it.
type CommandError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = "(no stderr)"
	}
	return fmt.Sprintf("%s: %v: %s", strings.Join(e.Args, " "), e.Err, msg)
}

func (e *CommandError) Unwrap() error { return e.Err }

// run runs a command with stdin, bounded by ctx and cmdTimeout, and returns a
// *CommandError when it fails.
func run(ctx context.Context, stdin string, args ...string) error {
	_, err := output(ctx, stdin, args...)
	return err
}

func output(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return nil, &CommandError{Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// netnsDir is where iproute2 keeps named namespaces (its NETNS_RUN_DIR).
const netnsDir = "/var/run/netns"

func nsExists(ns string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, ns))
	return err == nil
}

// deleteNS kills the processes left inside ns (never this one) and deletes it.
// A namespace that does not exist is not an error.
func deleteNS(ctx context.Context, ns string) error {
	if !nsExists(ns) {
		return nil
	}
	out, err := output(ctx, "", "ip", "netns", "pids", ns)
	if err == nil {
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == os.Getpid() {
				continue
			}
			_ = syscall.Kill(pid, syscall.SIGKILL) // it may be gone already
		}
	}
	if err := run(ctx, "", "ip", "netns", "del", ns); err != nil {
		if !nsExists(ns) { // deleted concurrently (stale cleanup by another lab)
			return nil
		}
		return err
	}
	return nil
}

// Ownership markers: /run/tandem-lab/<id> holds "<pid> <start time>" of the
// process that owns namespaces tdm-<id>-app and tdm-<id>-cloud. It is written
// before the namespaces are created and removed after they are deleted.
const stateDir = "/run/tandem-lab"

var (
	labNSRe = regexp.MustCompile(`^tdm-([0-9a-f]{8})-(app|cloud)$`)
	idRe    = regexp.MustCompile(`^[0-9a-f]{8}$`)
)

func markerPath(id string) string { return filepath.Join(stateDir, id) }

func newID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("lab id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// writeMarker records pid as the owner of lab id, atomically.
func writeMarker(id string, pid int) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("marker: %w", err)
	}
	start, err := procStartTime(pid)
	if err != nil {
		return fmt.Errorf("marker: %w", err)
	}
	tmp, err := os.CreateTemp(stateDir, ".tmp-")
	if err != nil {
		return fmt.Errorf("marker: %w", err)
	}
	_, werr := fmt.Fprintf(tmp, "%d %s\n", pid, start)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("marker: %w", err)
	}
	if err := os.Rename(tmp.Name(), markerPath(id)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("marker: %w", err)
	}
	return nil
}

// procStartTime returns field 22 of /proc/PID/stat (start time in clock ticks
// since boot), which tells a live owner from a later process reusing its pid.
func procStartTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may contain spaces
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f[19], nil
}

// ownerAlive reports whether the process recorded in lab id's marker still runs.
// A missing or unreadable marker counts as dead: markers are written before
// namespaces exist and removed after they are gone, so a namespace without a
// marker belongs to no live lab.
func ownerAlive(id string) bool {
	b, err := os.ReadFile(markerPath(id))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	start, err := procStartTime(pid)
	return err == nil && start == f[1]
}

// cleanStale removes the namespaces and markers of labs whose owner is dead
// (a test binary killed by a timeout or a signal never runs its cleanups).
// Failures are logged, not returned: another lab may be removing the same ones.
func cleanStale(logf func(format string, args ...any)) {
	ids := map[string]bool{}
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if m := labNSRe.FindStringSubmatch(e.Name()); m != nil {
				ids[m[1]] = true
			}
		}
	}
	if entries, err := os.ReadDir(stateDir); err == nil {
		for _, e := range entries {
			if idRe.MatchString(e.Name()) {
				ids[e.Name()] = true
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	for id := range ids {
		if ownerAlive(id) {
			continue
		}
		var errs []error
		for _, suffix := range []string{"-app", "-cloud"} {
			ns := "tdm-" + id + suffix
			if nsExists(ns) {
				logf("netlab: removing stale namespace %s (owner dead)", ns)
			}
			if err := deleteNS(ctx, ns); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			logf("netlab: stale lab %s: %v", id, errors.Join(errs...))
			continue
		}
		if err := os.Remove(markerPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			logf("netlab: stale lab %s: %v", id, err)
		}
	}
}
