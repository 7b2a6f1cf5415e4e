package netlab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"tandem/hal/netns"
)

// nsName resolves a namespace argument: the lab's AppNS or CloudNS, or the
// shorthands "app" and "cloud".
func (l *Lab) nsName(ns string) (string, error) {
	switch ns {
	case l.AppNS, "app":
		return l.AppNS, nil
	case l.CloudNS, "cloud":
		return l.CloudNS, nil
	}
	return "", fmt.Errorf("netlab: namespace %q is not %s or %s", ns, l.AppNS, l.CloudNS)
}

// Do runs fn on an OS thread that has joined namespace ns (AppNS, CloudNS,
// "app" or "cloud"), and returns fn's error. Sockets fn creates live in ns for
// their whole life, whichever goroutine uses them later; so do threads that C
// code called from fn creates (e.g. libsrt's workers). Goroutines fn starts do
// not run in ns. fn runs on its own goroutine: it must not call t.Fatal.
func (l *Lab) Do(ns string, fn func() error) error {
	name, err := l.nsName(ns)
	if err != nil {
		return err
	}
	return doInNS(name, fn)
}

// doInNS runs fn on a thread switched into the named namespace.
func doInNS(name string, fn func() error) error {
	return netns.Do(filepath.Join(netnsDir, name), fn)
}

// Command returns a command that runs name inside namespace ns (AppNS, CloudNS,
// "app" or "cloud") through "ip netns exec"; ctx kills it.
func (l *Lab) Command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	if n, err := l.nsName(ns); err == nil {
		ns = n
	} // else: let ip report the unknown namespace when the command runs
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// DialContext returns a dial function whose sockets live in namespace ns, for
// http.Transport.DialContext and the like. Addresses must be IP literals: name
// resolution would run outside the namespace.
func (l *Lab) DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return l.Dialer(ns, nil)
}

// Dialer is DialContext with a dialer template: set d.LocalAddr to bind a
// source address (a Link's AppAddr pins the connection to that link), d.Timeout,
// d.Control, and so on. d is copied; nil means a zero net.Dialer.
func (l *Lab) Dialer(ns string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var base net.Dialer
	if d != nil {
		base = *d
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := requireIPLiteral(network, addr); err != nil {
			return nil, err
		}
		var c net.Conn
		err := l.Do(ns, func() error {
			var err error
			c, err = base.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Listen returns a listener (e.g. TCP) bound inside namespace ns.
func (l *Lab) Listen(ns, network, addr string) (net.Listener, error) {
	if err := requireIPLiteral(network, addr); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := l.Do(ns, func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(context.Background(), network, addr)
		return err
	})
	return ln, err
}

// ListenPacket returns a packet socket (e.g. UDP) bound inside namespace ns. Bind
// a Link's AppAddr to send over that link.
func (l *Lab) ListenPacket(ns, network, addr string) (net.PacketConn, error) {
	if err := requireIPLiteral(network, addr); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := l.Do(ns, func() error {
		var err error
		pc, err = (&net.ListenConfig{}).ListenPacket(context.Background(), network, addr)
		return err
	})
	return pc, err
}

func requireIPLiteral(network, addr string) error {
	if !strings.HasPrefix(network, "tcp") && !strings.HasPrefix(network, "udp") {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("netlab: %s address %q: %w", network, addr, err)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("netlab: %s address %q: use an IP literal (name resolution would leave the namespace)", network, addr)
	}
	return nil
}

// Counters returns the packet and byte counters of interface ifname in namespace
// ns, read from /proc/thread-self/net/dev on a thread inside that namespace.
func (l *Lab) Counters(ns, ifname string) (rxPackets, txPackets, rxBytes, txBytes uint64, err error) {
	var dev []byte
	err = l.Do(ns, func() error {
		var err error
		dev, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("netlab: counters of %s in %s: %w", ifname, ns, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(dev))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) != ifname {
			continue
		}
		// rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets ...
		f := strings.Fields(rest)
		if len(f) < 10 {
			break
		}
		var v [4]uint64
		for i, idx := range []int{1, 9, 0, 8} {
			if v[i], err = strconv.ParseUint(f[idx], 10, 64); err != nil {
				return 0, 0, 0, 0, fmt.Errorf("netlab: counters of %s in %s: %w", ifname, ns, err)
			}
		}
		return v[0], v[1], v[2], v[3], nil
	}
	return 0, 0, 0, 0, fmt.Errorf("netlab: counters: no interface %s in %s", ifname, ns)
}
