// Package netlab builds the Tandem two-ISP network lab for tests: an appliance
// namespace (APP) and a switcher namespace (CLOUD) joined by two veth links, "a"
// and "b", one per ISP, with the appliance's policy routing set up the way
// design.md ("Pinning traffic to one ISP") requires. Tests cut links, take them
// down, add loss, and open sockets inside either namespace.
//
// scripts/lab.sh builds the same topology for humans. Keep the two in sync:
// addresses, interface names, table numbers, rule priorities and the nft chain
// layout are identical; only the namespace names differ (lab.sh: tdm-lab-app and
// tdm-lab-cloud; here tdm-<8 hex>-app and tdm-<8 hex>-cloud, one pair per lab).
//
//	namespace APP (the appliance)               namespace CLOUD (the switcher)
//	wana 10.201.1.2/24 <== veth, link "a" ==>   ispa 10.201.1.1/24
//	wanb 10.201.2.2/24 <== veth, link "b" ==>   ispb 10.201.2.1/24
//	lo   127.0.0.1                              lo   127.0.0.1, 10.201.0.1/32 (CloudAddr,
//	                                                 reachable over both links)
//
//	APP policy routing (unless Options.NoPolicyRouting):
//	  table 101: default via 10.201.1.1 dev wana; unreachable default metric 4000
//	  table 102: default via 10.201.2.1 dev wanb; unreachable default metric 4000
//	  rule pref 1001: from 10.201.1.2 lookup 101
//	  rule pref 1002: from 10.201.2.2 lookup 102
//	  main table: default via 10.201.1.1 dev wana
//
//	Impairments: nftables table "netdev tdmlab" in APP (namespaces isolate nft
//	state, so each lab has its own), base chains bound to wana/wanb:
//	  cut_<l>_in, cut_<l>_out    ingress/egress, priority -10: "drop"
//	  loss_<l>_in, loss_<l>_out  ingress/egress, priority 0:
//	                             "meta protocol != arp numgen random mod 100 < N drop"
//
// IPv6 is disabled in both namespaces, so interface counters move only with the
// traffic a test sends (no router solicitations or MLD reports).
//
// Facts worth knowing (measured on the 6.18 kernel this was written on):
//   - "ip link set down" on an APP interface deletes the routes through it (the
//     table's default route, and the main default for link a) but keeps its
//     address and local route: a socket can still bind the address, and a send
//     from it hits the table's "unreachable" route and fails at once with
//     EHOSTUNREACH (not ENETUNREACH: that is the error for "no route at all").
//     Without the unreachable route, the lookup falls through to the main table
//     and traffic from link b's address silently leaves through link a.
//   - Bringing the interface up again restores the connected and local routes
//     but not the default routes: Up re-adds them.
//   - An nft drop on the netdev egress hook is silent for the sender (UDP send
//     succeeds) and the dropped packets do not show in the interface's tx
//     counters; ingress drops happen after the veth counted the packet as rx.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Topology constants, shared with scripts/lab.sh.
const (
	cloudServiceAddr  = "10.201.0.1"
	prefixLen         = 24
	mainLink          = "a"
	unreachableMetric = 4000
	nftTable          = "tdmlab"
	cmdTimeout        = 30 * time.Second
)

type linkSpec struct {
	name, appIf, cloudIf, appAddr, cloudAddr string
	table, pref                              int
}

var linkSpecs = []linkSpec{
	{name: "a", appIf: "wana", cloudIf: "ispa", appAddr: "10.201.1.2", cloudAddr: "10.201.1.1", table: 101, pref: 1001},
	{name: "b", appIf: "wanb", cloudIf: "ispb", appAddr: "10.201.2.2", cloudAddr: "10.201.2.1", table: 102, pref: 1002},
}

// Options change how New builds a lab.
type Options struct {
	// NoPolicyRouting leaves APP with addresses and connected routes only: no
	// per-link tables, no rules, no default route. Use it to test code that sets
	// up policy routing itself (the appliance daemon).
	NoPolicyRouting bool
}

// Lab is one instance of the two-ISP lab. Its methods are safe for concurrent use.
type Lab struct {
	AppNS     string // the appliance namespace
	CloudNS   string // the switcher namespace
	CloudAddr string // the switcher's service address (IPv4, no prefix), reachable over both links
	// Links holds the two uplinks, by name: "a" and "b".
	Links map[string]*Link

	id  string // 8 hex digits; empty for a lab not built by New
	opt Options

	mu       sync.Mutex // serialises impairment changes and Close
	closed   bool
	closeErr error
}

// Link is one uplink: a veth pair between APP and CLOUD.
type Link struct {
	Name          string // "a" or "b"
	AppIf         string // interface in APP, e.g. "wana"
	CloudIf       string // interface in CLOUD, e.g. "ispa"
	AppAddr       string // the appliance's address on this link (IPv4, no prefix; the link is a /24)
	CloudLinkAddr string // CLOUD's address on this link: the appliance's gateway for it
	Table         int    // APP routing table of this link (101, 102)
}

// describe returns the lab value for namespaces PREFIX-app and PREFIX-cloud,
// without creating anything.
func describe(prefix string, opt Options) *Lab {
	l := &Lab{
		AppNS:     prefix + "-app",
		CloudNS:   prefix + "-cloud",
		CloudAddr: cloudServiceAddr,
		Links:     make(map[string]*Link, len(linkSpecs)),
		opt:       opt,
	}
	for _, s := range linkSpecs {
		l.Links[s.name] = &Link{
			Name: s.name, AppIf: s.appIf, CloudIf: s.cloudIf,
			AppAddr: s.appAddr, CloudLinkAddr: s.cloudAddr, Table: s.table,
		}
	}
	return l
}

// New builds a lab with fresh namespaces and registers its teardown with
// t.Cleanup, so it is removed however the test ends (a panic included). Before
// that it removes the namespaces of labs whose owning process is dead. New calls
// Require first, so a test that cannot have a lab is skipped (or fails under CI).
func New(t testing.TB, opt Options) *Lab {
	t.Helper()
	Require(t)
	if err := acquireLabLock(t.Logf); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	// Registered first, so it runs last: after the lab is torn down.
	t.Cleanup(releaseLabLock)
	cleanStale(t.Logf)

	id, err := newID()
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	l := describe("tdm-"+id, opt)
	l.id = id
	// The marker goes first: from here on a crash leaves something cleanStale
	// can attribute to a dead owner.
	if err := writeMarker(id, os.Getpid()); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: teardown: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*cmdTimeout)
	defer cancel()
	if err := l.build(ctx); err != nil {
		t.Fatalf("netlab: build lab %s: %v", id, err)
	}
	return l
}

func (l *Lab) build(ctx context.Context) error {
	for _, ns := range []string{l.AppNS, l.CloudNS} {
		if err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
			return err
		}
		if err := disableIPv6(ns); err != nil {
			return err
		}
		if err := run(ctx, "", "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	if err := run(ctx, "", "ip", "-n", l.CloudNS, "addr", "add", l.CloudAddr+"/32", "dev", "lo"); err != nil {
		return err
	}
	for _, s := range linkSpecs {
		lk := l.Links[s.name]
		cmds := [][]string{
			{"ip", "link", "add", lk.AppIf, "netns", l.AppNS, "type", "veth", "peer", "name", lk.CloudIf, "netns", l.CloudNS},
			{"ip", "-n", l.AppNS, "addr", "add", fmt.Sprintf("%s/%d", lk.AppAddr, prefixLen), "dev", lk.AppIf},
			{"ip", "-n", l.CloudNS, "addr", "add", fmt.Sprintf("%s/%d", lk.CloudLinkAddr, prefixLen), "dev", lk.CloudIf},
			{"ip", "-n", l.AppNS, "link", "set", lk.AppIf, "up"},
			{"ip", "-n", l.CloudNS, "link", "set", lk.CloudIf, "up"},
		}
		for _, c := range cmds {
			if err := run(ctx, "", c...); err != nil {
				return err
			}
		}
	}
	if !l.opt.NoPolicyRouting {
		for _, s := range linkSpecs {
			if err := l.linkRoutes(ctx, s.name); err != nil {
				return err
			}
			if err := run(ctx, "", "ip", "-n", l.AppNS, "rule", "add", "pref", fmt.Sprint(s.pref),
				"from", s.appAddr, "lookup", fmt.Sprint(s.table)); err != nil {
				return err
			}
		}
	}
	var nft strings.Builder
	fmt.Fprintf(&nft, "add table netdev %s\n", nftTable)
	for _, s := range linkSpecs {
		for _, c := range []struct{ kind, dir, hook, prio string }{
			{"cut", "in", "ingress", "-10"}, {"cut", "out", "egress", "-10"},
			{"loss", "in", "ingress", "0"}, {"loss", "out", "egress", "0"},
		} {
			fmt.Fprintf(&nft, "add chain netdev %s %s_%s_%s { type filter hook %s device %s priority %s; }\n",
				nftTable, c.kind, s.name, c.dir, c.hook, s.appIf, c.prio)
		}
	}
	return l.nft(ctx, nft.String())
}

// linkRoutes (re)adds link's default routes in APP: the table's default and
// unreachable routes, and the main default for the main link.
func (l *Lab) linkRoutes(ctx context.Context, link string) error {
	lk := l.Links[link]
	table := fmt.Sprint(lk.Table)
	cmds := [][]string{
		{"ip", "-n", l.AppNS, "route", "replace", "default", "via", lk.CloudLinkAddr, "dev", lk.AppIf, "table", table},
		{"ip", "-n", l.AppNS, "route", "replace", "unreachable", "default", "metric", fmt.Sprint(unreachableMetric), "table", table},
	}
	if link == mainLink {
		cmds = append(cmds, []string{"ip", "-n", l.AppNS, "route", "replace", "default", "via", lk.CloudLinkAddr, "dev", lk.AppIf})
	}
	for _, c := range cmds {
		if err := run(ctx, "", c...); err != nil {
			return err
		}
	}
	return nil
}

// disableIPv6 turns IPv6 off for every interface created in ns from now on.
func disableIPv6(ns string) error {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return nil // no IPv6 in this kernel: nothing to silence
	}
	return doInNS(ns, func() error {
		for _, p := range []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"} {
			if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("netns %s: disable IPv6: %w", ns, err)
			}
		}
		return nil
	})
}

// Close removes the lab: it kills the processes still inside its namespaces and
// deletes the namespaces (the kernel then destroys the veth pairs and the nft
// state). It is idempotent; New registers it with t.Cleanup.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closeErr
	}
	l.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var errs []error
	for _, ns := range []string{l.AppNS, l.CloudNS} {
		if err := deleteNS(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	if l.id != "" && len(errs) == 0 {
		if err := os.Remove(markerPath(l.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	l.closeErr = errors.Join(errs...)
	return l.closeErr
}

// link returns the named link or an error naming the valid ones.
func (l *Lab) link(name string) (*Link, error) {
	if lk, ok := l.Links[name]; ok {
		return lk, nil
	}
	return nil, fmt.Errorf("netlab: unknown link %q (want a or b)", name)
}
