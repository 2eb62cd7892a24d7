package portal

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/remote-build-nodes/rbn/internal/testwait"
)

func testCapture(n *testNet, iifs ...string) Capture {
	return Capture{
		CIDR: netip.MustParsePrefix("10.250.0.0/16"), LinkCIDR: DefaultLinkCIDR, Table: DefaultRouteTable,
		Priority: DefaultRulePriority, InputInterfaces: iifs, Netns: n.node,
	}
}

func testNamespace(t *testing.T, c Capture) *Namespace {
	t.Helper()
	ns, err := NewNamespace(c)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// runPortal runs a portal with its real namespace, routed from the node
// namespace, relaying over fake port-forward connections, to pod a
// (10.250.1.5: 22 and 23) and pod b (10.250.1.6:8080).
func runPortal(t *testing.T, n *testNet, c Capture) *fakeDialer {
	t.Helper()
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22), tcp(23)}, podEndpoint("a", true, "10.250.1.5"))
	sl.Name = "svc-a"
	slB := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(8080)}, podEndpoint("b", true, "10.250.1.6"))
	slB.Name = "svc-b"
	d := newFakeDialer()
	p, err := New(Config{Client: fake.NewClientset(sl, slB), PodCIDR: c.CIDR, Capture: testNamespace(t, c), Dialer: d, Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, p)
	t.Cleanup(func() {
		stop()
		assertNothingLeft(t, n, c)
	})
	return d
}

// relayed checks that c reaches the portal and is relayed to pod, port,
// over a new port-forward connection, which it returns.
func relayed(t *testing.T, d *fakeDialer, c *net.TCPConn, pod, port string) *fakeConn {
	t.Helper()
	pf := dialed(t, d)
	if got := echo(t, pf); got != port {
		t.Errorf("relayed to port %q, want %s", got, port)
	}
	if pods := d.dialedPods(); len(pods) == 0 || pods[len(pods)-1].Name != pod {
		t.Errorf("dialed pods %v, want %s last", pods, pod)
	}
	roundTrip(t, c, "through the portal")
	return pf
}

// refused checks that a connection to addr from ns is refused: nothing
// listens on its port in the portal's namespace.
func refused(t *testing.T, ns netns.NsHandle, addr string) {
	t.Helper()
	inNetns(t, ns, func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %s: %v, want connection refused", addr, err)
		}
	})
}

// TestCaptureWithoutInputInterface is production's configuration: the
// node listens on 0.0.0.0:22 itself (what made a listener per pod address
// fail to bind), and connections to a pod's port 22 from behind ptv0 and
// from the node itself are relayed, with strict reverse path filtering
// on the node.
func TestCaptureWithoutInputInterface(t *testing.T) {
	n := newTestNet(t, false)
	inNetns(t, n.node, func() {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/all/rp_filter", []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	d := runPortal(t, n, testCapture(n))
	pf := relayed(t, d, dialFrom(t, n.client, "10.250.1.5:22"), "a", "22")
	// Locally generated: the rule without iif routes it too. A
	// port-forward connection per pod: the second is on the first's.
	local := dialFrom(t, n.node, "10.250.1.5:23")
	if got := echo(t, pf); got != "23" {
		t.Errorf("local connection relayed to port %q, want 23", got)
	}
	roundTrip(t, local, "from the node")
	// A port a relayed endpoint uses, at an address no slice names with
	// it: accepted, then closed.
	closedByPortal(t, dialFrom(t, n.client, "10.250.1.6:22"))
	// A port no endpoint uses: nothing listens.
	refused(t, n.client, "10.250.1.5:24")
	// The node's own port 22 is left alone.
	answeredBy(t, dialFrom(t, n.client, "10.99.0.1:22"), "node")
}

// TestCaptureWithInputInterface is the test stack's: only what arrives on
// ptv0 is captured; another interface's traffic and the node's own reach
// the pod as routed.
func TestCaptureWithInputInterface(t *testing.T) {
	n := newTestNet(t, false)
	d := runPortal(t, n, testCapture(n, "ptv0"))
	relayed(t, d, dialFrom(t, n.client, "10.250.1.5:22"), "a", "22")
	answeredBy(t, dialFrom(t, n.other, "10.250.1.5:22"), "pod")
	answeredBy(t, dialFrom(t, n.node, "10.250.1.5:22"), "pod")
	if got := d.count(); got != 1 {
		t.Errorf("%d port-forward dials, want only ptv0's", got)
	}
}

// TestCaptureAfterKubeProxyDNAT: kube-proxy translates a Service address
// to pod b's; the portal sees the pod's address and port, and the reply
// is translated back.
func TestCaptureAfterKubeProxyDNAT(t *testing.T) {
	n := newTestNet(t, false)
	kubeProxyDNAT(t, n)
	d := runPortal(t, n, testCapture(n, "ptv0"))
	relayed(t, d, dialFrom(t, n.client, "10.96.0.10:80"), "b", "8080")
}

// TestCaptureBridgeNetfilter is a node whose pods sit on a Linux bridge
// with br_netfilter, which kube-proxy needs on bridge CNIs: kube-proxy's
// DNAT runs in the bridge layer, then the packet is routed (iif the
// bridge) into the portal's namespace. A TPROXY capture failed here: the
// socket it assigned in the bridge layer's prerouting was dropped by
// ip_rcv (skb_orphan), and the SYN died with NO_SOCKET.
func TestCaptureBridgeNetfilter(t *testing.T) {
	n := newTestNet(t, true)
	kubeProxyDNAT(t, n)
	d := runPortal(t, n, testCapture(n, "ptbr0"))
	pf := relayed(t, d, dialFrom(t, n.client, "10.96.0.10:80"), "b", "8080")
	direct := dialFrom(t, n.client, "10.250.1.6:8080")
	if got := echo(t, pf); got != "8080" {
		t.Errorf("relayed to port %q, want 8080", got)
	}
	roundTrip(t, direct, "to the pod's address")
	answeredBy(t, dialFrom(t, n.client, "10.99.0.1:22"), "node")
}

// kubeProxyDNAT simulates kube-proxy in the node namespace: a nat chain
// at priority -100 translates 10.96.0.10:80 (a Service) to 10.250.1.6:8080.
func kubeProxyDNAT(t *testing.T, n *testNet) {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(n.node)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := conn.AddTable(&nftables.Table{Name: "kube-proxy", Family: nftables.TableFamilyIPv4})
	ch := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	svc, pod := netip.MustParseAddr("10.96.0.10").As4(), netip.MustParseAddr("10.250.1.6").As4()
	conn.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: svc[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(80)},
		&expr.Immediate{Register: 1, Data: pod[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(8080)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}})
	if err := conn.Flush(); err != nil {
		t.Fatalf("kube-proxy's nat table: %v", err)
	}
}

// TestNamespaceEnsureRemove installs twice over an earlier configuration,
// then removes everything; --cleanup removes what a killed portal left.
func TestNamespaceEnsureRemove(t *testing.T) {
	n := newTestNet(t, false)
	earlierCfg := testCapture(n, "ptv2")
	earlierCfg.CIDR = netip.MustParsePrefix("10.251.0.0/16")
	earlier := testNamespace(t, earlierCfg)
	if err := earlier.Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	c := testCapture(n, "ptv0", "ptv2")
	ns := testNamespace(t, c)
	for range 2 {
		if err := ns.Ensure(); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}
	assertRouting(t, n, c, []string{"ptv0", "ptv2"})
	for range 2 {
		if err := ns.Remove(); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if err := earlier.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	assertNothingLeft(t, n, c)

	// Without input interfaces: one rule without iif. Then the process
	// "dies": its namespace's last reference goes, and the kernel takes
	// the veth pair and the node's route along; the rules stay, for
	// --cleanup.
	killed := testNamespace(t, testCapture(n))
	if err := killed.Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	assertRouting(t, n, c, []string{""})
	if err := killed.ns.Close(); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, HostLink+" and the route through it gone with the namespace", func() bool {
		_, err := n.nodeH.LinkByName(HostLink)
		return err != nil && len(tableRoutes(t, n, c.Table)) == 0
	})
	if rules := ourRules(t, n, c); len(rules) != 1 {
		t.Errorf("rules after the namespace went: %v, want the one rule left", rules)
	}
	if err := testCapture(n).Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	assertNothingLeft(t, n, c)
}

// assertRouting checks the node's rules into the table (one per input
// interface) and its route into the namespace.
func assertRouting(t *testing.T, n *testNet, c Capture, iifs []string) {
	t.Helper()
	rules := ourRules(t, n, c)
	var got []string
	for _, r := range rules {
		if r.Dst == nil || r.Dst.String() != c.CIDR.String() || r.Priority != c.Priority || r.Mark != 0 {
			t.Errorf("rule %v, want to %s at priority %d", r, c.CIDR, c.Priority)
		}
		got = append(got, r.IifName)
	}
	if strings.Join(got, ",") != strings.Join(iifs, ",") {
		t.Errorf("rules' input interfaces %q, want %q", got, iifs)
	}
	routes := tableRoutes(t, n, c.Table)
	link, err := n.nodeH.LinkByName(HostLink)
	if err != nil {
		t.Fatalf("%s: %v", HostLink, err)
	}
	if len(routes) != 1 || routes[0].Dst.String() != c.CIDR.String() || !routes[0].Gw.Equal(net.ParseIP("169.254.196.2")) ||
		routes[0].LinkIndex != link.Attrs().Index {
		t.Errorf("routes of table %d: %v, want %s via 169.254.196.2 dev %s", c.Table, routes, c.CIDR, HostLink)
	}
}

func assertNothingLeft(t *testing.T, n *testNet, c Capture) {
	t.Helper()
	if rules := ourRules(t, n, c); len(rules) != 0 {
		t.Errorf("rules left: %v", rules)
	}
	if routes := tableRoutes(t, n, c.Table); len(routes) != 0 {
		t.Errorf("routes left: %v", routes)
	}
	if _, err := n.nodeH.LinkByName(HostLink); err == nil {
		t.Errorf("link %s left", HostLink)
	}
}

// ourRules lists the rules into the table of c.
func ourRules(t *testing.T, n *testNet, c Capture) []netlink.Rule {
	t.Helper()
	rules, err := n.nodeH.RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Rule
	for _, rule := range rules {
		if rule.Table == c.Table {
			out = append(out, rule)
		}
	}
	return out
}

func tableRoutes(t *testing.T, n *testNet, table int) []netlink.Route {
	t.Helper()
	routes, err := n.nodeH.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	return routes
}

func TestCaptureValidate(t *testing.T) {
	ok := Capture{CIDR: netip.MustParsePrefix("10.250.0.0/16"), LinkCIDR: DefaultLinkCIDR, Table: 196, Priority: 196}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	overlap := ok
	overlap.LinkCIDR = netip.MustParsePrefix("10.250.0.4/30")
	if err := overlap.Validate(); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("Validate of a link in the pod range: %v", err)
	}
	// Every problem at once.
	err := Capture{CIDR: netip.MustParsePrefix("fd00::/64"), LinkCIDR: netip.MustParsePrefix("169.254.196.0/29"), Table: 255,
		InputInterfaces: []string{"a-name-too-long-for-linux"}}.Validate()
	for _, want := range []string{"IPv4", "link CIDR", "route table 255", "rule priority 0", "a-name-too-long"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to mention %q", err, want)
		}
	}
}
