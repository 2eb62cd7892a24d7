package controller

import (
	"context"
	"testing"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/provider"
)

// A standby replica keeps one host per node, the one its current
// configuration names, and lets it go with the node.
func TestWarmHostsFollowTheNodesConfiguration(t *testing.T) {
	pool := provider.NewHostPool(sshconn.NewPool())
	warm := newWarmHosts(pool)
	cfg := &config.KubeletConfiguration{}
	spec := func(port int32) *rbnv1.RemoteBuildNodeSpec {
		return rbnv1.Default(&rbnv1.RemoteBuildNodeSpec{Address: "127.0.0.1", Port: port, User: "build"})
	}
	key, kh := sshMaterialFor(t, "127.0.0.1:1")
	ctx := context.Background()

	if err := warm.keep("n1", "h1", hostConfig(ctx, cfg, spec(1), key, kh)); err != nil {
		t.Fatal(err)
	}
	if err := warm.keep("n1", "h1", hostConfig(ctx, cfg, spec(1), key, kh)); err != nil {
		t.Fatal(err)
	}
	if n := pool.Len(); n != 1 {
		t.Fatalf("%d hosts after keeping one node's twice, want 1", n)
	}
	// A second node on the same host shares it.
	if err := warm.keep("n2", "h1", hostConfig(ctx, cfg, spec(1), key, kh)); err != nil {
		t.Fatal(err)
	}
	if n := pool.Len(); n != 1 {
		t.Fatalf("%d hosts for two nodes of one host, want 1", n)
	}
	// n1 moves to another host: the first stays for n2.
	if err := warm.keep("n1", "h2", hostConfig(ctx, cfg, spec(2), key, kh)); err != nil {
		t.Fatal(err)
	}
	if n := pool.Len(); n != 2 {
		t.Fatalf("%d hosts after n1 moved, want 2", n)
	}
	// Unusable SSH material: an error, and nothing held for it.
	if err := warm.keep("n3", "h3", hostConfig(ctx, cfg, spec(3), []byte("not a key"), kh)); err == nil {
		t.Error("keep with an unparsable key: no error")
	}
	warm.drop("n2")
	if n := pool.Len(); n != 1 {
		t.Fatalf("%d hosts after dropping n2, want 1", n)
	}
	warm.dropAll()
	if n := pool.Len(); n != 0 {
		t.Fatalf("%d hosts after dropAll, want 0", n)
	}
}
