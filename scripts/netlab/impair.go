package netlab

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// Impairments. A cut and a loss setting are independent (separate nft chains):
// a cut link stays cut whatever its loss, Restore removes the cut and keeps the
// loss, SetLoss(link, 0) removes the loss and keeps the cut.

// Cut stops all traffic of link, both ways (ARP included), while both
// interfaces stay up and keep their routes: an upstream ISP failure. Senders get
// no error; packets just vanish (nft drop on wanX's ingress and egress hooks in
// APP). Cutting a cut link is a no-op.
func (l *Lab) Cut(link string) error {
	if _, err := l.link(link); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return l.nft(ctx, fmt.Sprintf(`flush chain netdev %[1]s cut_%[2]s_in
flush chain netdev %[1]s cut_%[2]s_out
add rule netdev %[1]s cut_%[2]s_in drop
add rule netdev %[1]s cut_%[2]s_out drop
`, nftTable, link))
}

// Restore undoes Cut and Down on link: it removes the cut and, if the APP
// interface is down, does what Up does. Loss set with SetLoss stays.
func (l *Lab) Restore(link string) error {
	if _, err := l.link(link); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if err := l.nft(ctx, fmt.Sprintf("flush chain netdev %[1]s cut_%[2]s_in\nflush chain netdev %[1]s cut_%[2]s_out\n", nftTable, link)); err != nil {
		return err
	}
	up, err := l.isUp(ctx, link)
	if err != nil {
		return err
	}
	if !up {
		return l.upLocked(ctx, link)
	}
	return nil
}

// Down sets link's APP interface down. The kernel deletes the routes through it
// (the table's default, and the main default for link a) but keeps the address,
// so traffic from the link's address hits the table's unreachable route and the
// send fails at once with EHOSTUNREACH instead of leaking out of the other link.
func (l *Lab) Down(link string) error {
	lk, err := l.link(link)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return run(ctx, "", "ip", "-n", l.AppNS, "link", "set", "dev", lk.AppIf, "down")
}

// Up sets link's APP interface up again and, unless the lab has
// NoPolicyRouting, re-adds the default routes the kernel deleted on Down (the
// table's default and unreachable routes, and the main default for link a).
func (l *Lab) Up(link string) error {
	if _, err := l.link(link); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return l.upLocked(ctx, link)
}

func (l *Lab) upLocked(ctx context.Context, link string) error {
	lk := l.Links[link]
	if err := run(ctx, "", "ip", "-n", l.AppNS, "link", "set", "dev", lk.AppIf, "up"); err != nil {
		return err
	}
	if l.opt.NoPolicyRouting {
		return nil
	}
	return l.linkRoutes(ctx, link)
}

// SetLoss drops percent % (0..100) of link's IP packets at random, in each
// direction independently (so a round trip survives with (1-p)² probability).
// ARP is spared, as an upstream loss would. 0 removes the loss.
func (l *Lab) SetLoss(link string, percent int) error {
	if _, err := l.link(link); err != nil {
		return err
	}
	if percent < 0 || percent > 100 {
		return fmt.Errorf("netlab: loss %d%%: want 0..100", percent)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	script := fmt.Sprintf("flush chain netdev %[1]s loss_%[2]s_in\nflush chain netdev %[1]s loss_%[2]s_out\n", nftTable, link)
	if percent > 0 {
		match := fmt.Sprintf("numgen random mod 100 < %d ", percent)
		if percent == 100 {
			match = "" // nft rejects "< 100" against a 0..99 range
		}
		script += fmt.Sprintf(`add rule netdev %[1]s loss_%[2]s_in meta protocol != arp %[3]sdrop
add rule netdev %[1]s loss_%[2]s_out meta protocol != arp %[3]sdrop
`, nftTable, link, match)
	}
	return l.nft(ctx, script)
}

// nft applies an nft script atomically inside APP.
func (l *Lab) nft(ctx context.Context, script string) error {
	return run(ctx, script, "ip", "netns", "exec", l.AppNS, "nft", "-f", "-")
}

// isUp reports whether link's APP interface is administratively up.
func (l *Lab) isUp(ctx context.Context, link string) (bool, error) {
	out, err := output(ctx, "", "ip", "-j", "-n", l.AppNS, "link", "show", "dev", l.Links[link].AppIf)
	if err != nil {
		return false, err
	}
	var links []struct {
		Flags []string `json:"flags"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return false, fmt.Errorf("netlab: parse ip -j link show %s: %v", l.Links[link].AppIf, err)
	}
	return slices.Contains(links[0].Flags, "UP"), nil
}
