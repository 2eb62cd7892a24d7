package portal

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// route is `local 0.0.0.0/0 dev lo table T`: every marked packet is
// delivered locally.
func (c Capture) route(h *netlink.Handle) (*netlink.Route, error) {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("loopback interface: %w", err)
	}
	return &netlink.Route{
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Type:      unix.RTN_LOCAL,
		Table:     c.Table,
		Scope:     netlink.SCOPE_HOST,
		LinkIndex: lo.Attrs().Index,
	}, nil
}

// rule is `fwmark Mark/Mask lookup Table` at Priority.
func (c Capture) rule() *netlink.Rule {
	rule := netlink.NewRule()
	rule.Family = netlink.FAMILY_V4
	rule.Priority = c.Priority
	rule.Table = c.Table
	rule.Mark = c.Mark
	mask := c.mask()
	rule.Mask = &mask
	return rule
}

func sameRule(a, b netlink.Rule) bool {
	return a.Priority == b.Priority && a.Table == b.Table && a.Mark == b.Mark &&
		a.Mask != nil && b.Mask != nil && *a.Mask == *b.Mask &&
		a.IifName == b.IifName && a.OifName == b.OifName && a.Src == nil && b.Src == nil && a.Dst == nil && b.Dst == nil
}

// ensureRouting installs the route and the rule, leaving equal ones in
// place and removing rules into our table that select anything else (left
// by an earlier configuration).
func (c Capture) ensureRouting(h *netlink.Handle) error {
	route, err := c.route(h)
	if err != nil {
		return err
	}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("route local 0.0.0.0/0 table %d: %w", c.Table, err)
	}
	installed, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	want := c.rule()
	for _, have := range installed {
		if have.Table != c.Table || sameRule(have, *want) {
			continue
		}
		if err := h.RuleDel(&have); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete stale rule %s: %w", have, err)
		}
	}
	if slices.ContainsFunc(installed, func(have netlink.Rule) bool { return sameRule(have, *want) }) {
		return nil
	}
	if err := h.RuleAdd(want); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add rule fwmark %#x/%#x table %d: %w", c.Mark, c.mask(), c.Table, err)
	}
	return nil
}

// removeRouting deletes every rule into our table and the route.
func (c Capture) removeRouting(h *netlink.Handle) error {
	installed, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	var errs []error
	for _, have := range installed {
		if have.Table != c.Table {
			continue
		}
		if err := h.RuleDel(&have); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete rule %s: %w", have, err))
		}
	}
	route, err := c.route(h)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := h.RouteDel(route); err != nil && !errors.Is(err, unix.ESRCH) {
		errs = append(errs, fmt.Errorf("delete route local 0.0.0.0/0 table %d: %w", c.Table, err))
	}
	return errors.Join(errs...)
}
