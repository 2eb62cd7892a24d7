package portal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespace is the portal's own network namespace (Capture), held by a
// file descriptor, never bind-mounted: when the process ends, the kernel
// destroys it with its end of the veth pair, which takes the node's end
// and the node's routes through it along. Only the node's policy rules
// stay (Capture.Cleanup); they lead into an empty table then, so the
// node routes as it did before.
//
// Nothing but the portal listens in it, so a listener on 0.0.0.0:P
// conflicts with nothing the node runs (sshd on the node's 0.0.0.0:22),
// and the AnyIP route makes it accept connections to every address of
// the pod range: no IP_TRANSPARENT, no TPROXY, no packet marks.
//
// A Namespace is used by one goroutine at a time.
type Namespace struct {
	cfg Capture
	ns  netns.NsHandle // -1 until Ensure creates it
}

// NewNamespace validates cfg; Ensure creates the namespace.
func NewNamespace(cfg Capture) (*Namespace, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Namespace{cfg: cfg, ns: -1}, nil
}

// Ensure creates the namespace and the veth pair (the first time), and
// installs the node's route and rules into it, replacing what an earlier
// configuration installed; doing it again changes nothing.
func (n *Namespace) Ensure() error {
	h, err := n.cfg.hostNetlink()
	if err != nil {
		return err
	}
	defer h.Close()
	if n.ns == -1 {
		if err := n.create(h); err != nil {
			return err
		}
	}
	link, err := h.LinkByName(HostLink)
	if err != nil {
		return fmt.Errorf("find %s: %w", HostLink, err)
	}
	return n.cfg.ensureRouting(h, link)
}

// create makes the namespace and the veth pair, and configures the
// namespace's end.
func (n *Namespace) create(h *netlink.Handle) error {
	// A node's end left by another portal: its namespace still lives
	// (a process holding it); its routes would compete with ours.
	if err := deleteLink(h, HostLink); err != nil {
		return err
	}
	ns, err := newNetns()
	if err != nil {
		return fmt.Errorf("create network namespace: %w", err)
	}
	n.ns = ns // Remove closes it, also after a failure below
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: HostLink}, PeerName: NamespaceLink, PeerNamespace: netlink.NsFd(ns)}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s/%s: %w", HostLink, NamespaceLink, err)
	}
	bits := n.cfg.LinkCIDR.Bits()
	if err := linkUp(h, HostLink, netip.PrefixFrom(n.cfg.HostAddress(), bits)); err != nil {
		return err
	}
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the portal's namespace: %w", err)
	}
	defer nh.Close()
	if err := linkUp(nh, "lo", netip.Prefix{}); err != nil {
		return err
	}
	if err := linkUp(nh, NamespaceLink, netip.PrefixFrom(n.cfg.NamespaceAddress(), bits)); err != nil {
		return err
	}
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("portal's namespace: %w", err)
	}
	anyIP := &netlink.Route{Dst: ipNet(n.cfg.CIDR), Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL,
		Scope: netlink.SCOPE_HOST, LinkIndex: lo.Attrs().Index}
	if err := nh.RouteReplace(anyIP); err != nil {
		return fmt.Errorf("portal's namespace: route local %s dev lo table local: %w", n.cfg.CIDR, err)
	}
	def := &netlink.Route{Dst: ipNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0)), Gw: net.IP(n.cfg.HostAddress().AsSlice())}
	if err := nh.RouteReplace(def); err != nil {
		return fmt.Errorf("portal's namespace: default route via %s: %w", n.cfg.HostAddress(), err)
	}
	return nil
}

// linkUp gives the link named name the address addr (if valid) and sets
// it up.
func linkUp(h *netlink.Handle, name string, addr netip.Prefix) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if addr.IsValid() {
		if err := h.AddrReplace(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
			return fmt.Errorf("address %s on %s: %w", addr, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// Listen listens on 0.0.0.0:port in the namespace: for connections to
// every address of the pod range on port. The accepted connections'
// local address is the one the client connected to.
func (n *Namespace) Listen(ctx context.Context, port uint16) (net.Listener, error) {
	if n.ns == -1 {
		return nil, errors.New("listen: the portal's namespace is not created (Ensure)")
	}
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(int(port)))
	var ln net.Listener
	var err error
	if nsErr := doInNetns(n.ns, func() { ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp4", addr) }); nsErr != nil {
		return nil, fmt.Errorf("listen on %s in the portal's namespace: %w", addr, nsErr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s in the portal's namespace: %w", addr, err)
	}
	return ln, nil
}

// Remove deletes the node's rules into the table, the table's routes and
// the veth pair, and closes the namespace (which goes once its last
// socket is closed). What is already gone is no error.
func (n *Namespace) Remove() error {
	h, err := n.cfg.hostNetlink()
	if err == nil {
		err = n.cfg.removeRouting(h)
		h.Close()
	}
	if n.ns != -1 {
		err = errors.Join(err, n.ns.Close())
		n.ns = -1
	}
	return err
}

// newNetns creates a network namespace; the calling thread stays in its
// own.
func newNetns() (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer orig.Close()
	ns, err := netns.New() // unshare(CLONE_NEWNET): this thread moves into it
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	if err := netns.Set(orig); err != nil {
		// A thread left in the new namespace is not returned to the
		// scheduler: it ends with the goroutine.
		ns.Close()
		return -1, fmt.Errorf("back to the original namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ns, nil
}

// doInNetns runs f on a thread in ns: sockets f creates live in ns; the
// other goroutines stay where they are.
func doInNetns(ns netns.NsHandle, f func()) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer func() {
		// A thread left in ns is not returned to the scheduler: it ends
		// with the goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	f()
	return nil
}
