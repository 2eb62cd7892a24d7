package portal

import (
	"context"
	"io"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/remote-build-nodes/rbn/internal/testnet"
)

// BenchmarkRelayToKubelet is the relay's own share of a copy through a
// Service (issue #14, docs/services.md): a client's bytes through Serve,
// over a port-forward connection (SPDY over TLS) to a kubelet API whose
// pod side discards them, all in this process. Its CPU profile is rbn's
// part of the path: rbn-portal's and, without the SSH leg, rbn-kubelet's.
//
//	go test -run '^$' -bench RelayToKubelet -cpuprofile cpu.out ./internal/portal/
func BenchmarkRelayToKubelet(b *testing.B) {
	const chunk = 32 << 10
	srv, _ := kubeletServer(b, func(_ context.Context, _, _ string, _ int32, stream io.ReadWriteCloser) error {
		defer stream.Close()
		_, err := io.Copy(io.Discard, stream)
		return err
	})
	nodes := fake.NewClientset(kubeletNode(b, "rbn-host-1", srv.Listener.Addr().String()))
	f, err := NewKubeletPortForwarder(&rest.Config{BearerToken: "t", TLSClientConfig: rest.TLSClientConfig{CAData: caOf(srv)}}, nodes.CoreV1())
	if err != nil {
		b.Fatal(err)
	}
	r := NewRelay(f, NewMetrics())
	target := Target{Pod: Pod{Namespace: "ns", Name: "a", Node: "rbn-host-1"}, Port: 22}
	r.Retain(map[Pod]bool{target.Pod: true})
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	client, accepted := testnet.TCPPair(b)
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(context.Background(), accepted, target) }()
	for range b.N {
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	_ = client.CloseWrite()
	_, _ = io.Copy(io.Discard, client)
	<-done
}
