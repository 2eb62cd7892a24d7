package provider

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// testHost is a Host that was never run: not connected, no facts.
func testHost(t *testing.T) *Host {
	t.Helper()
	h, err := NewHost(testHostConfig(t, "127.0.1.1", 22))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Podman().Close() })
	return h
}

// testHostConfig configures a host at addr:port with a fresh key that its
// known_hosts line trusts.
func testHostConfig(t *testing.T, addr string, port int) HostConfig {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return HostConfig{
		Name: "node-1", PodmanSocket: "/run/podman/podman.sock",
		SSH: sshconn.Config{Host: addr, Port: port, User: "root", PrivateKey: pem.EncodeToMemory(block),
			KnownHosts: []byte(addr + " " + string(ssh.MarshalAuthorizedKey(sshPub)))},
	}
}

// virtual-kubelet's status callback blocks for good once its node
// controller has stopped: Run must still return when its context ends.
func TestNodeProviderRunReturnsWhileTheCallbackBlocks(t *testing.T) {
	np := NewNodeProvider(NodeConfig{
		Name: "node-1", Spec: &rbnv1.RemoteBuildNodeSpec{Address: "127.0.1.1", Port: 22},
		Host: testHost(t),
	})
	called := make(chan struct{})
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	np.NotifyNodeStatus(context.Background(), func(*corev1.Node) {
		close(called)
		<-block
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := np.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("the callback was never called")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended while the callback blocked")
	}
}
