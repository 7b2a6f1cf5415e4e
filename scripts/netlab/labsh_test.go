package netlab

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLabScript drives scripts/lab.sh (up, cut, restore, loss, ifdown, ifup,
// exec, status, down) and checks the network it builds with the same probes as
// the Go lab. It runs the script under a unique TANDEM_LAB prefix, owned through
// the same marker as a Go lab, so it never touches a human's tdm-lab and a
// crashed run is cleaned up by the next New.
func TestLabScript(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab.sh needs root")
	}
	Require(t)
	script, err := filepath.Abs("../lab.sh")
	if err != nil {
		t.Fatal(err)
	}
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	prefix := "tdm-" + id
	if err := writeMarker(id, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	l := describe(prefix, Options{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", script, "down")
		cmd.Env = append(os.Environ(), "TANDEM_LAB="+prefix)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cleanup: lab.sh down: %v\n%s", err, out)
		}
		for _, ns := range []string{l.AppNS, l.CloudNS} { // belt and braces
			if err := deleteNS(ctx, ns); err != nil {
				t.Error(err)
			}
		}
		os.Remove(markerPath(id))
	})

	sh := func(wantCode int, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "TANDEM_LAB="+prefix)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("lab.sh %s: %v", strings.Join(args, " "), err)
		}
		if code != wantCode {
			t.Fatalf("lab.sh %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, out.String())
		}
		return out.String()
	}

	sh(3, "status") // not up yet
	out := sh(0, "up")
	if !strings.Contains(out, "+ ip netns add "+l.AppNS) {
		t.Errorf("up does not print what it did:\n%s", out)
	}
	sh(0, "up") // idempotent
	if got := inNS(t, l, "app", "ip", "rule", "show"); strings.Count(got, "lookup 101") != 1 {
		t.Errorf("second up duplicated rules:\n%s", got)
	}
	status := sh(0, "status")
	for _, want := range []string{"10.201.0.1/32", "10.201.1.2/24", "10.201.2.1/24", "unreachable default metric 4000", "from 10.201.2.2 lookup 102", "cut_b_out"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	if got := sh(0, "exec", "cloud", "ip", "-4", "-br", "addr", "show", "dev", "lo"); !strings.Contains(got, "10.201.0.1/32") {
		t.Errorf("exec cloud: %s", got)
	}

	port := echoServer(t, l, l.CloudAddr)
	dst := net.JoinHostPort(l.CloudAddr, strconv.Itoa(port))
	works := func(link string, want bool) {
		t.Helper()
		lk := l.Links[link]
		before := snapTx(t, l)
		wait := 2 * time.Second
		if !want {
			wait = 300 * time.Millisecond
		}
		got, err := roundTrips(t, l, lk.AppAddr, dst, probes, wait)
		if want && (err != nil || got != probes) {
			t.Errorf("link %s: %d/%d echoes, %v; want all", link, got, probes, err)
		}
		if !want && got != 0 {
			t.Errorf("link %s: %d/%d echoes; want none", link, got, probes)
		}
		if d := txDelta(t, l, before); d[l.Links[other(link)].AppIf] > 2 {
			t.Errorf("link %s traffic leaked: tx deltas %v", link, d)
		}
	}
	works("a", true)
	works("b", true)

	sh(0, "cut", "a")
	works("a", false)
	works("b", true)
	sh(0, "restore", "a")
	works("a", true)

	sh(0, "loss", "b", "100")
	works("b", false)
	sh(0, "loss", "b", "50")
	if got := oneWay(t, l, l.AppNS, l.Links["b"].AppAddr, l.CloudNS, l.CloudAddr, 400); got < 100 || got > 300 {
		t.Errorf("lab.sh loss b 50: %d/400 arrived", got)
	}
	sh(0, "cut", "b")
	sh(0, "restore", "b") // keeps the loss
	works("a", true)
	sh(0, "loss", "b", "0")
	works("b", true)
	sh(1, "loss", "b", "101")
	sh(1, "cut", "c")

	sh(0, "ifdown", "b")
	if _, err := roundTrips(t, l, l.Links["b"].AppAddr, dst, 1, 300*time.Millisecond); !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("lab.sh ifdown b: send from b: %v, want EHOSTUNREACH", err)
	}
	sh(0, "ifup", "b")
	works("b", true)
	sh(0, "ifdown", "a")
	sh(0, "restore", "a") // restore brings a downed link back, routes included
	works("a", true)
	if got := inNS(t, l, "app", "ip", "route", "show"); !strings.Contains(got, "default via 10.201.1.1 dev wana") {
		t.Errorf("restore a did not re-add the main default route:\n%s", got)
	}

	sh(0, "down")
	if got := sh(0, "down"); !strings.Contains(got, "nothing to do") {
		t.Errorf("second down: %s", got)
	}
	sh(3, "status")
	list := netnsList(t)
	if hasNS(list, l.AppNS) || hasNS(list, l.CloudNS) {
		t.Errorf("namespaces left after lab.sh down:\n%s", list)
	}
}
