package portal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"

	"github.com/remote-build-nodes/rbn/internal/spdyconn"
)

// KubeletPortForwarder dials the port-forward endpoint of the kubelet API
// of the pod's node itself (/portForward/{namespace}/{pod} at the address
// and port its Node advertises), where the apiserver would proxy the
// pods/portforward subresource to. rbn-kubelet serves it and lets a caller
// in with the same right the apiserver checks, create pods/portforward on
// the pod. So the apiserver is off the relay's data path: no TLS leg in
// and out of it for every byte, no session cut when it restarts, no load
// on it that grows with the bytes users copy.
//
// The Node is read at each dial: after a takeover it may advertise another
// address (without nodeServices, the serving replica's).
type KubeletPortForwarder struct {
	nodes corev1client.NodesGetter
	cfg   *rest.Config
}

// nodeReadTimeout bounds the read of a pod's Node before a dial.
const nodeReadTimeout = 10 * time.Second

// KubeletClientConfig is api's client configuration for kubelet APIs: the
// same credentials, the server verified against caFile, or against api's
// certificate authority (the cluster's, which signs kubelet serving
// certificates unless the cluster is set up otherwise) when caFile is
// empty, and by the address dialed.
func KubeletClientConfig(api *rest.Config, caFile string) *rest.Config {
	cfg := rest.CopyConfig(api)
	cfg.Host, cfg.APIPath = "", ""
	cfg.TLSClientConfig.ServerName = ""
	if caFile != "" {
		cfg.TLSClientConfig.CAFile, cfg.TLSClientConfig.CAData = caFile, nil
	}
	return cfg
}

// NewKubeletPortForwarder dials kubelet APIs with cfg (KubeletClientConfig)
// and reads Nodes through nodes.
func NewKubeletPortForwarder(cfg *rest.Config, nodes corev1client.NodesGetter) (*KubeletPortForwarder, error) {
	if cfg.TLSClientConfig.Insecure {
		return nil, errors.New("kubelet port-forward transport: an unverified kubelet API would see the caller's token")
	}
	if _, err := rest.TLSConfigFor(cfg); err != nil {
		return nil, fmt.Errorf("kubelet port-forward transport: %w", err)
	}
	return &KubeletPortForwarder{nodes: nodes, cfg: rest.CopyConfig(cfg)}, nil
}

// Dial opens a port-forward connection to pod on its node's kubelet API.
func (f *KubeletPortForwarder) Dial(pod Pod) (httpstream.Connection, error) {
	u, err := f.endpoint(pod)
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod, err)
	}
	conn, err := spdyconn.Dial(f.cfg, http.MethodPost, u, portforward.PortForwardProtocolV1Name)
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s at node %s's kubelet API %s: %w", pod, pod.Node, u.Host, err)
	}
	return conn, nil
}

// DialRaw connects to port of pod through rbn's raw port-forward on its
// node's kubelet API (spdyconn.RawPortForward): one TLS connection that
// carries the TCP connection's bytes as they are. It returns the
// connection and the reader of what the server sent after its answer; an
// error wrapping spdyconn.ErrRawUnsupported when the node's rbn-kubelet does
// not serve it (older than the portal).
func (f *KubeletPortForwarder) DialRaw(pod Pod, port int32) (net.Conn, io.Reader, error) {
	u, err := f.endpoint(pod)
	if err != nil {
		return nil, nil, fmt.Errorf("port-forward to pod %s: %w", pod, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rawDialTimeout)
	defer cancel()
	conn, r, err := spdyconn.DialRaw(ctx, f.cfg, u, port)
	if err != nil {
		return nil, nil, fmt.Errorf("port-forward to port %d of pod %s at node %s's kubelet API %s: %w", port, pod, pod.Node, u.Host, err)
	}
	return conn, r, nil
}

// rawDialTimeout bounds a raw port-forward's dial: the TCP connect, TLS
// handshake, and the server's connection to the pod's port (30 s at most).
const rawDialTimeout = 40 * time.Second

// endpoint is the URL of pod's port-forward on its node's kubelet API.
func (f *KubeletPortForwarder) endpoint(pod Pod) (*url.URL, error) {
	if pod.Node == "" {
		return nil, errors.New("its endpoint names no node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeReadTimeout)
	defer cancel()
	node, err := f.nodes.Nodes().Get(ctx, pod.Node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", pod.Node, err)
	}
	host, err := kubeletHost(node)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", pod.Node, err)
	}
	return &url.URL{Scheme: "https", Host: host, Path: "/portForward/" + pod.Namespace + "/" + pod.Name}, nil
}

// kubeletHost is where node's kubelet API is: its first InternalIP (the
// only address rbn's nodes advertise) and the port in its daemon endpoints.
func kubeletHost(node *corev1.Node) (string, error) {
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if port <= 0 || port > 65535 {
		return "", fmt.Errorf("no kubelet port in its status (daemonEndpoints.kubeletEndpoint.port %d)", port)
	}
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address != "" {
			return net.JoinHostPort(a.Address, strconv.Itoa(int(port))), nil
		}
	}
	return "", errors.New("no InternalIP in its status")
}

// FallbackPortForwarder dials through Primary (KubeletPortForwarder), and
// through Fallback (APIPortForwarder) when Primary's server refuses the
// portal (403): an rbn-kubelet older than the portal does not let in a
// caller with create pods/portforward yet, and while an upgrade rolls the
// portal may meet one. The apiserver checks the same right and proxies the
// request with its own credentials. A pod whose endpoint names no node
// goes through the apiserver too, which finds its node itself.
type FallbackPortForwarder struct {
	primary, fallback PortForwarder
	fallbacks         prometheus.Counter
}

// NewFallbackPortForwarder counts its fallbacks into m.
func NewFallbackPortForwarder(primary, fallback PortForwarder, m *Metrics) *FallbackPortForwarder {
	return &FallbackPortForwarder{primary: primary, fallback: fallback, fallbacks: m.fallbacks}
}

// DialRaw connects to port of pod through Primary's raw port-forward; a
// pod whose endpoint names no node is not served so (the apiserver's path
// is SPDY's).
func (f *FallbackPortForwarder) DialRaw(pod Pod, port int32) (net.Conn, io.Reader, error) {
	raw, ok := f.primary.(RawDialer)
	if pod.Node == "" || !ok {
		return nil, nil, spdyconn.ErrRawUnsupported
	}
	return raw.DialRaw(pod, port)
}

// Dial opens a port-forward connection to pod.
func (f *FallbackPortForwarder) Dial(pod Pod) (httpstream.Connection, error) {
	if pod.Node == "" {
		f.fallbacks.Inc()
		return f.fallback.Dial(pod)
	}
	conn, err := f.primary.Dial(pod)
	var ue *spdyconn.UpgradeError
	if err == nil || !errors.As(err, &ue) || ue.StatusCode != http.StatusForbidden {
		return conn, err
	}
	f.fallbacks.Inc()
	conn, ferr := f.fallback.Dial(pod)
	if ferr != nil {
		return nil, errors.Join(err, fmt.Errorf("through the apiserver: %w", ferr))
	}
	return conn, nil
}
