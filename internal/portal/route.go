package portal

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults of Routing: the table and the priority of the rule.
const (
	DefaultRouteTable   = 196
	DefaultRulePriority = 196
)

// Routing makes the node's kernel deliver traffic to the rbn pod range
// locally: a `local` route for the range in a table of its own, and a
// policy rule sending packets to the range to that table. With input
// interfaces, only packets that arrive on them are captured (one rule per
// interface); without, every packet to the range is, locally generated
// ones included.
//
// A rule rather than a local route in the main table: a host that shares
// the node's network namespace (a build host's bridge in a test stack)
// keeps reaching its own pods, since only traffic from the named
// interfaces is captured.
type Routing struct {
	CIDR     netip.Prefix
	Table    int
	Priority int
	// InputInterfaces restricts capture to packets arriving on them.
	InputInterfaces []string
	// Handle is the namespace's netlink handle; nil is the process's.
	Handle *netlink.Handle
}

// ipNet is the CIDR as netlink takes it.
func (r Routing) ipNet() *net.IPNet {
	return &net.IPNet{IP: r.CIDR.Addr().AsSlice(), Mask: net.CIDRMask(r.CIDR.Bits(), r.CIDR.Addr().BitLen())}
}

func (r Routing) handle() *netlink.Handle {
	if r.Handle == nil {
		return &netlink.Handle{} // netlink's own functions use this one
	}
	return r.Handle
}

// route is `local CIDR dev lo table T`.
func (r Routing) route(h *netlink.Handle) (*netlink.Route, error) {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("loopback interface: %w", err)
	}
	return &netlink.Route{
		Dst:       r.ipNet(),
		Type:      unix.RTN_LOCAL,
		Table:     r.Table,
		Scope:     netlink.SCOPE_HOST,
		LinkIndex: lo.Attrs().Index,
	}, nil
}

// rules are the rules Ensure installs.
func (r Routing) rules() []*netlink.Rule {
	iifs := r.InputInterfaces
	if len(iifs) == 0 {
		iifs = []string{""}
	}
	out := make([]*netlink.Rule, 0, len(iifs))
	for _, iif := range iifs {
		rule := netlink.NewRule()
		rule.Family = netlink.FAMILY_V4
		rule.Priority = r.Priority
		rule.Table = r.Table
		rule.Dst = r.ipNet()
		rule.IifName = iif
		out = append(out, rule)
	}
	return out
}

// ours tells whether an installed rule points at our table.
func (r Routing) ours(rule netlink.Rule) bool { return rule.Table == r.Table }

func sameRule(a, b netlink.Rule) bool {
	return a.Priority == b.Priority && a.Table == b.Table && a.IifName == b.IifName &&
		a.OifName == "" && b.OifName == "" && a.Src == nil && b.Src == nil &&
		ipNetEqual(a.Dst, b.Dst)
}

func ipNetEqual(a, b *net.IPNet) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}

// Ensure installs the route and the rules, leaving equal ones in place and
// removing rules into our table that select anything else (left by an
// earlier configuration).
func (r Routing) Ensure() error {
	h := r.handle()
	route, err := r.route(h)
	if err != nil {
		return err
	}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("route local %s table %d: %w", r.CIDR, r.Table, err)
	}
	installed, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	want := r.rules()
	for _, have := range installed {
		if !r.ours(have) {
			continue
		}
		if slices.ContainsFunc(want, func(w *netlink.Rule) bool { return sameRule(have, *w) }) {
			continue
		}
		if err := h.RuleDel(&have); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete stale rule %s: %w", have, err)
		}
	}
	for _, w := range want {
		if slices.ContainsFunc(installed, func(have netlink.Rule) bool { return sameRule(have, *w) }) {
			continue
		}
		if err := h.RuleAdd(w); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add rule to %s iif %q table %d: %w", r.CIDR, w.IifName, r.Table, err)
		}
	}
	return nil
}

// Remove deletes every rule into our table and the route; what is already
// gone is no error.
func (r Routing) Remove() error {
	h := r.handle()
	installed, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	var errs []error
	for _, have := range installed {
		if !r.ours(have) {
			continue
		}
		if err := h.RuleDel(&have); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete rule %s: %w", have, err))
		}
	}
	route, err := r.route(h)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := h.RouteDel(route); err != nil && !errors.Is(err, unix.ESRCH) {
		errs = append(errs, fmt.Errorf("delete route local %s table %d: %w", r.CIDR, r.Table, err))
	}
	return errors.Join(errs...)
}
