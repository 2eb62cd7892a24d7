package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func mustNew(t *testing.T, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckClasses(t *testing.T) {
	p := mustNew(t, Config{DeniedCIDRs: []string{"10.96.0.0/12", "10.244.0.0/16"}, AllowedCIDRs: []string{"10.96.0.10", "169.254.10.0/24"}})
	for _, tc := range []struct {
		ip, class string // class "": allowed
	}{
		{"127.0.0.1", "loopback"}, {"127.1.2.3", "loopback"}, {"::1", "loopback"}, {"::ffff:127.0.0.1", "loopback"},
		{"169.254.169.254", "link-local"}, {"fe80::1", "link-local"},
		{"0.0.0.0", "unspecified"}, {"::", "unspecified"},
		{"224.0.0.1", "multicast"}, {"ff02::1", "multicast"},
		{"10.96.0.1", "listed in egress.deniedCIDRs"}, {"10.244.3.4", "listed in egress.deniedCIDRs"},
		{"10.96.0.10", ""},   // allowlisted inside a denied network
		{"169.254.10.5", ""}, // allowlisted inside a built-in one
		{"10.0.0.1", ""},     // private but not denied
		{"52.216.1.1", ""},   // public
		{"2600:1f18::1", ""}, // public IPv6
		{"::ffff:52.216.1.1", ""},
	} {
		err := p.Check(netip.MustParseAddr(tc.ip), tc.ip+":80")
		var d *DeniedError
		switch {
		case tc.class == "" && err != nil:
			t.Errorf("%s: %v, want allowed", tc.ip, err)
		case tc.class != "" && !errors.As(err, &d):
			t.Errorf("%s: %v, want a *DeniedError", tc.ip, err)
		case tc.class != "" && d.Class != tc.class:
			t.Errorf("%s: class %q, want %q", tc.ip, d.Class, tc.class)
		}
	}
}

func TestNewRejectsBadCIDRs(t *testing.T) {
	for _, cfg := range []Config{{DeniedCIDRs: []string{"10.0.0.0/33"}}, {AllowedCIDRs: []string{"example.com"}}, {AllowedCIDRs: []string{""}}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

// dial connects through the policy's dialer, as the relays' transports do.
func dial(p *Policy, addr string) error {
	c, err := p.Dialer(net.Dialer{}).DialContext(context.Background(), "tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}

func TestDialerRefusesDeniedAndAllowsAllowlisted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()

	var d *DeniedError
	if err := dial(mustNew(t, Config{}), addr); !errors.As(err, &d) || d.Address != addr || d.Class != "loopback" {
		t.Fatalf("default policy dialling %s: %v, want a loopback *DeniedError", addr, err)
	}
	if !strings.Contains(err2s(dial(mustNew(t, Config{}), addr)), AllowSetting) {
		t.Error("the refusal does not name the setting that allows it")
	}
	if err := dial(mustNew(t, Config{AllowedCIDRs: []string{"127.0.0.1/32"}}), addr); err != nil {
		t.Fatalf("allowlisted %s: %v", addr, err)
	}
	// A name resolving to a denied address is refused when connecting.
	_, port, _ := net.SplitHostPort(addr)
	if err := dial(mustNew(t, Config{}), net.JoinHostPort("localhost", port)); !errors.As(err, &d) {
		t.Errorf("localhost: %v, want a *DeniedError", err)
	}
	// The refusal comes before any packet: these need no listener.
	for _, a := range []string{"169.254.169.254:80", "0.0.0.0:" + port, "224.0.0.1:80"} {
		if err := dial(mustNew(t, Config{}), a); !errors.As(err, &d) {
			t.Errorf("%s: %v, want a *DeniedError", a, err)
		}
	}
	if err := dial(mustNew(t, Config{AllowedCIDRs: []string{"127.0.0.1"}, DeniedCIDRs: []string{"127.0.0.0/8"}}), addr); err != nil {
		t.Errorf("the allowlist does not override deniedCIDRs: %v", err)
	}
}

func err2s(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A redirect from an allowed server to a denied address never reaches it.
func TestRedirectToDeniedAddressIsRefused(t *testing.T) {
	var hit atomic.Bool
	inner := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit.Store(true) }))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.2 (loopback is 127.0.0.0/8 on Linux): %v", err)
	}
	inner.Listener = ln
	inner.Start()
	defer inner.Close()
	outer := httptest.NewServer(http.RedirectHandler(inner.URL+"/latest/meta-data", http.StatusFound))
	defer outer.Close()

	p := mustNew(t, Config{AllowedCIDRs: []string{"127.0.0.1/32"}})
	c := &http.Client{Transport: &http.Transport{DialContext: p.Dialer(net.Dialer{}).DialContext}}
	resp, err := c.Get(outer.URL)
	if err == nil {
		resp.Body.Close()
	}
	var d *DeniedError
	if !errors.As(err, &d) || d.Address != ln.Addr().String() {
		t.Fatalf("redirect to %s: %v, want a *DeniedError for it", inner.URL, err)
	}
	if hit.Load() {
		t.Fatal("the denied server was reached")
	}
	// The same client reaches the allowed server itself.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = c.Get(outer.URL)
	if err != nil {
		t.Fatalf("allowed server: %v", err)
	}
	resp.Body.Close()
}

func TestCheckHost(t *testing.T) {
	p := mustNew(t, Config{})
	var d *DeniedError
	for _, h := range []string{"169.254.169.254:80", "[::1]:5000", "localhost:5000", "127.0.0.1"} {
		if err := p.CheckHost(context.Background(), h); !errors.As(err, &d) {
			t.Errorf("%s: %v, want a *DeniedError", h, err)
		}
	}
	if err := p.CheckHost(context.Background(), "203.0.113.7:443"); err != nil {
		t.Errorf("public address: %v", err)
	}
}
