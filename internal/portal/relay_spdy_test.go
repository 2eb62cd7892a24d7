package portal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/testutil"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// apiForwarder returns an APIPortForwarder whose apiserver is h.
func apiForwarder(t *testing.T, h http.Handler) *APIPortForwarder {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewAPIPortForwarder(cfg, client.CoreV1().RESTClient())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAPIPortForwarderDialsThePodsSubresource(t *testing.T) {
	type request struct{ method, path, protocol string }
	got := make(chan request, 1)
	f := apiForwarder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- request{r.Method, r.URL.Path, r.Header.Get("X-Stream-Protocol-Version")}
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	if _, err := f.Dial(Pod{Namespace: "ns", Name: "a"}); err == nil || !strings.Contains(err.Error(), "ns/a") {
		t.Errorf("Dial refused: %v, want an error naming the pod", err)
	}
	want := request{http.MethodPost, "/api/v1/namespaces/ns/pods/a/portforward", "portforward.k8s.io"}
	if r := <-got; r != want {
		t.Errorf("request %+v, want %+v", r, want)
	}
}

// spdyRelay returns a Relay dialing a real port-forward server (the
// kubelet side rbn-kubelet serves, at the apiserver's path) whose pods'
// ports are served by pf.
func spdyRelay(t *testing.T, pf vkapi.PortForwardHandlerFunc) (*Relay, *Metrics) {
	t.Helper()
	r := mux.NewRouter()
	r.Handle("/api/v1/namespaces/{namespace}/pods/{pod}/portforward", vkapi.HandlePortForward(pf))
	m := NewMetrics()
	return NewRelay(apiForwarder(t, r), m), m
}

func TestRelayOverSPDY(t *testing.T) {
	r, m := spdyRelay(t, func(_ context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
		defer stream.Close()
		in, err := io.ReadAll(stream) // up to the client's half-close
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stream, "%s/%s:%d got %s", namespace, pod, port, in)
		return err
	})
	r.Retain(map[Pod]bool{podA.Pod: true})
	for i := range 2 { // the second reuses the connection
		client, done := serve(t, r, podA)
		msg := fmt.Sprintf("hello %d", i)
		if _, err := io.WriteString(client, msg); err != nil {
			t.Fatal(err)
		}
		_ = client.CloseWrite()
		got, err := io.ReadAll(client)
		if want := "ns/a:22 got " + msg; err != nil || string(got) != want {
			t.Errorf("client read %q, %v; want %q", got, err, want)
		}
		wait(t, done, "Serve returns after the pod's side ended")
	}
	if got := testutil.ToFloat64(m.dials); got != 1 {
		t.Errorf("dials %v for two connections, want 1", got)
	}
}

func TestRelayOverSPDYReportsThePodsError(t *testing.T) {
	r, m := spdyRelay(t, func(context.Context, string, string, int32, io.ReadWriteCloser) error {
		return errors.New("dial tcp 100.96.1.2:22: connection refused")
	})
	client, done := serve(t, r, podA)
	wait(t, done, "Serve returns after the kubelet's error")
	if got, err := io.ReadAll(client); err != nil || len(got) != 0 {
		t.Errorf("client read %q, %v; want EOF", got, err)
	}
	if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonPortForward)); got != 1 {
		t.Errorf("failed{PortForward} %v, want 1", got)
	}
}
