package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// AllowSetting names the configuration that lets a denied address through,
// for the messages a pod's user and the operator read.
const AllowSetting = "egress.allowedCIDRs in rbn-kubelet's configuration"

// builtin are the networks denied whatever the configuration says (an
// allowlist entry still overrides them): nothing a pod may reach through
// rbn-kubelet lives there, while rbn-kubelet's own ports, the node's and
// the cloud's metadata services do.
var builtin = []struct {
	prefix netip.Prefix
	class  string
}{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	// Connecting to 0.0.0.0 or :: reaches the local host.
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// BuiltinDenied lists the networks denied by default, for documentation and logs.
func BuiltinDenied() []string {
	out := make([]string, len(builtin))
	for i, b := range builtin {
		out[i] = b.prefix.String()
	}
	return out
}

// Policy refuses connections to denied networks unless an allowed network
// contains the address. The zero Policy denies the built-in networks only.
type Policy struct {
	denied  []netip.Prefix // the operator's, besides builtin
	allowed []netip.Prefix
}

// Config is a Policy's configuration: CIDRs (a bare IP is one address).
type Config struct {
	// DeniedCIDRs are denied besides the built-in networks: the cluster's
	// pod and service networks, the node network.
	DeniedCIDRs []string
	// AllowedCIDRs override every denial: an S3 service or registry on a
	// private address, a test stack on loopback.
	AllowedCIDRs []string
}

// New returns the policy cfg describes.
func New(cfg Config) (*Policy, error) {
	p := &Policy{}
	var err error
	if p.denied, err = ParseCIDRs(cfg.DeniedCIDRs); err != nil {
		return nil, fmt.Errorf("denied CIDRs: %w", err)
	}
	if p.allowed, err = ParseCIDRs(cfg.AllowedCIDRs); err != nil {
		return nil, fmt.Errorf("allowed CIDRs: %w", err)
	}
	return p, nil
}

// ParseCIDRs reads CIDRs, or bare IPs as single-address prefixes.
func ParseCIDRs(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := parseCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %w", s, err)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked(), nil
}

// DeniedError is a connection the policy refused.
type DeniedError struct {
	// Address is the address refused (ip:port, or the host asked for).
	Address string
	// Network is the denied network that contains it, Class what it is
	// ("link-local", "loopback", ..., "denied by egress.deniedCIDRs").
	Network string
	Class   string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("rbn-kubelet refuses to connect to %s: %s is %s (to allow it, add it to %s)", e.Address, e.Network, e.Class, AllowSetting)
}

// Check reports whether ip may be connected to; address names it in the error.
func (p *Policy) Check(ip netip.Addr, address string) error {
	ip = ip.Unmap()
	for _, a := range p.allowed {
		if a.Contains(ip) {
			return nil
		}
	}
	for _, b := range builtin {
		if b.prefix.Contains(ip) {
			return &DeniedError{Address: address, Network: b.prefix.String(), Class: b.class}
		}
	}
	for _, d := range p.denied {
		if d.Contains(ip) {
			return &DeniedError{Address: address, Network: d.String(), Class: "listed in egress.deniedCIDRs"}
		}
	}
	return nil
}

// Control is a net.Dialer Control hook: it runs after the name was resolved,
// with the address about to be connected to, and refuses a denied one.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Fail closed: the dialer always hands an ip:port here.
		return &DeniedError{Address: address, Network: "?", Class: "not an IP address and port"}
	}
	return p.Check(ap.Addr(), address)
}

// Dialer returns a copy of d that enforces the policy (after d's own
// Control hook, if any).
func (p *Policy) Dialer(d net.Dialer) *net.Dialer {
	inner := d.Control
	d.Control = func(network, address string, c syscall.RawConn) error {
		if err := p.Control(network, address, c); err != nil {
			return err
		}
		if inner != nil {
			return inner(network, address, c)
		}
		return nil
	}
	return &d
}

// CheckHost resolves hostport's host and refuses it if any of its addresses
// is denied. It is for clients whose dialer cannot be replaced: unlike
// Control it cannot see the address finally connected to.
func (p *Policy) CheckHost(ctx context.Context, hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.Trim(host, "[]")
	if a, err := netip.ParseAddr(host); err == nil {
		return p.Check(a, hostport)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if err := p.Check(a, fmt.Sprintf("%s (%s)", hostport, a)); err != nil {
			return err
		}
	}
	return nil
}
