package portal

import (
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requireRoot fails (never skips) a test that needs network namespaces:
// CI runs as root, so a skip would hide the test.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates network namespaces and needs root (CI runs as root)")
	}
}

// newNetns returns a fresh network namespace, closed at the end of t.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// inNetns runs f on a thread in ns: sockets f creates live in ns.
func inNetns(t *testing.T, ns netns.NsHandle, f func()) {
	t.Helper()
	if err := doInNetns(ns, f); err != nil {
		t.Fatal(err)
	}
}

// doInNetns is inNetns for goroutines other than the test's.
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

// testNet is a node namespace and a client namespace joined by a veth
// pair: ptv0 (10.99.0.1/24) in the node, ptc0 (10.99.0.2/24) in the
// client, whose route to 10.250.0.0/16 goes through the node.
type testNet struct {
	node, client   netns.NsHandle
	nodeH, clientH *netlink.Handle
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireRoot(t)
	n := &testNet{node: newNetns(t), client: newNetns(t)}
	var err error
	if n.nodeH, err = netlink.NewHandleAt(n.node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.nodeH.Close)
	if n.clientH, err = netlink.NewHandleAt(n.client); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.clientH.Close)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ptv0"}, PeerName: "ptc0", PeerNamespace: netlink.NsFd(n.client)}
	if err := n.nodeH.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	up := func(h *netlink.Handle, name, cidr string) {
		t.Helper()
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if cidr != "" {
			addr, err := netlink.ParseAddr(cidr)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.AddrAdd(l, addr); err != nil {
				t.Fatalf("address %s on %s: %v", cidr, name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("%s up: %v", name, err)
		}
	}
	up(n.nodeH, "lo", "")
	up(n.nodeH, "ptv0", "10.99.0.1/24")
	up(n.clientH, "lo", "")
	up(n.clientH, "ptc0", "10.99.0.2/24")
	if err := n.clientH.RouteAdd(&netlink.Route{Dst: mustCIDR(t, "10.250.0.0/16"), Gw: net.ParseIP("10.99.0.1")}); err != nil {
		t.Fatalf("client route: %v", err)
	}
	return n
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
