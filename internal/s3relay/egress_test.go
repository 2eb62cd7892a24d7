package s3relay

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remote-build-nodes/rbn/internal/egress"
)

// countingServer answers every request with 404 and counts them.
func countingServer(t *testing.T, addr string, h http.Handler) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen on %s: %v", addr, err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

func download(t *testing.T, policy *egress.Policy, url string) (Result, error) {
	t.Helper()
	r, err := New(Config{Egress: policy, Backoff: func(int) time.Duration { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Client(Endpoint{URL: url, Region: "us-east-1", AccessKeyID: "a", SecretAccessKey: "s", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Download(context.Background(), "b", "k", func(_ context.Context, body io.Reader, _ int64) error {
		_, err := io.Copy(io.Discard, body)
		return err
	}, nil)
}

func TestEgressPolicyRefusesEndpointOnce(t *testing.T) {
	srv, hits := countingServer(t, "127.0.0.1:0", http.NotFoundHandler())
	deny, err := egress.New(egress.Config{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := download(t, deny, srv.URL)
	var d *egress.DeniedError
	if !errors.As(err, &d) {
		t.Fatalf("download from %s: %v, want a *egress.DeniedError", srv.URL, err)
	}
	if res.Attempts != 1 || hits.Load() != 0 {
		t.Errorf("%d attempt(s), %d request(s) reached the server: want 1 and 0", res.Attempts, hits.Load())
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if msg := err.Error(); !strings.Contains(msg, host) || !strings.Contains(msg, egress.AllowSetting) || strings.Contains(msg, "operation error") {
		t.Errorf("message %q: want the address, the setting and no SDK noise", msg)
	}

	allow, err := egress.New(egress.Config{AllowedCIDRs: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := download(t, allow, srv.URL); errors.As(err, &d) || hits.Load() == 0 {
		t.Errorf("allowlisted: %v, %d request(s): want the server's own answer", err, hits.Load())
	}
}

func TestEgressPolicyRefusesRedirect(t *testing.T) {
	inner, innerHits := countingServer(t, "127.0.0.2:0", http.NotFoundHandler())
	outer, _ := countingServer(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inner.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	p, err := egress.New(egress.Config{AllowedCIDRs: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = download(t, p, outer.URL)
	var d *egress.DeniedError
	if !errors.As(err, &d) || d.Address != strings.TrimPrefix(inner.URL, "http://") {
		t.Fatalf("redirected to %s: %v, want a *egress.DeniedError for it", inner.URL, err)
	}
	if innerHits.Load() != 0 {
		t.Error("the denied server was reached")
	}
}
