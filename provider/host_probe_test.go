package provider

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

// fakePodman answers the podman API calls a Host's probe makes, on a unix
// socket, each endpoint with the status the test sets.
type fakePodman struct {
	mu         sync.Mutex
	ping, info int            // status codes of /_ping and /libpod/info
	calls      map[string]int // by endpoint
}

func (f *fakePodman) set(ping, info int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ping, f.info = ping, info
}

func (f *fakePodman) called(endpoint string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[endpoint]
}

func (f *fakePodman) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	endpoint := r.URL.Path[strings.LastIndex(r.URL.Path, "/"):]
	f.calls[endpoint]++
	ping, info := f.ping, f.info
	f.mu.Unlock()
	w.Header().Set("Libpod-API-Version", "4.3.1")
	fail := func(code int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"cause":"test","message":"%s failed","response":%d}`, endpoint, code)
	}
	switch endpoint {
	case "/_ping":
		if ping != http.StatusOK {
			fail(ping)
			return
		}
		fmt.Fprint(w, "OK")
	case "/info":
		if info != http.StatusOK {
			fail(info)
			return
		}
		fmt.Fprint(w, `{"host":{"arch":"arm64","os":"linux","hostname":"builder"},"store":{"graphRoot":"/var/lib/containers/storage"},"version":{"Version":"4.3.1","APIVersion":"4.3.1"}}`)
	case "/json": // images
		fmt.Fprint(w, `[]`)
	default:
		fail(http.StatusNotFound)
	}
}

// probedHost is a Host whose podman client reaches f (its SSH connection
// is never up, so MemAvailable is not read: MemFree stands in).
func probedHost(t *testing.T, f *fakePodman) *Host {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "podman.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h := testHost(t)
	pc, err := podman.New(podman.Config{Name: "builder", Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	h.podman = pc
	return h
}

func TestProbeKeepsAReadyHostWhoseFactsCannotBeRefreshed(t *testing.T) {
	f := &fakePodman{calls: map[string]int{}}
	h := probedHost(t, f)
	ctx := context.Background()
	health := func() (bool, string) {
		_, hl := h.Snapshot()
		return hl.Ready, hl.Reason
	}
	// probeFails probes and wants it to fail with the host podman-unavailable.
	probeFails := func(withInfo bool, what string) {
		t.Helper()
		if h.probe(ctx, withInfo) {
			t.Fatalf("%s: probe succeeded", what)
		}
		if ready, reason := health(); ready || reason != ReasonPodmanUnavailable {
			t.Fatalf("%s: ready %t, reason %q; want not ready, %s", what, ready, reason, ReasonPodmanUnavailable)
		}
	}

	// No facts yet: a host whose `system info` fails cannot be a node.
	f.set(http.StatusOK, http.StatusInternalServerError)
	probeFails(true, "no facts")

	f.set(http.StatusOK, http.StatusOK)
	if !h.probe(ctx, true) {
		t.Fatal("probe failed with podman answering")
	}
	facts, _ := h.Snapshot()
	if ready, _ := health(); !ready || facts == nil || facts.Arch != "arm64" {
		t.Fatalf("after a good probe: ready %t, facts %+v", ready, facts)
	}

	// Facts known, podman answers its ping, `system info` fails (slow on
	// a busy host): the host stays ready with the facts it had.
	f.set(http.StatusOK, http.StatusInternalServerError)
	if !h.probe(ctx, true) {
		t.Fatal("a failed facts refresh turned the probe into a failure")
	}
	if ready, reason := health(); !ready {
		t.Fatalf("a failed facts refresh made the host not ready (%s)", reason)
	}
	if kept, _ := h.Snapshot(); kept != facts {
		t.Fatal("the last facts were not kept")
	}

	// Podman does not answer its ping: not ready, whatever the facts.
	f.set(http.StatusInternalServerError, http.StatusOK)
	probeFails(false, "ping failing")
	f.set(http.StatusOK, http.StatusOK)
	if !h.probe(ctx, false) {
		t.Fatal("health check failed with podman answering")
	}
	// The health check is the cheap /_ping, never the version endpoint
	// (which runs conmon, runc and the package manager on the host).
	if n := f.called("/version"); n != 0 {
		t.Errorf("the health check called /version %d times", n)
	}
}
