package portal

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/testutil"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/remote-build-nodes/rbn/internal/spdyconn"
	"github.com/remote-build-nodes/rbn/internal/testcert"
)

// kubeletNode is a Node whose kubelet API is at addr.
func kubeletNode(t testing.TB, name, addr string) *corev1.Node {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: host}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(p)
	return n
}

// kubeletServer is a kubelet API serving port-forwards with pf over TLS;
// it records the Authorization header of each request.
func kubeletServer(t testing.TB, pf vkapi.PortForwardHandlerFunc) (*httptest.Server, chan string) {
	t.Helper()
	auth := make(chan string, 10)
	r := mux.NewRouter()
	fwd := vkapi.HandlePortForward(pf)
	r.Handle("/portForward/{namespace}/{pod}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		auth <- req.Header.Get("Authorization")
		fwd(w, req)
	}))
	srv := httptest.NewTLSServer(r)
	t.Cleanup(srv.Close)
	return srv, auth
}

// caOf is the PEM of srv's certificate, its own authority.
func caOf(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func TestKubeletPortForwarderRelaysThroughTheNodesKubeletAPI(t *testing.T) {
	srv, auth := kubeletServer(t, func(_ context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
		defer stream.Close()
		in, err := io.ReadAll(stream)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stream, "%s/%s:%d got %s", namespace, pod, port, in)
		return err
	})
	nodes := fake.NewClientset(kubeletNode(t, "rbn-host-1", srv.Listener.Addr().String()))
	api := &rest.Config{Host: "https://apiserver.invalid", BearerToken: "portal-token",
		TLSClientConfig: rest.TLSClientConfig{CAData: caOf(srv), ServerName: "kubernetes.default.svc"}}
	f, err := NewKubeletPortForwarder(KubeletClientConfig(api, ""), nodes.CoreV1())
	if err != nil {
		t.Fatal(err)
	}
	r := NewRelay(f, NewMetrics())
	target := Target{Pod: Pod{Namespace: "ns", Name: "a", Node: "rbn-host-1"}, Port: 22}
	client, done := serve(t, r, target)
	if _, err := io.WriteString(client, "hello"); err != nil {
		t.Fatal(err)
	}
	_ = client.CloseWrite()
	got, err := io.ReadAll(client)
	if want := "ns/a:22 got hello"; err != nil || string(got) != want {
		t.Errorf("client read %q, %v; want %q", got, err, want)
	}
	wait(t, done, "Serve returns after the pod's side ended")
	if got := <-auth; got != "Bearer portal-token" {
		t.Errorf("the kubelet API saw Authorization %q, want the portal's token", got)
	}
}

func TestKubeletPortForwarderRefuses(t *testing.T) {
	srv, _ := kubeletServer(t, func(context.Context, string, string, int32, io.ReadWriteCloser) error { return nil })
	otherFile, _, _ := testcert.SelfSigned(t) // another authority
	other, err := os.ReadFile(otherFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Listener.Addr().String()
	noIP := kubeletNode(t, "no-ip", addr)
	noIP.Status.Addresses = noIP.Status.Addresses[:1]
	noPort := kubeletNode(t, "no-port", addr)
	noPort.Status.DaemonEndpoints.KubeletEndpoint.Port = 0
	nodes := fake.NewClientset(kubeletNode(t, "ok", addr), noIP, noPort)
	dial := func(ca []byte, pod Pod) error {
		f, err := NewKubeletPortForwarder(&rest.Config{BearerToken: "t", TLSClientConfig: rest.TLSClientConfig{CAData: ca}}, nodes.CoreV1())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := f.Dial(pod)
		if err == nil {
			_ = conn.Close()
		}
		return err
	}
	for _, tc := range []struct {
		name string
		ca   []byte
		pod  Pod
		want string
	}{
		{"no node named", caOf(srv), Pod{Namespace: "ns", Name: "a"}, "names no node"},
		{"unknown node", caOf(srv), Pod{Namespace: "ns", Name: "a", Node: "gone"}, `"gone" not found`},
		{"no InternalIP", caOf(srv), Pod{Namespace: "ns", Name: "a", Node: "no-ip"}, "no InternalIP"},
		{"no port", caOf(srv), Pod{Namespace: "ns", Name: "a", Node: "no-port"}, "no kubelet port"},
		{"a certificate of another authority", other, Pod{Namespace: "ns", Name: "a", Node: "ok"}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := dial(tc.ca, tc.pod)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ns/a") {
				t.Errorf("Dial: %v, want an error naming the pod and %q", err, tc.want)
			}
		})
	}
	if _, err := NewKubeletPortForwarder(&rest.Config{TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, nodes.CoreV1()); err == nil {
		t.Error("an unverified kubelet transport was accepted")
	}
}

func TestKubeletClientConfig(t *testing.T) {
	api := &rest.Config{Host: "https://10.0.0.1", APIPath: "/api", BearerTokenFile: "/var/run/token",
		TLSClientConfig: rest.TLSClientConfig{CAFile: "/var/run/ca.crt", ServerName: "kubernetes.default.svc"}}
	got := KubeletClientConfig(api, "")
	if got.Host != "" || got.APIPath != "" || got.ServerName != "" || got.CAFile != "/var/run/ca.crt" || got.BearerTokenFile != "/var/run/token" {
		t.Errorf("KubeletClientConfig(api, \"\") = %+v: want api's credentials and authority, no host or server name", got)
	}
	if got := KubeletClientConfig(api, "/etc/kubelet-ca.crt"); got.CAFile != "/etc/kubelet-ca.crt" || got.CAData != nil {
		t.Errorf("with a CA file: CAFile %q, CAData %q", got.CAFile, got.CAData)
	}
	if api.Host != "https://10.0.0.1" || api.ServerName != "kubernetes.default.svc" {
		t.Errorf("api changed: %+v", api)
	}
}

// dialFunc is a PortForwarder.
type dialFunc func(Pod) (httpstream.Connection, error)

func (f dialFunc) Dial(p Pod) (httpstream.Connection, error) { return f(p) }

// A kubelet API that refuses the portal (an older rbn-kubelet) is passed
// over for the apiserver's path, as a pod of no known node; any other
// failure is not.
func TestFallbackPortForwarderOnlyOnRefusal(t *testing.T) {
	refused := &spdyconn.UpgradeError{StatusCode: http.StatusForbidden, Message: "forbidden"}
	viaAPI := errors.New("through the apiserver")
	for _, tc := range []struct {
		name     string
		node     string
		primary  error
		wantErr  error
		fellBack float64
	}{
		{"kubelet API answers", "n", nil, nil, 0},
		{"kubelet API refuses the portal", "n", fmt.Errorf("port-forward to pod ns/a: %w", refused), viaAPI, 1},
		{"kubelet API unreachable", "n", errors.New("connection refused"), nil, 0},
		{"endpoint names no node", "", errors.New("primary dialed"), viaAPI, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics()
			f := NewFallbackPortForwarder(
				dialFunc(func(Pod) (httpstream.Connection, error) { return nil, tc.primary }),
				dialFunc(func(Pod) (httpstream.Connection, error) { return nil, viaAPI }), m)
			_, err := f.Dial(Pod{Namespace: "ns", Name: "a", Node: tc.node})
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("Dial: %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && !errors.Is(err, tc.primary) && err != tc.primary:
				t.Errorf("Dial: %v, want the kubelet API's %v", err, tc.primary)
			}
			if got := testutil.ToFloat64(m.fallbacks); got != tc.fellBack {
				t.Errorf("fallbacks %v, want %v", got, tc.fellBack)
			}
		})
	}
}
