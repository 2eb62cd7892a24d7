package portal

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func testCapture(n *testNet, iifs ...string) Capture {
	return Capture{
		CIDR: netip.MustParsePrefix("10.250.0.0/16"), Mark: DefaultMark, Table: DefaultRouteTable,
		Priority: DefaultRulePriority, ListenPort: DefaultListenPort, InputInterfaces: iifs, Netns: n.node,
	}
}

// runPortal runs a portal with the real capture and transparent listener
// in the node namespace, relaying over fake port-forward connections, to
// pod a (10.250.1.5: 22 and 23) and pod b (10.250.1.6:8080).
func runPortal(t *testing.T, n *testNet, c Capture) *fakeDialer {
	t.Helper()
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22), tcp(23)}, podEndpoint("a", true, "10.250.1.5"))
	sl.Name = "svc-a"
	slB := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(8080)}, podEndpoint("b", true, "10.250.1.6"))
	slB.Name = "svc-b"
	d := newFakeDialer()
	p, err := New(Config{
		Client: fake.NewClientset(sl, slB), PodCIDR: c.CIDR, Capture: c, ListenAddress: c.ListenAddress(),
		Dialer: d, Metrics: NewMetrics(),
		Listen: func(ctx context.Context, addr string) (ln net.Listener, err error) {
			if nsErr := doInNetns(n.node, func() { ln, err = ListenTransparent(ctx, addr) }); nsErr != nil {
				return nil, nsErr
			}
			return ln, err
		},
	})
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

// TestCaptureWithoutInputInterface is production's configuration: the
// node listens on 0.0.0.0:22 itself (what made a listener per pod address
// fail to bind), and connections to a pod's port 22 from behind ptv0 and
// from the node itself are relayed.
func TestCaptureWithoutInputInterface(t *testing.T) {
	n := newTestNet(t)
	d := runPortal(t, n, testCapture(n))
	pf := relayed(t, d, dialFrom(t, n.client, "10.250.1.5:22"), "a", "22")
	// Locally generated: the output chain reroutes it into prerouting. A
	// port-forward connection per pod: the second is on the first's.
	local := dialFrom(t, n.node, "10.250.1.5:23")
	if got := echo(t, pf); got != "23" {
		t.Errorf("local connection relayed to port %q, want 23", got)
	}
	roundTrip(t, local, "from the node")
	// A destination no slice names is captured, then closed.
	closedByPortal(t, dialFrom(t, n.client, "10.250.1.5:24"))
	// The node's own port 22 is left alone.
	answeredBy(t, dialFrom(t, n.client, "10.99.0.1:22"), "node")
}

// TestCaptureWithInputInterface is the test stack's: only what arrives on
// ptv0 is captured; another interface's traffic and the node's own reach
// the pod as routed.
func TestCaptureWithInputInterface(t *testing.T) {
	n := newTestNet(t)
	d := runPortal(t, n, testCapture(n, "ptv0"))
	relayed(t, d, dialFrom(t, n.client, "10.250.1.5:22"), "a", "22")
	answeredBy(t, dialFrom(t, n.other, "10.250.1.5:22"), "pod")
	answeredBy(t, dialFrom(t, n.node, "10.250.1.5:22"), "pod")
	if got := d.count(); got != 1 {
		t.Errorf("%d port-forward dials, want only ptv0's", got)
	}
}

// TestCaptureAfterKubeProxyDNAT simulates kube-proxy: a nat chain at
// priority -100 translates a Service address to pod b's; the portal sees
// the pod's address and port, and the reply is translated back.
func TestCaptureAfterKubeProxyDNAT(t *testing.T) {
	n := newTestNet(t)
	conn := nftConn(t, n)
	tbl := conn.AddTable(&nftables.Table{Name: "kube-proxy", Family: nftables.TableFamilyIPv4})
	ch := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	svc, pod := netip.MustParseAddr("10.96.0.10").As4(), netip.MustParseAddr("10.250.1.6").As4()
	// ip daddr 10.96.0.10 tcp dport 80 dnat to 10.250.1.6:8080
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
	d := runPortal(t, n, testCapture(n, "ptv0"))
	c := dialFrom(t, n.client, "10.96.0.10:80")
	relayed(t, d, c, "b", "8080")
}

// TestCaptureEnsureRemove installs twice over an earlier configuration,
// then removes everything.
func TestCaptureEnsureRemove(t *testing.T) {
	n := newTestNet(t)
	earlier := testCapture(n)
	earlier.Mark, earlier.Mask = 0x2000, 0x3000
	if err := earlier.Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	c := testCapture(n, "ptv0", "ptv2")
	for range 2 {
		if err := c.Ensure(); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}
	rules := ourRules(t, n, c)
	if len(rules) != 1 || rules[0].Mark != DefaultMark || rules[0].Mask == nil || *rules[0].Mask != DefaultMark ||
		rules[0].Priority != DefaultRulePriority {
		t.Errorf("rules after Ensure: %v, want one fwmark %#x/%#x", rules, DefaultMark, DefaultMark)
	}
	if routes := tableRoutes(t, n, c.Table); len(routes) != 1 || routes[0].Type != unix.RTN_LOCAL {
		t.Errorf("routes after Ensure: %v, want local 0.0.0.0/0", routes)
	}
	// With input interfaces: a rule per interface, no output chain.
	if got := chainRules(t, n); !slices.Equal(got, []string{"prerouting", "prerouting"}) {
		t.Errorf("rules by chain %v, want two in prerouting", got)
	}
	if err := testCapture(n).Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if got := chainRules(t, n); !slices.Equal(got, []string{"output", "prerouting"}) {
		t.Errorf("rules by chain without input interfaces %v, want one in output and prerouting", got)
	}
	for range 2 {
		if err := c.Remove(); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	assertNothingLeft(t, n, c)
}

// chainRules lists the chain of each rule of our table, sorted.
func chainRules(t *testing.T, n *testNet) []string {
	t.Helper()
	conn := nftConn(t, n)
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rules, err := conn.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		for range rules {
			out = append(out, ch.Name)
		}
	}
	slices.Sort(out)
	return out
}

func assertNothingLeft(t *testing.T, n *testNet, c Capture) {
	t.Helper()
	tables, err := nftConn(t, n).ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		if tbl.Name == TableName {
			t.Errorf("table %s left", TableName)
		}
	}
	if rules := ourRules(t, n, c); len(rules) != 0 {
		t.Errorf("rules left: %v", rules)
	}
	if routes := tableRoutes(t, n, c.Table); len(routes) != 0 {
		t.Errorf("routes left: %v", routes)
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

// nftConn is an nftables connection to the node namespace.
func nftConn(t *testing.T, n *testNet) *nftables.Conn {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(n.node)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestCaptureValidate(t *testing.T) {
	ok := Capture{CIDR: netip.MustParsePrefix("10.250.0.0/16"), Mark: 0x1000, Table: 196, Priority: 196, ListenPort: 15196}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	withMask := ok
	withMask.Mark, withMask.Mask = 0x20000, 0xf0000
	if err := withMask.Validate(); err != nil {
		t.Errorf("Validate with a mask: %v", err)
	}
	// Every problem at once.
	err := Capture{CIDR: netip.MustParsePrefix("fd00::/64"), Mark: 0x3000, Mask: 0x1000, Table: 255,
		InputInterfaces: []string{"a-name-too-long-for-linux"}}.Validate()
	for _, want := range []string{"IPv4", "listen port", "fwmark 0x3000/0x1000", "route table 255", "rule priority 0", "a-name-too-long"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to mention %q", err, want)
		}
	}
}
