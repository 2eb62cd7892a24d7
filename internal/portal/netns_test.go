package portal

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

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

// testNetns returns a fresh network namespace, closed at the end of t.
func testNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	ns, err := newNetns()
	if err != nil {
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

// testNet is a node namespace joined by veth pairs to three others:
//
//   - client: ptv0 (10.99.0.1/24) in the node, ptc0 (10.99.0.2/24) in the
//     client, whose routes to the pod range and to 10.96.0.0/12 (Service
//     addresses) go through the node;
//   - other: ptv2 (10.98.0.1/24) / ptc2 (10.98.0.2/24), the same routes:
//     a client on an interface the capture may not name;
//   - pod: ptv1 (10.250.1.1/24) / ptp1 (10.250.1.5/24, default route
//     through the node), a pod of the range that the node reaches
//     directly, as a build host's bridge sharing the node's namespace
//     does in the test stack. Its listener on port 22 answers "pod".
//
// The node forwards, and listens on 0.0.0.0:22 itself, as sshd does on
// real nodes.
//
// With bridge, ptv0 is a port of the bridge ptbr0 (which holds
// 10.99.0.1/24 instead), and the node's bridge-nf-call-iptables is 1:
// bridged IPv4 packets traverse the IPv4 prerouting hooks in the bridge
// layer (br_netfilter), as on nodes whose CNI is a bridge.
type testNet struct {
	node, client, other, pod netns.NsHandle
	nodeH                    *netlink.Handle
}

func newTestNet(t *testing.T, bridge bool) *testNet {
	t.Helper()
	requireRoot(t)
	n := &testNet{node: testNetns(t), client: testNetns(t), other: testNetns(t), pod: testNetns(t)}
	n.nodeH = handleAt(t, n.node)
	clientH, otherH, podH := handleAt(t, n.client), handleAt(t, n.other), handleAt(t, n.pod)
	if bridge {
		n.bridgedVeth(t, "ptbr0", "10.99.0.1/24", "ptv0", n.client, clientH, "ptc0", "10.99.0.2/24")
	} else {
		n.veth(t, "ptv0", "10.99.0.1/24", n.client, clientH, "ptc0", "10.99.0.2/24")
	}
	n.veth(t, "ptv2", "10.98.0.1/24", n.other, otherH, "ptc2", "10.98.0.2/24")
	n.veth(t, "ptv1", "10.250.1.1/24", n.pod, podH, "ptp1", "10.250.1.5/24")
	for _, r := range []struct {
		h       *netlink.Handle
		dst, gw string
	}{
		{clientH, "10.250.0.0/16", "10.99.0.1"}, {clientH, "10.96.0.0/12", "10.99.0.1"},
		{otherH, "10.250.0.0/16", "10.98.0.1"}, {otherH, "10.96.0.0/12", "10.98.0.1"},
		{podH, "0.0.0.0/0", "10.250.1.1"},
	} {
		if err := r.h.RouteAdd(&netlink.Route{Dst: mustCIDR(t, r.dst), Gw: net.ParseIP(r.gw)}); err != nil {
			t.Fatalf("route %s via %s: %v", r.dst, r.gw, err)
		}
	}
	inNetns(t, n.node, func() {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	serveName(t, n.node, "0.0.0.0:22", "node")
	serveName(t, n.pod, "10.250.1.5:22", "pod")
	return n
}

func handleAt(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// veth joins the node (name, addr) to ns (peer, peerAddr), both up.
func (n *testNet) veth(t *testing.T, name, addr string, ns netns.NsHandle, h *netlink.Handle, peer, peerAddr string) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(ns)}
	if err := n.nodeH.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	up(t, n.nodeH, "lo", "")
	up(t, n.nodeH, name, addr)
	up(t, h, "lo", "")
	up(t, h, peer, peerAddr)
}

// bridgedVeth is veth with the node's end a port of the bridge br, which
// holds addr, and the node's bridged IPv4 traffic traversing netfilter.
func (n *testNet) bridgedVeth(t *testing.T, br, addr, name string, ns netns.NsHandle, h *netlink.Handle, peer, peerAddr string) {
	t.Helper()
	const sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	inNetns(t, n.node, func() {
		if _, err := os.Stat(sysctl); err != nil {
			t.Skipf("this kernel has no br_netfilter (%v): the bridge case cannot be reproduced", err)
		}
		// Per network namespace since Linux 5.3.
		if err := os.WriteFile(sysctl, []byte("1"), 0o644); err != nil {
			t.Fatalf("bridge-nf-call-iptables in the node namespace: %v", err)
		}
	})
	if err := n.nodeH.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br}}); err != nil {
		t.Fatalf("bridge %s: %v", br, err)
	}
	n.veth(t, name, "", ns, h, peer, peerAddr)
	brLink, err := n.nodeH.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	port, err := n.nodeH.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.nodeH.LinkSetMaster(port, brLink); err != nil {
		t.Fatalf("%s into %s: %v", name, br, err)
	}
	up(t, n.nodeH, br, addr)
}

func up(t *testing.T, h *netlink.Handle, name, cidr string) {
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

// serveName listens on addr in ns and writes name to every connection.
func serveName(t *testing.T, ns netns.NsHandle, addr, name string) {
	t.Helper()
	var ln net.Listener
	inNetns(t, ns, func() {
		var err error
		if ln, err = net.Listen("tcp4", addr); err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			_ = c.Close()
		}
	}()
}

// dialFrom connects to addr from ns; reads and writes fail after 10s.
func dialFrom(t *testing.T, ns netns.NsHandle, addr string) *net.TCPConn {
	t.Helper()
	var conn net.Conn
	inNetns(t, ns, func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		if conn, err = (&net.Dialer{}).DialContext(ctx, "tcp4", addr); err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
	})
	t.Cleanup(func() { conn.Close() })
	// A test that expects an answer never waits forever for it.
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return conn.(*net.TCPConn)
}

// answeredBy checks that the server behind c says name.
func answeredBy(t *testing.T, c *net.TCPConn, name string) {
	t.Helper()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != name {
		t.Errorf("answered %q (%v), want %q", got, err, name)
	}
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
