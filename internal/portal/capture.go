package portal

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Defaults of Capture.
const (
	DefaultRouteTable   = 196
	DefaultRulePriority = 196
)

// DefaultLinkCIDR is the link between the node and the portal's
// namespace: link-local, so no address of the node's networks is taken.
var DefaultLinkCIDR = netip.MustParsePrefix("169.254.196.0/30")

// Names of the veth pair's ends.
const (
	// HostLink is the node's end (15 bytes at most, IFNAMSIZ).
	HostLink = "rbnportal0"
	// NamespaceLink is the end in the portal's namespace.
	NamespaceLink = "eth0"
)

// Capture configures how the node's kernel routes the TCP connections to
// the rbn pod range into the portal's own network namespace (Namespace):
//
//   - the namespace, joined to the node by a veth pair (HostLink on the
//     node, NamespaceLink in it) on LinkCIDR (a /30: the node's end has
//     its first address, the namespace's the second);
//   - in the namespace, `local CIDR dev lo` in the local table (every
//     address of the range is the namespace's own: its listeners on
//     0.0.0.0 accept connections to any of them) and a default route
//     via the node's end;
//   - on the node, `CIDR via <namespace's address> dev HostLink table
//     Table` and a policy rule `to CIDR [iif I] lookup Table` at
//     Priority per input interface, or one without iif.
//
// With input interfaces, only packets arriving on them are routed there:
// a build host sharing the node's network namespace (the test stack)
// keeps reaching its own pods, and the node's own connections are left
// alone. Without, the node's own connections are routed there too.
type Capture struct {
	CIDR     netip.Prefix
	LinkCIDR netip.Prefix
	Table    int
	Priority int
	// InputInterfaces restricts capture to packets arriving on them.
	InputInterfaces []string
	// Netns is the node's network namespace; none (0) is the process's.
	Netns netns.NsHandle
}

// Validate reports every problem of c at once.
func (c Capture) Validate() error {
	var errs []error
	if !c.CIDR.IsValid() || !c.CIDR.Addr().Is4() {
		errs = append(errs, fmt.Errorf("pod CIDR %q: not an IPv4 prefix", c.CIDR))
	}
	if !c.LinkCIDR.IsValid() || !c.LinkCIDR.Addr().Is4() || c.LinkCIDR.Bits() != 30 || c.LinkCIDR != c.LinkCIDR.Masked() {
		errs = append(errs, fmt.Errorf("link CIDR %q: not an IPv4 /30 network address", c.LinkCIDR))
	} else if c.CIDR.IsValid() && c.CIDR.Overlaps(c.LinkCIDR) {
		errs = append(errs, fmt.Errorf("link CIDR %s overlaps the pod CIDR %s", c.LinkCIDR, c.CIDR))
	}
	return errors.Join(append(errs, c.ValidateRouting())...)
}

// ValidateRouting reports every problem of the routing table, the rule's
// priority and the input interfaces at once: what --cleanup needs.
func (c Capture) ValidateRouting() error {
	var errs []error
	// 0 and 253-255 are the kernel's unspec, default, main and local tables.
	if c.Table <= 0 || (c.Table >= 253 && c.Table <= 255) {
		errs = append(errs, fmt.Errorf("route table %d: not a free table (1-252 or above 255)", c.Table))
	}
	if c.Priority <= 0 || c.Priority >= 32766 {
		errs = append(errs, fmt.Errorf("rule priority %d: want 1-32765, before the main table's rule", c.Priority))
	}
	for _, iif := range c.InputInterfaces {
		if iif == "" || len(iif) > 15 {
			errs = append(errs, fmt.Errorf("input interface %q: not an interface name", iif))
		}
	}
	return errors.Join(errs...)
}

// HostAddress is the node's end of the link, NamespaceAddress the
// namespace's.
func (c Capture) HostAddress() netip.Addr      { return c.LinkCIDR.Addr().Next() }
func (c Capture) NamespaceAddress() netip.Addr { return c.HostAddress().Next() }

// hostNetlink is a netlink handle in the node's namespace.
func (c Capture) hostNetlink() (*netlink.Handle, error) {
	if c.Netns == 0 {
		return &netlink.Handle{}, nil // netlink's own functions use this one
	}
	h, err := netlink.NewHandleAt(c.Netns)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return h, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
