package imagerelay

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.podman.io/image/v5/types"
)

// Only the pull the relay was opened for gets anything from it: a local
// process on the host without the pull's credentials (none, wrong ones, or
// the pod's own registry credentials) gets 401 for every path and method,
// and the upstream registry sees no request of it.
func TestRelayAnswersOnlyItsPull(t *testing.T) {
	reg := newFakeRegistry()
	manifest := reg.image("team/app", "1.0", "layer one")
	var blob string
	for d := range reg.blobs {
		blob = d.String()
	}
	var upstream atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.Add(1)
		reg.ServeHTTP(w, r)
	}))
	defer up.Close()
	registry := strings.TrimPrefix(up.URL, "http://")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), names: map[string]bool{}}
	host.intruder = func(hostPort string) {
		before := upstream.Load()
		paths := []string{
			"/v2/", "/v2/team/app/manifests/1.0", "/v2/team/app/manifests/" + manifest.String(),
			"/v2/team/app/blobs/" + blob, "/v2/_catalog", "/v2/other/manifests/latest", "/",
		}
		for _, auth := range []struct {
			name, user, password string
			basic                bool
		}{
			{name: "none"},
			{name: "wrong password", user: relayUser, password: "wrong", basic: true},
			{name: "empty password", user: relayUser, basic: true},
			{name: "the pod's registry credentials", user: reg.user, password: reg.password, basic: true},
			{name: "the pull's password, another user", user: "u", password: host.creds[len(host.creds)-1].Password, basic: true},
		} {
			for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
				for _, p := range paths {
					req, _ := http.NewRequest(method, "http://"+hostPort+p, nil)
					if auth.basic {
						req.SetBasicAuth(auth.user, auth.password)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatalf("%s %s (%s): %v", method, p, auth.name, err)
					}
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
						t.Errorf("%s %s with credentials %s: %s (WWW-Authenticate %q), want 401 asking for basic auth",
							method, p, auth.name, resp.Status, resp.Header.Get("WWW-Authenticate"))
					}
				}
			}
		}
		if n := upstream.Load() - before; n != 0 {
			t.Errorf("requests without the pull's credentials made %d upstream requests, want none", n)
		}
		// The pull's credentials open it, and its blobs come from upstream.
		req, _ := http.NewRequest(http.MethodGet, "http://"+hostPort+"/v2/team/app/blobs/"+blob, nil)
		c := host.creds[len(host.creds)-1]
		req.SetBasicAuth(c.Username, c.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || upstream.Load() == before {
			t.Errorf("GET of a blob with the pull's credentials: %s after %d upstream requests, want 200 from upstream", resp.Status, upstream.Load()-before)
		}
	}

	pull := func() {
		t.Helper()
		_, err := Pull(context.Background(), Request{
			Image: registry + "/team/app:1.0", Credentials: &Credentials{Username: reg.user, Password: reg.password},
			Host: loopback{}, Podman: host, Logger: log,
			SystemContext: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pull()
	host.intruder = nil
	pull()
	if !host.names[registry+"/team/app:1.0"] || len(host.names) != 1 {
		t.Errorf("host image names %v, want only the pod's", host.names)
	}

	if len(host.creds) != 2 {
		t.Fatalf("%d pulls on the host, want 2", len(host.creds))
	}
	first, second := host.creds[0], host.creds[1]
	if first.Password == second.Password {
		t.Errorf("two pulls had the same relay password %q", first.Password)
	}
	for _, c := range host.creds {
		if len(c.Password) < 26 { // rand.Text: base32, 5 bits a character
			t.Errorf("relay password %q: shorter than 128 bits", c.Password)
		}
		if c.Password == reg.password || c.Username == reg.user {
			t.Errorf("the host was given the pod's registry credentials: %+v", c)
		}
		if strings.Contains(logs.String(), c.Password) {
			t.Errorf("the relay password is in the log:\n%s", logs.String())
		}
	}
	for name := range host.names {
		if strings.Contains(name, first.Password) || strings.Contains(name, second.Password) {
			t.Errorf("host image name %q holds the relay password", name)
		}
	}
}

// exposingHost is a host whose sshd would bind the forward beyond loopback.
type exposingHost struct{}

func (exposingHost) ListenLoopback(context.Context) (net.Listener, error) {
	return nil, errExposed
}

var errExposed = errors.New("the host's sshd bound the forward to 0.0.0.0:40000 (GatewayPorts yes?)")

// A host that cannot keep the relay on its loopback gets no pull: the error
// says why, and its podman is never asked.
func TestPullRefusedWhenTheHostExposesTheRelay(t *testing.T) {
	reg := newFakeRegistry()
	reg.image("team/app", "1.0", "layer one")
	up := httptest.NewServer(reg)
	defer up.Close()
	host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), names: map[string]bool{}}
	_, err := Pull(context.Background(), Request{
		Image: strings.TrimPrefix(up.URL, "http://") + "/team/app:1.0", Credentials: &Credentials{Username: reg.user, Password: reg.password},
		Host: exposingHost{}, Podman: host, SystemContext: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue},
	})
	if !errors.Is(err, errExposed) || !strings.Contains(err.Error(), "GatewayPorts") {
		t.Fatalf("error %v, want the host's refusal", err)
	}
	if len(host.creds) != 0 {
		t.Errorf("the host's podman pulled from an exposed relay")
	}
}
