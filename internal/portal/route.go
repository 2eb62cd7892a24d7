package portal

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostRoute is `CIDR via <namespace address> dev HostLink table Table`.
func (c Capture) hostRoute(link netlink.Link) *netlink.Route {
	return &netlink.Route{
		Dst:       ipNet(c.CIDR),
		Gw:        net.IP(c.NamespaceAddress().AsSlice()),
		LinkIndex: link.Attrs().Index,
		Table:     c.Table,
	}
}

// rules are `to CIDR [iif I] lookup Table` at Priority, one per input
// interface, or one without iif.
func (c Capture) rules() []*netlink.Rule {
	iifs := c.InputInterfaces
	if len(iifs) == 0 {
		iifs = []string{""}
	}
	var out []*netlink.Rule
	for _, iif := range iifs {
		rule := netlink.NewRule()
		rule.Family = netlink.FAMILY_V4
		rule.Priority = c.Priority
		rule.Table = c.Table
		rule.Dst = ipNet(c.CIDR)
		rule.IifName = iif
		out = append(out, rule)
	}
	return out
}

func sameRule(a, b netlink.Rule) bool {
	return a.Priority == b.Priority && a.Table == b.Table && a.IifName == b.IifName &&
		a.Dst != nil && b.Dst != nil && a.Dst.String() == b.Dst.String() &&
		a.Mark == 0 && b.Mark == 0 && a.Src == nil && b.Src == nil && a.OifName == "" && b.OifName == "" && !a.Invert && !b.Invert
}

// ensureRouting installs the node's route into the namespace and the
// rules, leaving equal ones in place and removing the routes of our
// table and the rules into it that an earlier configuration left.
func (c Capture) ensureRouting(h *netlink.Handle, link netlink.Link) error {
	want := c.hostRoute(link)
	if err := h.RouteReplace(want); err != nil {
		return fmt.Errorf("route %s via %s dev %s table %d: %w", c.CIDR, c.NamespaceAddress(), HostLink, c.Table, err)
	}
	routes, err := c.tableRoutes(h)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == want.Dst.String() && r.LinkIndex == want.LinkIndex {
			continue
		}
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete stale route %s: %w", r, err)
		}
	}
	installed, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	wanted := c.rules()
	for _, have := range installed {
		if have.Table != c.Table || slices.ContainsFunc(wanted, func(w *netlink.Rule) bool { return sameRule(have, *w) }) {
			continue
		}
		if err := h.RuleDel(&have); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete stale rule %s: %w", have, err)
		}
	}
	for _, w := range wanted {
		if slices.ContainsFunc(installed, func(have netlink.Rule) bool { return sameRule(have, *w) }) {
			continue
		}
		if err := h.RuleAdd(w); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add rule to %s iif %q lookup %d: %w", c.CIDR, w.IifName, c.Table, err)
		}
	}
	return nil
}

func (c Capture) tableRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: c.Table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of table %d: %w", c.Table, err)
	}
	return routes, nil
}

// Cleanup removes, from the node's namespace, every rule into the table,
// the table's routes and HostLink: what a portal that was killed left
// (its namespace, and with it the veth pair and the routes through it,
// went with the process; its rules did not). What is already gone is no
// error.
func (c Capture) Cleanup() error {
	h, err := c.hostNetlink()
	if err != nil {
		return err
	}
	defer h.Close()
	return c.removeRouting(h)
}

// removeRouting deletes every rule into our table, the table's routes
// and HostLink.
func (c Capture) removeRouting(h *netlink.Handle) error {
	var errs []error
	// Rules first: without them nothing is routed into the table.
	installed, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		errs = append(errs, fmt.Errorf("list rules: %w", err))
	}
	for _, have := range installed {
		if have.Table != c.Table {
			continue
		}
		if err := h.RuleDel(&have); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete rule %s: %w", have, err))
		}
	}
	routes, err := c.tableRoutes(h)
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r, err))
		}
	}
	return errors.Join(append(errs, deleteLink(h, HostLink))...)
}

// deleteLink deletes the link named name, none being no error.
func deleteLink(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}
