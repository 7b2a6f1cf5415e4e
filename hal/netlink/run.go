package netlink

import (
	"context"
	"fmt"
	"time"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Run timing.
const (
	// settle coalesces a burst of kernel notifications (a link coming up
	// sends a link, several route and maybe address messages) into one
	// apply.
	settle = 5 * time.Millisecond
	// resync re-applies periodically, in case a notification was lost.
	resync = 30 * time.Second
	// resubscribeDelay is the pause before re-subscribing after a
	// subscription ended (netlink socket overrun: ENOBUFS).
	resubscribeDelay = 200 * time.Millisecond
)

// subscription is the three rtnetlink subscriptions Run watches.
type subscription struct {
	done   chan struct{}
	links  chan vnl.LinkUpdate
	addrs  chan vnl.AddrUpdate
	routes chan vnl.RouteUpdate
	errs   chan error
	// started records which subscriptions are running: only those ever
	// close their channel.
	startedLinks, startedAddrs, startedRoutes bool
	closed                                    bool
}

func (p *Policy) subscribe() (*subscription, error) {
	s := &subscription{
		done:   make(chan struct{}),
		links:  make(chan vnl.LinkUpdate, 64),
		addrs:  make(chan vnl.AddrUpdate, 64),
		routes: make(chan vnl.RouteUpdate, 64),
		errs:   make(chan error, 1),
	}
	var nsp *netns.NsHandle
	if p.nsPath != "" {
		ns, err := netns.GetFromPath(p.nsPath)
		if err != nil {
			return nil, fmt.Errorf("netlink: open network namespace %s: %w", p.nsPath, err)
		}
		// The subscribe calls open their sockets inside ns before they
		// return; the handle is not needed after that.
		defer ns.Close()
		nsp = &ns
	}
	onErr := func(err error) {
		select {
		case s.errs <- err:
		default:
		}
	}
	if err := vnl.LinkSubscribeWithOptions(s.links, s.done, vnl.LinkSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		s.close()
		return nil, fmt.Errorf("netlink: subscribe to link changes: %w", err)
	}
	s.startedLinks = true
	if err := vnl.AddrSubscribeWithOptions(s.addrs, s.done, vnl.AddrSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		s.close()
		return nil, fmt.Errorf("netlink: subscribe to address changes: %w", err)
	}
	s.startedAddrs = true
	if err := vnl.RouteSubscribeWithOptions(s.routes, s.done, vnl.RouteSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		s.close()
		return nil, fmt.Errorf("netlink: subscribe to route changes: %w", err)
	}
	s.startedRoutes = true
	return s, nil
}

// close ends the subscriptions and waits for their goroutines. Each closes
// its channel once its socket is closed, and may be blocked sending to it
// until then, so the channels are drained. It is idempotent.
func (s *subscription) close() {
	if s.closed {
		return
	}
	s.closed = true
	close(s.done)
	var links chan vnl.LinkUpdate
	var addrs chan vnl.AddrUpdate
	var routes chan vnl.RouteUpdate
	if s.startedLinks {
		links = s.links
	}
	if s.startedAddrs {
		addrs = s.addrs
	}
	if s.startedRoutes {
		routes = s.routes
	}
	for links != nil || addrs != nil || routes != nil {
		select {
		case _, ok := <-links:
			if !ok {
				links = nil
			}
		case _, ok := <-addrs:
			if !ok {
				addrs = nil
			}
		case _, ok := <-routes:
			if !ok {
				routes = nil
			}
		}
	}
}

// Run applies the policy, then re-applies after every link, address or route
// change (and every 30 s) until ctx ends. It returns nil when ctx ends, or an
// error if it cannot open netlink at all (no permission, no namespace).
// Apply failures are reported in the link states and the log, and retried on
// the next change.
func (p *Policy) Run(ctx context.Context) error {
	h, err := p.handle()
	if err != nil {
		return err
	}
	defer h.Close()

	sub, err := p.subscribe()
	if err != nil {
		return err
	}
	defer func() { sub.close() }()

	// Subscribed first, so nothing that happens during the first apply is
	// missed.
	p.applyLogged(ctx, h)

	settleT := time.NewTimer(time.Hour)
	settleT.Stop()
	resyncT := time.NewTicker(resync)
	defer resyncT.Stop()
	pending := false
	kick := func() {
		if !pending {
			pending = true
			settleT.Reset(settle)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-sub.links:
			if ok {
				kick()
				continue
			}
		case _, ok := <-sub.addrs:
			if ok {
				kick()
				continue
			}
		case _, ok := <-sub.routes:
			if ok {
				kick()
				continue
			}
		case err := <-sub.errs:
			p.log.Warn("netlink subscription error", "err", err)
			continue
		case <-settleT.C:
			pending = false
			p.applyLogged(ctx, h)
			continue
		case <-resyncT.C:
			p.applyLogged(ctx, h)
			continue
		}
		// A subscription ended (its socket failed, e.g. ENOBUFS after an
		// overrun): start over, and re-apply since changes may be lost.
		p.log.Warn("netlink subscription ended; re-subscribing")
		sub.close()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(resubscribeDelay):
			}
			next, err := p.subscribe()
			if err == nil {
				sub = next
				break
			}
			p.log.Warn("netlink re-subscribe failed", "err", err)
		}
		kick()
	}
}

// applyLogged applies and logs a failure once per distinct error text.
func (p *Policy) applyLogged(ctx context.Context, h *vnl.Handle) {
	if err := p.apply(ctx, h); err != nil && ctx.Err() == nil {
		// The states carry the details and setState logs changes; this
		// line is for errors that repeat without changing state.
		p.log.Debug("apply policy routing", "err", err)
	}
}
