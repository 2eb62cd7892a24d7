package portal

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/remote-build-nodes/rbn/internal/portal"
)

func TestParse(t *testing.T) {
	o, _, err := parse([]string{"--pod-cidr=100.96.0.0/16", "--input-interface=cni0", "--input-interface=podman0", "--route-table=300"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := &options{
		capture: portal.Capture{
			CIDR: netip.MustParsePrefix("100.96.0.0/16"), LinkCIDR: netip.MustParsePrefix("169.254.196.0/30"), Table: 300, Priority: 196,
			InputInterfaces: []string{"cni0", "podman0"},
		},
		metricsAddress: DefaultMetricsAddress, healthAddress: DefaultHealthAddress, logFormat: "text", logLevel: "info",
		portForwardVia: viaKubelet,
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("parse:\n got %+v\nwant %+v", o, want)
	}
	o, _, err = parse([]string{"--pod-cidr=100.96.0.0/16", "--link-cidr=169.254.7.4/30"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c := o.capture; c.HostAddress().String() != "169.254.7.5" || c.NamespaceAddress().String() != "169.254.7.6" {
		t.Errorf("--link-cidr: %+v", c)
	}
	o, _, err = parse([]string{"--pod-cidr=100.96.0.0/16", "--port-forward-via=kubelet", "--kubelet-ca-file=/etc/ca.crt"}, io.Discard)
	if err != nil || o.portForwardVia != viaKubelet || o.kubeletCAFile != "/etc/ca.crt" {
		t.Errorf("--kubelet-ca-file: %+v, %v", o, err)
	}
	if o, _, err := parse([]string{"--pod-cidr=100.96.0.0/16", "--port-forward-via=apiserver"}, io.Discard); err != nil || o.portForwardVia != viaAPIServer {
		t.Errorf("--port-forward-via=apiserver: %+v, %v", o, err)
	}
	if o, _, err := parse([]string{"--pod-cidr=100.96.0.0/16", "--port-forward-via=kubelet-spdy", "--kubelet-ca-file=/etc/ca.crt"}, io.Discard); err != nil || o.portForwardVia != viaKubeletSPDY {
		t.Errorf("--port-forward-via=kubelet-spdy: %+v, %v", o, err)
	}
	// --cleanup needs no pod range: it removes what the route table names.
	if o, _, err := parse([]string{"--cleanup", "--route-table=300"}, io.Discard); err != nil || !o.cleanup || o.capture.Table != 300 {
		t.Errorf("--cleanup: %+v, %v", o, err)
	}
	if _, showVersion, err := parse([]string{"--version"}, io.Discard); err != nil || !showVersion {
		t.Errorf("--version: %v, %v", showVersion, err)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"--pod-cidr is required"}},
		{[]string{"--pod-cidr=fd00::/64"}, []string{"IPv4"}},
		{[]string{"--pod-cidr=100.96.1.0/16"}, []string{"network address"}},
		// Every problem at once.
		{[]string{"--pod-cidr=100.96.0.0/16", "--link-cidr=169.254.196.0/29"}, []string{"link CIDR", "/30"}},
		{[]string{"--pod-cidr=169.254.0.0/16"}, []string{"overlaps"}},
		{[]string{"--pod-cidr=100.96.0.0/16", "--port-forward-via=ssh"}, []string{`--port-forward-via "ssh"`}},
		{[]string{"--pod-cidr=100.96.0.0/16", "--port-forward-via=apiserver", "--kubelet-ca-file=/etc/ca.crt"}, []string{"--kubelet-ca-file is for"}},
		{[]string{"--pod-cidr=100.96.0.0/16", "--route-table=254", "--route-priority=0", "--input-interface=",
			"--link-cidr=x", "--log-level=loud", "extra"},
			[]string{"route table 254", "rule priority 0", `input interface ""`, "--link-cidr", "logLevel", "unexpected arguments"}},
	} {
		err := Run(t.Context(), tc.args, io.Discard)
		if err == nil {
			t.Errorf("Run(%q) accepted", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Run(%q): %v, want it to mention %q", tc.args, err, w)
			}
		}
	}
}

func TestServeHealth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ready atomic.Bool
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serveHealth(ctx, ln, ready.Load) }()
	get := func(path string) int {
		t.Helper()
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz: %d", got)
	}
	if got := get("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready: %d, want 503", got)
	}
	ready.Store(true)
	if got := get("/readyz"); got != http.StatusOK {
		t.Errorf("/readyz when ready: %d, want 200", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serveHealth: %v", err)
	}
}
