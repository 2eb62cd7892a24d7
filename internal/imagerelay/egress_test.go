package imagerelay

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/remote-build-nodes/rbn/internal/egress"
)

func policy(t *testing.T, allowed ...string) *egress.Policy {
	t.Helper()
	p, err := egress.New(egress.Config{AllowedCIDRs: allowed})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPullRefusesDeniedRegistry(t *testing.T) {
	reg := newFakeRegistry()
	reg.image("team/app", "1.0", "layer one")
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		reg.ServeHTTP(w, r)
	}))
	defer up.Close()
	registry := strings.TrimPrefix(up.URL, "http://")
	host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), names: map[string]bool{}}
	pull := func(p *egress.Policy) error {
		_, err := Pull(context.Background(), Request{Image: registry + "/team/app:1.0", Credentials: &Credentials{Username: "u", Password: "p"},
			Host: loopback{}, Podman: host, SystemContext: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}, Egress: p})
		return err
	}

	err := pull(policy(t))
	var d *egress.DeniedError
	if !errors.As(err, &d) {
		t.Fatalf("pull from %s: %v, want a *egress.DeniedError", registry, err)
	}
	if !strings.Contains(err.Error(), registry) || !strings.Contains(err.Error(), egress.AllowSetting) {
		t.Errorf("message %q: want the registry's address and the setting", err)
	}
	if hits.Load() != 0 || len(host.names) != 0 {
		t.Errorf("%d request(s) reached the registry, host images %v: want none", hits.Load(), host.names)
	}
	if err := pull(policy(t, "127.0.0.1/32")); err != nil {
		t.Fatalf("allowlisted registry: %v", err)
	}
}

// A registry may send blobs elsewhere (a blob store); a redirect to a denied
// address is refused.
func TestPullRefusesRedirectToDeniedAddress(t *testing.T) {
	var innerHits atomic.Int32
	inner := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { innerHits.Add(1) }))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.2 (loopback is 127.0.0.0/8 on Linux): %v", err)
	}
	inner.Listener = ln
	inner.Start()
	defer inner.Close()
	reg := newFakeRegistry()
	reg.image("team/app", "1.0", "layer one")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			http.Redirect(w, r, inner.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer up.Close()
	registry := strings.TrimPrefix(up.URL, "http://")
	host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), names: map[string]bool{}}
	_, err = Pull(context.Background(), Request{Image: registry + "/team/app:1.0", Credentials: &Credentials{Username: "u", Password: "p"},
		Host: loopback{}, Podman: host, SystemContext: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}, Egress: policy(t, "127.0.0.1/32")})
	if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(inner.URL, "http://")) {
		t.Fatalf("redirected to %s: %v, want a refusal naming it", inner.URL, err)
	}
	if innerHits.Load() != 0 {
		t.Error("the denied server was reached")
	}
}
