package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// echoServer starts a UDP echo server in CLOUD bound to addr (normally
// CloudAddr) and returns its port. Bind a specific address: a server on 0.0.0.0
// would answer from the address of the link the reply leaves by, which a
// connected client socket drops.
func echoServer(t *testing.T, l *Lab, addr string) int {
	t.Helper()
	pc, err := l.ListenPacket(l.CloudNS, "udp4", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// roundTrips sends n datagrams from APP, bound to src, to dst and counts the
// echoes that come back within wait after the last send. It returns the first
// send error, if any, at once.
func roundTrips(t *testing.T, l *Lab, src, dst string, n int, wait time.Duration) (int, error) {
	t.Helper()
	pc, err := l.ListenPacket(l.AppNS, "udp4", net.JoinHostPort(src, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	to, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := pc.WriteTo(fmt.Appendf(nil, "probe %d", i), to); err != nil {
			return 0, err
		}
	}
	seen := map[string]bool{}
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(wait))
	for len(seen) < n {
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			break // deadline
		}
		seen[string(buf[:k])] = true
	}
	return len(seen), nil
}

// oneWay sends n datagrams, paced, from fromAddr in namespace fromNS to a sink
// at toAddr in toNS and returns how many arrived.
func oneWay(t *testing.T, l *Lab, fromNS, fromAddr, toNS, toAddr string, n int) int {
	t.Helper()
	sink, err := l.ListenPacket(toNS, "udp4", net.JoinHostPort(toAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	src, err := l.ListenPacket(fromNS, "udp4", net.JoinHostPort(fromAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got := make(chan int, 1)
	// The reader stops at the deadline, which the sender moves to 300 ms after
	// its last datagram: a slow (loaded) sender does not end the count early.
	sink.SetReadDeadline(time.Now().Add(30 * time.Second))
	go func() {
		seen := map[string]bool{}
		buf := make([]byte, 2048)
		for {
			k, _, err := sink.ReadFrom(buf)
			if err != nil {
				break
			}
			seen[string(buf[:k])] = true
		}
		got <- len(seen)
	}()
	to := sink.LocalAddr()
	for i := range n {
		if _, err := src.WriteTo(fmt.Appendf(nil, "seq %d", i), to); err != nil {
			t.Errorf("send %d: %v", i, err)
			break
		}
		if i%10 == 9 {
			time.Sleep(time.Millisecond) // stay well under the sink's socket buffer
		}
	}
	sink.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	return <-got
}

type txSnap map[string]uint64 // APP interface -> tx packets

func snapTx(t *testing.T, l *Lab) txSnap {
	t.Helper()
	s := txSnap{}
	for _, lk := range l.Links {
		_, tx, _, _, err := l.Counters(l.AppNS, lk.AppIf)
		if err != nil {
			t.Fatal(err)
		}
		s[lk.AppIf] = tx
	}
	return s
}

// txDelta returns how many packets each APP interface sent since before.
func txDelta(t *testing.T, l *Lab, before txSnap) txSnap {
	t.Helper()
	after := snapTx(t, l)
	d := txSnap{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}

func other(link string) string {
	if link == "a" {
		return "b"
	}
	return "a"
}

// inNS runs a command in a lab namespace and returns its output.
func inNS(t *testing.T, l *Lab, ns string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.Command(ctx, ns, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

func hasNS(list, ns string) bool {
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
			return true
		}
	}
	return false
}

func isErrno(err error, errno ...error) bool {
	for _, e := range errno {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
