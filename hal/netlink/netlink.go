// Package netlink pins each uplink's traffic to its own ISP with Linux
// policy routing, and keeps it pinned while links come and go.
//
// For every link (LinkSpec) the Policy installs, in the link's own table T:
//
//	default via <gateway> dev <interface>          (metric 0, while the link is up)
//	unreachable default metric 4000                (always)
//
// and the rule
//
//	from <interface address> lookup T              (priority LinkSpec.RulePriority)
//
// A sender that binds its socket to the link's address is routed by the rule
// into table T. While the link is up the real default route wins (lower
// metric). When the link goes down the kernel deletes that route, and the
// lookup hits the unreachable route: the send fails at once with
// EHOSTUNREACH instead of falling through to the main table and silently
// leaking out of the other ISP (design.md, "Pinning traffic to one ISP").
//
// The kernel does not restore a table's default route when the link comes
// back, so Run subscribes to link, address and route changes and re-applies
// after each one (measured in the lab: the route is back 8-24 ms after
// `ip link set up` started, polling included). The
// unreachable route has no device and survives link changes; Apply re-adds it
// anyway if someone deleted it. A link without carrier (admin up, no
// LOWER_UP) has its table default removed too, so its traffic also fails
// fast rather than blackholing.
//
// Every change is idempotent: Apply reads the current routes and rules and
// writes only what differs (route replace, rule add after a check), so
// re-applying produces no netlink traffic and no feedback loop with its own
// subscription. A missing interface is reported in its LinkState and
// watched for; it is not an error. Only IPv4 is handled.
//
// The Policy can work inside another network namespace (NewInNamespace), as
// the tests do with the lab's appliance namespace: every netlink socket,
// including the subscriptions, is opened in that namespace.
package netlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// UnreachableMetric is the metric of the unreachable default route in each
// link's table: higher than any real default route, so it is used only when
// the real one is gone.
const UnreachableMetric = 4000

// DefaultRulePriorityBase: a LinkSpec without RulePriority gets
// DefaultRulePriorityBase + its position (1-based) in the list.
const DefaultRulePriorityBase = 1000

// LinkSpec is one uplink to pin.
type LinkSpec struct {
	// Name is the link's logical name ("a"), used in states and errors.
	Name string
	// Interface is the kernel interface ("wana").
	Interface string
	// Gateway is the next hop. If not set, it is learnt from a default route
	// through Interface in the main table (what DHCP or NetworkManager
	// installs), else from the link's table, else the last one learnt.
	Gateway netip.Addr
	// Table is the link's routing table (1..2^31-1, not 253..255).
	Table int
	// RulePriority of "from <addr> lookup Table"; 0 =
	// DefaultRulePriorityBase + position.
	RulePriority int
}

// LinkState is what the Policy last saw and did for one link.
type LinkState struct {
	Name, Interface string
	// Up: the interface exists, is administratively up and has carrier.
	Up bool
	// Addr is the interface's IPv4 address the rule selects on.
	Addr netip.Addr
	// Gateway is the next hop in use (configured or learnt).
	Gateway netip.Addr
	// Routed: the table's default route via Gateway is present.
	Routed bool
	// LastChange is when any of the fields above or Detail last changed.
	LastChange time.Time
	// Detail says what is missing or failed, "" when all is well.
	Detail string
}

func (s LinkState) same(o LinkState) bool {
	return s.Name == o.Name && s.Interface == o.Interface && s.Up == o.Up && s.Addr == o.Addr &&
		s.Gateway == o.Gateway && s.Routed == o.Routed && s.Detail == o.Detail
}

// Router keeps the uplinks' policy routing in place.
type Router interface {
	// Run applies the policy now, then re-applies whenever a link, address
	// or route changes, until ctx ends (then it returns nil).
	Run(ctx context.Context) error
	// States returns every link's current state, in LinkSpec order.
	States() []LinkState
	// Changes delivers each link state change. Sends never block: changes
	// nobody reads in time are dropped (and counted).
	Changes() <-chan LinkState
}

var (
	_ Router = (*Policy)(nil)
	_ Router = (*Fake)(nil)
)

// Policy is the Router for the running kernel.
type Policy struct {
	links  []LinkSpec
	log    *slog.Logger
	nsPath string

	changes chan LinkState
	dropped atomic.Int64

	applyMu sync.Mutex // one Apply at a time; guards learnt
	learnt  map[string]netip.Addr

	mu     sync.Mutex // guards states
	states []LinkState
}

// New returns a Policy for links in the current network namespace. It only
// validates; nothing is changed until Apply or Run.
func New(links []LinkSpec, log *slog.Logger) (*Policy, error) {
	return NewInNamespace("", links, log)
}

// NewInNamespace is New for the network namespace at nsPath (e.g.
// /var/run/netns/x, /proc/<pid>/ns/net); "" is the current one.
func NewInNamespace(nsPath string, links []LinkSpec, log *slog.Logger) (*Policy, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(links) == 0 {
		return nil, errors.New("netlink: no links")
	}
	if nsPath != "" {
		if _, err := os.Stat(nsPath); err != nil {
			return nil, fmt.Errorf("netlink: network namespace: %w", err)
		}
	}
	links = slices.Clone(links)
	names, ifs, tables, prios := map[string]bool{}, map[string]bool{}, map[int]bool{}, map[int]bool{}
	for i := range links {
		l := &links[i]
		where := fmt.Sprintf("netlink: link %d (%q)", i, l.Name)
		switch {
		case l.Name == "":
			return nil, fmt.Errorf("netlink: link %d: Name is empty", i)
		case names[l.Name]:
			return nil, fmt.Errorf("%s: Name used twice", where)
		case l.Interface == "":
			return nil, fmt.Errorf("%s: Interface is empty", where)
		case len(l.Interface) >= unix.IFNAMSIZ:
			return nil, fmt.Errorf("%s: Interface %q is longer than %d bytes", where, l.Interface, unix.IFNAMSIZ-1)
		case ifs[l.Interface]:
			return nil, fmt.Errorf("%s: Interface %q used by another link", where, l.Interface)
		case l.Table <= 0 || l.Table >= 1<<31 || (l.Table >= unix.RT_TABLE_COMPAT && l.Table <= unix.RT_TABLE_LOCAL):
			return nil, fmt.Errorf("%s: Table %d (want 1..2147483647, not 252..255: compat/default/main/local)", where, l.Table)
		case tables[l.Table]:
			return nil, fmt.Errorf("%s: Table %d used by another link", where, l.Table)
		case l.Gateway.IsValid() && !l.Gateway.Unmap().Is4():
			return nil, fmt.Errorf("%s: Gateway %s is not IPv4", where, l.Gateway)
		}
		if l.RulePriority == 0 {
			l.RulePriority = DefaultRulePriorityBase + i + 1
		}
		if l.RulePriority < 1 || l.RulePriority > 32765 {
			return nil, fmt.Errorf("%s: RulePriority %d (want 1..32765: 0 is the local rule, 32766/32767 main/default)", where, l.RulePriority)
		}
		if prios[l.RulePriority] {
			return nil, fmt.Errorf("%s: RulePriority %d used by another link", where, l.RulePriority)
		}
		l.Gateway = l.Gateway.Unmap()
		names[l.Name], ifs[l.Interface], tables[l.Table], prios[l.RulePriority] = true, true, true, true
	}
	p := &Policy{
		links:   links,
		log:     log,
		nsPath:  nsPath,
		changes: make(chan LinkState, 64),
		learnt:  map[string]netip.Addr{},
		states:  make([]LinkState, len(links)),
	}
	for i, l := range links {
		p.states[i] = LinkState{Name: l.Name, Interface: l.Interface, Detail: "not applied yet"}
	}
	return p, nil
}

// States returns every link's current state, in LinkSpec order.
func (p *Policy) States() []LinkState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.states)
}

// Changes delivers each link state change (buffered; see DroppedChanges).
func (p *Policy) Changes() <-chan LinkState { return p.changes }

// DroppedChanges counts state changes dropped because Changes was not read.
func (p *Policy) DroppedChanges() int64 { return p.dropped.Load() }

// Links returns the validated specs (defaults filled in).
func (p *Policy) Links() []LinkSpec { return slices.Clone(p.links) }

// handle opens a netlink handle in the Policy's namespace.
func (p *Policy) handle() (*vnl.Handle, error) {
	if p.nsPath == "" {
		h, err := vnl.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("netlink: open rtnetlink socket: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(p.nsPath)
	if err != nil {
		return nil, fmt.Errorf("netlink: open network namespace %s: %w", p.nsPath, err)
	}
	defer ns.Close()
	h, err := vnl.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: open rtnetlink socket in %s: %w", p.nsPath, err)
	}
	return h, nil
}

// Apply installs the policy once and updates the states. It returns the
// links' errors joined (each names its link); a missing interface or a link
// that is down is a state, not an error.
func (p *Policy) Apply(ctx context.Context) error {
	h, err := p.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	return p.apply(ctx, h)
}

func (p *Policy) apply(ctx context.Context, h *vnl.Handle) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	var errs []error
	for i, spec := range p.links {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := p.applyLink(h, spec)
		if err != nil {
			errs = append(errs, err)
			st.Detail = err.Error()
		}
		p.setState(i, st)
	}
	return errors.Join(errs...)
}

func (p *Policy) setState(i int, st LinkState) {
	p.mu.Lock()
	prev := p.states[i]
	if st.same(prev) {
		p.mu.Unlock()
		return
	}
	st.LastChange = time.Now()
	p.states[i] = st
	p.mu.Unlock()
	attrs := []any{"link", st.Name, "interface", st.Interface, "up", st.Up, "routed", st.Routed}
	if st.Addr.IsValid() {
		attrs = append(attrs, "addr", st.Addr.String())
	}
	if st.Gateway.IsValid() {
		attrs = append(attrs, "gateway", st.Gateway.String())
	}
	if st.Detail != "" {
		attrs = append(attrs, "detail", st.Detail)
		p.log.Warn("uplink routing changed", attrs...)
	} else {
		p.log.Info("uplink routing changed", attrs...)
	}
	select {
	case p.changes <- st:
	default:
		p.dropped.Add(1)
	}
}

var defaultDst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}

func isDefault(r vnl.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0 && r.Dst.IP.IsUnspecified()
}

func toAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// listRoutes lists table's IPv4 routes, retrying once if the dump was
// interrupted by a concurrent change.
func listRoutes(h *vnl.Handle, table int) ([]vnl.Route, error) {
	filter := &vnl.Route{Table: table}
	rs, err := h.RouteListFiltered(vnl.FAMILY_V4, filter, vnl.RT_FILTER_TABLE)
	if errors.Is(err, vnl.ErrDumpInterrupted) {
		rs, err = h.RouteListFiltered(vnl.FAMILY_V4, filter, vnl.RT_FILTER_TABLE)
	}
	return rs, err
}

func listRules(h *vnl.Handle) ([]vnl.Rule, error) {
	rs, err := h.RuleList(vnl.FAMILY_V4)
	if errors.Is(err, vnl.ErrDumpInterrupted) {
		rs, err = h.RuleList(vnl.FAMILY_V4)
	}
	return rs, err
}

// applyLink makes one link's table and rule right. The returned state is
// valid even with an error.
func (p *Policy) applyLink(h *vnl.Handle, spec LinkSpec) (LinkState, error) {
	st := LinkState{Name: spec.Name, Interface: spec.Interface}
	fail := func(format string, args ...any) (LinkState, error) {
		return st, fmt.Errorf("link %s (%s): "+format, append([]any{spec.Name, spec.Interface}, args...)...)
	}
	table, err := listRoutes(h, spec.Table)
	if err != nil {
		return fail("list routes of table %d: %w", spec.Table, err)
	}

	// 1. The unreachable default: always, whatever the interface does.
	haveUnreach := false
	for _, r := range table {
		if isDefault(r) && r.Type == unix.RTN_UNREACHABLE && r.Priority == UnreachableMetric {
			haveUnreach = true
		}
	}
	if !haveUnreach {
		r := &vnl.Route{Dst: defaultDst, Type: unix.RTN_UNREACHABLE, Table: spec.Table,
			Priority: UnreachableMetric, Family: vnl.FAMILY_V4, Protocol: unix.RTPROT_STATIC}
		if err := h.RouteReplace(r); err != nil {
			return fail("add \"unreachable default metric %d table %d\": %w", UnreachableMetric, spec.Table, err)
		}
	}

	// 2. The interface.
	link, err := h.LinkByName(spec.Interface)
	if err != nil {
		var nf vnl.LinkNotFoundError
		if errors.As(err, &nf) {
			st.Detail = "interface " + spec.Interface + " not found (waiting for it)"
			return st, nil
		}
		return fail("look up interface: %w", err)
	}
	attrs := link.Attrs()
	adminUp := attrs.Flags&net.FlagUp != 0
	carrier := attrs.RawFlags&unix.IFF_LOWER_UP != 0
	st.Up = adminUp && carrier

	addrs, err := h.AddrList(link, vnl.FAMILY_V4)
	if err != nil {
		return fail("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_UNIVERSE && a.IP.To4() != nil {
			st.Addr = toAddr(a.IP)
			break
		}
	}

	// 3. The gateway: configured, else from main, else from our table,
	// else the last one learnt.
	gw := spec.Gateway
	if !gw.IsValid() {
		main, err := listRoutes(h, unix.RT_TABLE_MAIN)
		if err != nil {
			return fail("list routes of the main table: %w", err)
		}
		for _, src := range [][]vnl.Route{main, table} {
			for _, r := range src {
				if isDefault(r) && r.Type == unix.RTN_UNICAST && r.LinkIndex == attrs.Index && r.Gw != nil && r.Gw.To4() != nil {
					gw = toAddr(r.Gw)
					break
				}
			}
			if gw.IsValid() {
				break
			}
		}
		if gw.IsValid() {
			p.learnt[spec.Name] = gw
		} else {
			gw = p.learnt[spec.Name]
		}
	}
	st.Gateway = gw

	// 4. The table's default route: present while the link is up.
	var current *vnl.Route
	for i, r := range table {
		if isDefault(r) && r.Type == unix.RTN_UNICAST && r.Priority == 0 {
			current = &table[i]
		}
	}
	good := current != nil && gw.IsValid() && current.Gw != nil && toAddr(current.Gw) == gw && current.LinkIndex == attrs.Index
	var routeErr error
	switch {
	case !adminUp:
		st.Detail = "interface down"
		// The kernel removed the route through it; nothing to do.
	case !carrier:
		st.Detail = "no carrier"
		if current != nil {
			if err := h.RouteDel(current); err != nil && !errors.Is(err, unix.ESRCH) {
				routeErr = fmt.Errorf("remove default route of table %d (no carrier): %w", spec.Table, err)
			}
		}
	case !gw.IsValid():
		st.Detail = "no gateway: set one, or add a default route via " + spec.Interface + " to the main table"
	case good:
		st.Routed = true
	default:
		r := &vnl.Route{Dst: defaultDst, Gw: gw.AsSlice(), LinkIndex: attrs.Index, Table: spec.Table,
			Family: vnl.FAMILY_V4, Protocol: unix.RTPROT_STATIC}
		if err := h.RouteReplace(r); err != nil {
			routeErr = fmt.Errorf("add \"default via %s dev %s table %d\": %w", gw, spec.Interface, spec.Table, err)
		} else {
			st.Routed = true
		}
	}

	// 5. The rule, for the current address.
	var ruleErr error
	if st.Addr.IsValid() {
		ruleErr = p.applyRule(h, spec, st.Addr)
	} else if st.Detail == "" {
		st.Detail = "no IPv4 address on " + spec.Interface
	}
	if err := errors.Join(routeErr, ruleErr); err != nil {
		return fail("%w", err)
	}
	return st, nil
}

// applyRule makes "from addr lookup Table" the only rule of this link's
// priority and table.
func (p *Policy) applyRule(h *vnl.Handle, spec LinkSpec, addr netip.Addr) error {
	rules, err := listRules(h)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	want := netip.PrefixFrom(addr, 32)
	have := false
	for _, r := range rules {
		if r.Table != spec.Table || r.Priority != spec.RulePriority {
			continue
		}
		if r.Src != nil && !have && r.Dst == nil && r.Mark == 0 && !r.Invert && r.IifName == "" && r.OifName == "" {
			if ones, _ := r.Src.Mask.Size(); ones == 32 && toAddr(r.Src.IP) == addr {
				have = true
				continue
			}
		}
		// Ours by priority and table, but stale (old address) or a duplicate.
		del := r
		if err := h.RuleDel(&del); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove stale rule %q: %w", r.String(), err)
		}
	}
	if have {
		return nil
	}
	r := vnl.NewRule()
	r.Family = vnl.FAMILY_V4
	r.Priority = spec.RulePriority
	r.Table = spec.Table
	r.Src = &net.IPNet{IP: want.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}
	if err := h.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add rule \"from %s lookup %d pref %d\": %w", addr, spec.Table, spec.RulePriority, err)
	}
	return nil
}
