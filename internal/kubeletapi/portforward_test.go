package kubeletapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// A port-forward reaches the port-forward handler of the pod's node. The
// forwarding streams call their handler with a context of their own, not
// the request's, which carries the node's handlers.
func TestPortForwardReachesTheNodesHandler(t *testing.T) {
	_, pods := podIndex(t, boundPod("ns", "a", "n1"))
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": {
		PortForward: func(_ context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
			defer stream.Close()
			_, err := fmt.Fprintf(stream, "%s/%s:%d", namespace, pod, port)
			return err
		},
	}}}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: &fakeAuth{node: "*"}}, "n1")

	rt, upgrader, err := spdy.RoundTripperFor(&rest.Config{BearerToken: "good", TLSClientConfig: rest.TLSClientConfig{CAFile: ts.caFile}})
	if err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", ts.shared), Path: "/portForward/ns/a"}
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatalf("port-forward upgrade: %v", err)
	}
	defer conn.Close()

	headers := http.Header{}
	headers.Set(corev1.PortHeader, "8080")
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	errStream, err := conn.CreateStream(headers)
	if err != nil {
		t.Fatal(err)
	}
	_ = errStream.Close() // nothing to send: the server writes failures here
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(data)
	if err != nil {
		t.Fatal(err)
	}
	failure, _ := io.ReadAll(errStream)
	if string(got) != "ns/a:8080" || len(failure) != 0 {
		t.Errorf("forwarded %q (error stream %q), want %q from n1's handler", got, failure, "ns/a:8080")
	}
}
