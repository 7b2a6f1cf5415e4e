package netlab

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const probes = 50

func TestNewAndClose(t *testing.T) {
	t.Parallel()
	l := New(t, Options{})
	list := netnsList(t)
	for _, ns := range []string{l.AppNS, l.CloudNS} {
		if !hasNS(list, ns) {
			t.Fatalf("namespace %s missing after New; ip netns list:\n%s", ns, list)
		}
		if !labNSRe.MatchString(ns) {
			t.Errorf("namespace name %q does not match %v", ns, labNSRe)
		}
	}
	if _, err := os.Stat(markerPath(l.id)); err != nil {
		t.Errorf("owner marker: %v", err)
	}
	// Addresses as documented.
	if got := inNS(t, l, l.CloudNS, "ip", "-4", "-br", "addr", "show", "dev", "lo"); !strings.Contains(got, "10.201.0.1/32") || !strings.Contains(got, "127.0.0.1/8") {
		t.Errorf("CLOUD lo: %q", got)
	}
	if got := inNS(t, l, "app", "ip", "-4", "-br", "addr", "show", "dev", "wanb"); !strings.Contains(got, "10.201.2.2/24") {
		t.Errorf("APP wanb: %q", got)
	}
	if got := inNS(t, l, "app", "ip", "route", "show", "table", "101"); !strings.Contains(got, "default via 10.201.1.1 dev wana") || !strings.Contains(got, "unreachable default metric 4000") {
		t.Errorf("table 101:\n%s", got)
	}
	if got := inNS(t, l, "app", "ip", "rule", "show"); !strings.Contains(got, "1002:\tfrom 10.201.2.2 lookup 102") {
		t.Errorf("rules:\n%s", got)
	}

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	list = netnsList(t)
	for _, ns := range []string{l.AppNS, l.CloudNS} {
		if hasNS(list, ns) {
			t.Errorf("namespace %s still there after Close", ns)
		}
	}
	if _, err := os.Stat(markerPath(l.id)); !os.IsNotExist(err) {
		t.Errorf("owner marker still there after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Traffic from a link's address goes out of that link's interface only.
func TestPinnedPaths(t *testing.T) {
	t.Parallel()
	l := New(t, Options{})
	port := echoServer(t, l, l.CloudAddr)
	dst := net.JoinHostPort(l.CloudAddr, strconv.Itoa(port))
	for _, name := range []string{"a", "b"} {
		lk, ok := l.Links[name], l.Links[other(name)]
		before := snapTx(t, l)
		_, _, cloudRx0, _, err := l.Counters(l.CloudNS, lk.CloudIf)
		if err != nil {
			t.Fatal(err)
		}
		got, err := roundTrips(t, l, lk.AppAddr, dst, probes, 2*time.Second)
		if err != nil || got != probes {
			t.Fatalf("link %s: %d/%d echoes, err %v", name, got, probes, err)
		}
		d := txDelta(t, l, before)
		if d[lk.AppIf] < probes {
			t.Errorf("link %s: %s sent %d packets, want >= %d", name, lk.AppIf, d[lk.AppIf], probes)
		}
		if d[ok.AppIf] > 2 {
			t.Errorf("link %s: traffic leaked: %s sent %d packets", name, ok.AppIf, d[ok.AppIf])
		}
		_, _, cloudRx1, _, err := l.Counters(l.CloudNS, lk.CloudIf)
		if err != nil {
			t.Fatal(err)
		}
		if cloudRx1-cloudRx0 < probes {
			t.Errorf("link %s: CLOUD %s received %d packets, want >= %d", name, lk.CloudIf, cloudRx1-cloudRx0, probes)
		}
	}
	// Unbound sockets follow the main table: link a.
	before := snapTx(t, l)
	c, err := l.DialContext(l.AppNS)(context.Background(), "udp4", dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ip := c.LocalAddr().(*net.UDPAddr).IP.String(); ip != l.Links["a"].AppAddr {
		t.Errorf("unbound socket got source %s, want %s", ip, l.Links["a"].AppAddr)
	}
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 10)); err != nil {
		t.Errorf("unbound echo: %v", err)
	}
	if d := txDelta(t, l, before); d["wana"] < 1 || d["wanb"] > 2 {
		t.Errorf("unbound traffic: tx deltas %v, want it on wana", d)
	}
}

func TestCutAndRestore(t *testing.T) {
	t.Parallel()
	l := New(t, Options{})
	port := echoServer(t, l, l.CloudAddr)
	dst := net.JoinHostPort(l.CloudAddr, strconv.Itoa(port))
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			lk, ok := l.Links[name], l.Links[other(name)]
			if err := l.Cut(name); err != nil {
				t.Fatal(err)
			}
			if err := l.Cut(name); err != nil { // idempotent
				t.Fatal(err)
			}
			before := snapTx(t, l)
			got, err := roundTrips(t, l, lk.AppAddr, dst, probes, 300*time.Millisecond)
			if err != nil {
				t.Fatalf("send on a cut link should not fail (the drop is silent): %v", err)
			}
			if got != 0 {
				t.Errorf("cut link %s: %d echoes came back", name, got)
			}
			d := txDelta(t, l, before)
			if d[ok.AppIf] > 2 {
				t.Errorf("cut link %s leaked into %s: %d packets", name, ok.AppIf, d[ok.AppIf])
			}
			if d[lk.AppIf] > 2 {
				t.Errorf("cut link %s: %s still counted %d sent packets", name, lk.AppIf, d[lk.AppIf])
			}
			// The interfaces stay up.
			if out := inNS(t, l, "app", "ip", "-br", "link", "show", "dev", lk.AppIf); !strings.Contains(out, "UP") {
				t.Errorf("cut link %s: interface not up: %s", name, out)
			}
			// The other link still works.
			if got, err := roundTrips(t, l, ok.AppAddr, dst, probes, 2*time.Second); err != nil || got != probes {
				t.Errorf("other link %s while %s is cut: %d/%d, %v", ok.Name, name, got, probes, err)
			}
			if err := l.Restore(name); err != nil {
				t.Fatal(err)
			}
			before = snapTx(t, l)
			if got, err := roundTrips(t, l, lk.AppAddr, dst, probes, 2*time.Second); err != nil || got != probes {
				t.Errorf("restored link %s: %d/%d, %v", name, got, probes, err)
			}
			if d := txDelta(t, l, before); d[lk.AppIf] < probes || d[ok.AppIf] > 2 {
				t.Errorf("restored link %s: tx deltas %v", name, d)
			}
		})
	}
}

func TestDownAndUp(t *testing.T) {
	t.Parallel()
	l := New(t, Options{})
	port := echoServer(t, l, l.CloudAddr)
	dst := net.JoinHostPort(l.CloudAddr, strconv.Itoa(port))
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			lk, ok := l.Links[name], l.Links[other(name)]
			for _, bringBack := range []struct {
				how string
				fn  func(string) error
			}{{"Up", l.Up}, {"Restore", l.Restore}} {
				if err := l.Down(name); err != nil {
					t.Fatal(err)
				}
				before := snapTx(t, l)
				start := time.Now()
				_, err := roundTrips(t, l, lk.AppAddr, dst, probes, 300*time.Millisecond)
				if !isErrno(err, syscall.EHOSTUNREACH) {
					t.Errorf("send from %s with %s down: got %v, want EHOSTUNREACH (the unreachable route)", lk.AppAddr, lk.AppIf, err)
				}
				// A TCP dial pinned to the downed link fails at once too.
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(lk.AppAddr)}, Timeout: 5 * time.Second}
				if c, err := l.Dialer(l.AppNS, d)(context.Background(), "tcp4", net.JoinHostPort(l.CloudAddr, "9")); !isErrno(err, syscall.EHOSTUNREACH) {
					if c != nil {
						c.Close()
					}
					t.Errorf("TCP dial from %s with %s down: got %v, want EHOSTUNREACH", lk.AppAddr, lk.AppIf, err)
				}
				if el := time.Since(start); el > time.Second {
					t.Errorf("failing on a downed link took %v, want immediate", el)
				}
				if d := txDelta(t, l, before); d[ok.AppIf] > 2 {
					t.Errorf("link %s down: traffic leaked into %s: %d packets", name, ok.AppIf, d[ok.AppIf])
				}
				if got, err := roundTrips(t, l, ok.AppAddr, dst, probes, 2*time.Second); err != nil || got != probes {
					t.Errorf("other link %s while %s is down: %d/%d, %v", ok.Name, name, got, probes, err)
				}
				if err := bringBack.fn(name); err != nil {
					t.Fatalf("%s(%s): %v", bringBack.how, name, err)
				}
				before = snapTx(t, l)
				if got, err := roundTrips(t, l, lk.AppAddr, dst, probes, 2*time.Second); err != nil || got != probes {
					t.Errorf("after %s(%s): %d/%d, %v", bringBack.how, name, got, probes, err)
				}
				if d := txDelta(t, l, before); d[lk.AppIf] < probes || d[ok.AppIf] > 2 {
					t.Errorf("after %s(%s): tx deltas %v", bringBack.how, name, d)
				}
				if name == mainLink {
					if got := inNS(t, l, "app", "ip", "route", "show", "table", "main"); !strings.Contains(got, "default via "+lk.CloudLinkAddr) {
						t.Errorf("after %s(%s): main default route missing:\n%s", bringBack.how, name, got)
					}
				}
			}
		})
	}
}

// Why the lab has unreachable routes: without one, a downed link b's traffic
// falls through to the main table and leaves through link a. The lab's counters
// see the leak.
func TestDownWithoutUnreachableRouteLeaks(t *testing.T) {
	t.Parallel()
	l := New(t, Options{})
	port := echoServer(t, l, l.CloudAddr)
	dst := net.JoinHostPort(l.CloudAddr, strconv.Itoa(port))
	inNS(t, l, "app", "ip", "route", "del", "unreachable", "default", "metric", "4000", "table", "102")
	if err := l.Down("b"); err != nil {
		t.Fatal(err)
	}
	before := snapTx(t, l)
	got, err := roundTrips(t, l, l.Links["b"].AppAddr, dst, probes, 300*time.Millisecond)
	if err != nil {
		t.Fatalf("expected the leak to send without error, got %v", err)
	}
	d := txDelta(t, l, before)
	if d["wana"] < probes {
		t.Errorf("expected %d leaked packets on wana, tx deltas %v", probes, d)
	}
	t.Logf("without the unreachable route: %d packets from %s left via wana, %d echoes returned", d["wana"], l.Links["b"].AppAddr, got)
	if err := l.Up("b"); err != nil {
		t.Fatal(err)
	}
	if out := inNS(t, l, "app", "ip", "route", "show", "table", "102"); !strings.Contains(out, "unreachable default metric 4000") || !strings.Contains(out, "default via 10.201.2.1 dev wanb") {
		t.Errorf("Up did not restore table 102:\n%s", out)
	}
}

func TestLoss(t *testing.T) {
	t.Parallel()
	l := New(t, Options{})
	const n = 400
	a, b := l.Links["a"], l.Links["b"]
	up := func() int { return oneWay(t, l, l.AppNS, a.AppAddr, l.CloudNS, l.CloudAddr, n) }
	down := func() int { return oneWay(t, l, l.CloudNS, l.CloudAddr, l.AppNS, a.AppAddr, n) }
	half := func(what string, got int) {
		t.Helper()
		if got < n/4 || got > 3*n/4 {
			t.Errorf("%s: %d/%d arrived, want 25%%..75%%", what, got, n)
		} else {
			t.Logf("%s: %d/%d arrived", what, got, n)
		}
	}
	if got := up(); got != n {
		t.Fatalf("no loss: %d/%d arrived", got, n)
	}
	if err := l.SetLoss("a", 50); err != nil {
		t.Fatal(err)
	}
	half("loss 50% APP->CLOUD", up())
	half("loss 50% CLOUD->APP", down())
	if got := oneWay(t, l, l.AppNS, b.AppAddr, l.CloudNS, l.CloudAddr, n); got != n {
		t.Errorf("link b affected by link a's loss: %d/%d", got, n)
	}
	// A cut link with loss stays cut; Restore removes the cut, keeps the loss.
	if err := l.Cut("a"); err != nil {
		t.Fatal(err)
	}
	if got := up(); got != 0 {
		t.Errorf("cut + loss: %d/%d arrived, want 0", got, n)
	}
	if err := l.SetLoss("a", 10); err != nil { // changing the loss keeps the cut
		t.Fatal(err)
	}
	if got := up(); got != 0 {
		t.Errorf("cut, loss changed: %d/%d arrived, want 0", got, n)
	}
	if err := l.SetLoss("a", 50); err != nil {
		t.Fatal(err)
	}
	if err := l.Restore("a"); err != nil {
		t.Fatal(err)
	}
	half("restored, loss kept", up())
	if err := l.SetLoss("a", 0); err != nil {
		t.Fatal(err)
	}
	if got := up(); got != n {
		t.Errorf("loss cleared: %d/%d arrived", got, n)
	}
	if err := l.SetLoss("a", 100); err != nil {
		t.Fatal(err)
	}
	if got := up(); got != 0 {
		t.Errorf("loss 100%%: %d/%d arrived", got, n)
	}
	for _, bad := range []int{-1, 101} {
		if err := l.SetLoss("a", bad); err == nil {
			t.Errorf("SetLoss(a, %d) accepted", bad)
		}
	}
	if err := l.SetLoss("c", 10); err == nil {
		t.Error("SetLoss on unknown link accepted")
	}
}

func TestDialListenTCP(t *testing.T) {
	t.Parallel()
	l := New(t, Options{})
	ln, err := l.Listen(l.CloudNS, "tcp4", net.JoinHostPort(l.CloudAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	for _, name := range []string{"a", "b"} {
		lk := l.Links[name]
		before := snapTx(t, l)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		dial := l.Dialer(l.AppNS, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(lk.AppAddr)}})
		c, err := dial(ctx, "tcp4", ln.Addr().String())
		cancel()
		if err != nil {
			t.Fatalf("dial from %s: %v", lk.AppAddr, err)
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("echo over link %s: %q, %v", name, buf, err)
		}
		c.Close()
		if peer := <-peers; peer != lk.AppAddr {
			t.Errorf("server saw peer %s, want %s", peer, lk.AppAddr)
		}
		if d := txDelta(t, l, before); d[lk.AppIf] < 3 || d[l.Links[other(name)].AppIf] > 2 {
			t.Errorf("TCP over link %s: tx deltas %v", name, d)
		}
	}
	// The other way round: a server in APP, a client in CLOUD.
	aln, err := l.Listen("app", "tcp4", net.JoinHostPort(l.Links["b"].AppAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer aln.Close()
	go func() {
		if c, err := aln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := l.DialContext("cloud")(context.Background(), "tcp4", aln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(b) != "hi" {
		t.Errorf("CLOUD -> APP: %q, %v", b, err)
	}
	// Names are refused: resolving them would leave the namespace.
	if _, err := l.DialContext("app")(context.Background(), "tcp", "localhost:80"); err == nil || !strings.Contains(err.Error(), "IP literal") {
		t.Errorf("dial by name: %v", err)
	}
	if _, err := l.Listen("nowhere", "tcp", "127.0.0.1:0"); err == nil {
		t.Error("Listen in an unknown namespace succeeded")
	}
}

func TestNoPolicyRouting(t *testing.T) {
	t.Parallel()
	l := New(t, Options{NoPolicyRouting: true})
	port := echoServer(t, l, l.CloudAddr)
	if got := inNS(t, l, "app", "ip", "rule", "show"); strings.Contains(got, "lookup 101") || strings.Contains(got, "lookup 102") {
		t.Errorf("rules with NoPolicyRouting:\n%s", got)
	}
	if got := inNS(t, l, "app", "ip", "route", "show", "table", "main"); strings.Contains(got, "default") {
		t.Errorf("main table has a default route with NoPolicyRouting:\n%s", got)
	}
	b := l.Links["b"]
	peerPort := echoServer(t, l, b.CloudLinkAddr)
	// No default route: the service address is unreachable, the link peer is not.
	if _, err := roundTrips(t, l, b.AppAddr, net.JoinHostPort(l.CloudAddr, strconv.Itoa(port)), 1, 300*time.Millisecond); !isErrno(err, syscall.ENETUNREACH) {
		t.Errorf("CloudAddr without routes: got %v, want ENETUNREACH", err)
	}
	if got, err := roundTrips(t, l, b.AppAddr, net.JoinHostPort(b.CloudLinkAddr, strconv.Itoa(peerPort)), probes, 2*time.Second); err != nil || got != probes {
		t.Errorf("link peer: %d/%d, %v", got, probes, err)
	}
	if err := l.Down("b"); err != nil {
		t.Fatal(err)
	}
	if err := l.Up("b"); err != nil {
		t.Fatal(err)
	}
	// With no routes in it, table 102 does not even exist.
	if got, err := l.Command(context.Background(), "app", "ip", "route", "show", "table", "102").CombinedOutput(); err == nil && strings.TrimSpace(string(got)) != "" {
		t.Errorf("Up added routes with NoPolicyRouting:\n%s", got)
	}
}

func TestCommandAndErrors(t *testing.T) {
	t.Parallel()
	l := New(t, Options{})
	out := inNS(t, l, l.CloudNS, "ip", "-4", "-br", "addr")
	if !strings.Contains(out, "ispa") || strings.Contains(out, "wana") {
		t.Errorf("Command did not run in CLOUD:\n%s", out)
	}
	if _, _, _, _, err := l.Counters(l.AppNS, "ispa"); err == nil {
		t.Error("Counters found CLOUD's interface in APP")
	}
	// A failing command's error names the command line and carries its stderr.
	err := run(context.Background(), "", "ip", "-n", l.AppNS, "link", "set", "dev", "nosuchif", "up")
	if err == nil || !strings.Contains(err.Error(), "ip -n "+l.AppNS+" link set dev nosuchif up") || !strings.Contains(err.Error(), "nosuchif") {
		t.Errorf("command error: %v", err)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Stderr == "" {
		t.Errorf("error is not a *CommandError with stderr: %#v", err)
	}
	if err := l.Cut("z"); err == nil {
		t.Error("Cut(z) accepted")
	}
}
