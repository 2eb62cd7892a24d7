package portal

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func testRouting(t *testing.T, h *netlink.Handle, iifs ...string) Routing {
	return Routing{Handle: h, CIDR: netip.MustParsePrefix("10.250.0.0/16"), Table: DefaultRouteTable, Priority: DefaultRulePriority, InputInterfaces: iifs}
}

// ourRules lists the rules into the table of r.
func ourRules(t *testing.T, h *netlink.Handle, r Routing) []netlink.Rule {
	t.Helper()
	rules, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Rule
	for _, rule := range rules {
		if rule.Table == r.Table {
			out = append(out, rule)
		}
	}
	return out
}

func tableRoutes(t *testing.T, h *netlink.Handle, table int) []netlink.Route {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	return routes
}

// isLocal tells whether the node delivers a packet to ip locally; iif ""
// asks about a locally generated packet.
func isLocal(t *testing.T, h *netlink.Handle, ip, iif string) bool {
	t.Helper()
	opts := &netlink.RouteGetOptions{}
	if iif != "" {
		opts.Iif, opts.SrcAddr = iif, net.ParseIP("10.99.0.2")
	}
	routes, err := h.RouteGetWithOptions(net.ParseIP(ip), opts)
	if err != nil {
		return false // unreachable
	}
	return len(routes) == 1 && routes[0].Type == unix.RTN_LOCAL
}

func TestRoutingCapturesFromInputInterfaceOnly(t *testing.T) {
	n := newTestNet(t)
	r := testRouting(t, n.nodeH, "ptv0")
	// A stale rule of ours (an interface no longer configured) goes.
	if err := testRouting(t, n.nodeH, "ptv0", "gone0").Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if got := len(ourRules(t, n.nodeH, r)); got != 2 {
		t.Fatalf("rules with two interfaces: %d, want 2", got)
	}
	for range 2 { // idempotent
		if err := r.Ensure(); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}
	rules := ourRules(t, n.nodeH, r)
	if len(rules) != 1 || rules[0].IifName != "ptv0" || rules[0].Priority != DefaultRulePriority || rules[0].Dst.String() != "10.250.0.0/16" {
		t.Fatalf("rules after Ensure: %v", rules)
	}
	if !isLocal(t, n.nodeH, "10.250.1.5", "ptv0") {
		t.Error("10.250.1.5 arriving on ptv0 is not delivered locally")
	}
	if isLocal(t, n.nodeH, "10.250.1.5", "") {
		t.Error("locally generated traffic to 10.250.1.5 is captured, want only ptv0's")
	}
	if isLocal(t, n.nodeH, "10.251.0.1", "ptv0") {
		t.Error("10.251.0.1, outside the range, is delivered locally")
	}

	// A transparent listener on a pod address serves a client behind ptv0.
	var ln net.Listener
	inNetns(t, n.node, func() {
		var err error
		if ln, err = ListenTransparent(t.Context(), "10.250.1.5:2222"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, c.LocalAddr().String())
	}()
	var conn net.Conn
	inNetns(t, n.client, func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		if conn, err = (&net.Dialer{}).DialContext(ctx, "tcp4", "10.250.1.5:2222"); err != nil {
			t.Fatalf("dial the pod address from the client namespace: %v", err)
		}
	})
	defer conn.Close()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "10.250.1.5:2222" {
		t.Errorf("served as %q (%v), want 10.250.1.5:2222", got, err)
	}

	if err := r.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if rules := ourRules(t, n.nodeH, r); len(rules) != 0 {
		t.Errorf("rules left after Remove: %v", rules)
	}
	if routes := tableRoutes(t, n.nodeH, r.Table); len(routes) != 0 {
		t.Errorf("routes left after Remove: %v", routes)
	}
	if isLocal(t, n.nodeH, "10.250.1.5", "ptv0") {
		t.Error("still captured after Remove")
	}
	if err := r.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestRoutingWithoutInputInterfaceCapturesAll(t *testing.T) {
	n := newTestNet(t)
	r := testRouting(t, n.nodeH)
	if err := r.Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if rules := ourRules(t, n.nodeH, r); len(rules) != 1 || rules[0].IifName != "" {
		t.Fatalf("rules: %v, want one without iif", rules)
	}
	if !isLocal(t, n.nodeH, "10.250.1.5", "") || !isLocal(t, n.nodeH, "10.250.1.5", "ptv0") {
		t.Error("not every packet to the range is delivered locally")
	}
	if err := r.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if isLocal(t, n.nodeH, "10.250.1.5", "") {
		t.Error("still captured after Remove")
	}
}
