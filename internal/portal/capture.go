package portal

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Defaults of Capture.
const (
	// DefaultMark is the packet mark bit of captured packets: clear of
	// kube-proxy's 0x4000 (masquerade) and 0x8000 (drop), of Calico's
	// 0xffff0000 and of Cilium's 0xf00.
	DefaultMark         = 0x1000
	DefaultRouteTable   = 196
	DefaultRulePriority = 196
	DefaultListenPort   = 15196
)

// TableName is the nftables table (family ip) of the capture.
const TableName = "rbn-portal"

// Capture makes the node's kernel deliver the TCP connections to the rbn
// pod range to one transparent listener on 127.0.0.1:ListenPort (TPROXY),
// whose accepted sockets keep the original destination as their local
// address:
//
//   - nftables table ip rbn-portal, chain prerouting (filter, priority
//     -90: after kube-proxy's DNAT at -100, so the destination is the pod
//     address an EndpointSlice names): `[iifname I] ip daddr CIDR meta
//     l4proto tcp tproxy to 127.0.0.1:ListenPort meta mark set mark`;
//   - without input interfaces only, chain output (route, -90): `ip daddr
//     CIDR meta l4proto tcp meta mark set mark`, which reroutes locally
//     generated connections through lo into prerouting;
//   - a policy rule `fwmark Mark/Mask lookup Table` at Priority, and
//     `local 0.0.0.0/0 dev lo table Table`, which deliver marked packets
//     locally.
//
// With input interfaces, only packets arriving on them are captured: a
// build host sharing the node's network namespace (the test stack) keeps
// reaching its own pods.
type Capture struct {
	CIDR netip.Prefix
	// Mark is set on captured packets, within Mask (the other bits of the
	// packet's mark are kept); Mask 0 is Mark.
	Mark, Mask uint32
	Table      int
	Priority   int
	ListenPort uint16
	// InputInterfaces restricts capture to packets arriving on them.
	InputInterfaces []string
	// Netns is the network namespace; none (0) is the process's.
	Netns netns.NsHandle
}

func (c Capture) mask() uint32 {
	if c.Mask == 0 {
		return c.Mark
	}
	return c.Mask
}

// Validate reports every problem of c at once.
func (c Capture) Validate() error {
	var errs []error
	if !c.CIDR.IsValid() || !c.CIDR.Addr().Is4() {
		errs = append(errs, fmt.Errorf("pod CIDR %q: not an IPv4 prefix", c.CIDR))
	}
	if c.ListenPort == 0 {
		errs = append(errs, errors.New("listen port 0"))
	}
	return errors.Join(append(errs, c.ValidateRouting())...)
}

// ValidateRouting reports every problem of the mark, the routing table,
// the rule's priority and the input interfaces at once.
func (c Capture) ValidateRouting() error {
	var errs []error
	if c.Mark == 0 || c.Mark&^c.mask() != 0 {
		errs = append(errs, fmt.Errorf("fwmark %#x/%#x: want a non-zero mark within its mask", c.Mark, c.mask()))
	}
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

// ListenAddress is where the transparent listener must listen.
func (c Capture) ListenAddress() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), c.ListenPort)
}

func (c Capture) nft() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if c.Netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(int(c.Netns)))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return conn, nil
}

func (c Capture) netlink() (*netlink.Handle, error) {
	if c.Netns == 0 {
		return &netlink.Handle{}, nil // netlink's own functions use this one
	}
	h, err := netlink.NewHandleAt(c.Netns)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return h, nil
}

// Ensure installs the capture, replacing what an earlier configuration
// installed; doing it again changes nothing.
func (c Capture) Ensure() error {
	if err := c.Validate(); err != nil {
		return err
	}
	h, err := c.netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	// Routing first: a packet marked by the rules is then always
	// delivered locally.
	if err := c.ensureRouting(h); err != nil {
		return err
	}
	conn, err := c.nft()
	if err != nil {
		return err
	}
	c.replaceTable(conn)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", TableName, err)
	}
	return nil
}

// Remove deletes the table, the rules into our routing table and the
// route; what is already gone is no error.
func (c Capture) Remove() error {
	var errs []error
	if conn, err := c.nft(); err != nil {
		errs = append(errs, err)
	} else {
		c.deleteTable(conn)
		if err := conn.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("delete nftables table %s: %w", TableName, err))
		}
	}
	h, err := c.netlink()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer h.Close()
	return errors.Join(append(errs, c.removeRouting(h))...)
}
