package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// networkRuntime is what a node's pod network needs of its host.
type networkRuntime interface {
	EnsureNetwork(ctx context.Context, want podman.Network) (*podman.Network, error)
	RemoveNetwork(ctx context.Context, name string) error
}

// PodNetworkName is the podman network, on its host, of a node's block of
// rbn's pod network.
func PodNetworkName(node string) string { return "rbn-" + node }

// podNetworkInterface is the host bridge of node's network: unique per node
// (hosts may serve several nodes) and within the 15 bytes of an interface
// name.
func podNetworkInterface(node string) string {
	sum := sha256.Sum256([]byte(node))
	return "rbnp" + hex.EncodeToString(sum[:4])
}

// ErrPodNetworkMismatch means the host has the node's network with another
// subnet than the node's block, and it could not be replaced.
var ErrPodNetworkMismatch = errors.New("pod network mismatch")

// podNetwork is a node's podman network on its host, whose subnet is the
// node's block: podman's IPAM gives each pod of the node an address of it.
// It is made when the node's first sandbox is set up, and checked again
// after a sandbox could not be created (someone removed it on the host).
type podNetwork struct {
	want podman.Network

	mu    sync.Mutex
	ready bool
}

func newPodNetwork(node string, block netip.Prefix) *podNetwork {
	if !block.IsValid() {
		return nil
	}
	return &podNetwork{want: podman.Network{
		Name: PodNetworkName(node), Interface: podNetworkInterface(node), Subnet: block,
		Labels: map[string]string{pod.LabelNode: node},
	}}
}

// name is the network pods join; "" without a pod network.
func (n *podNetwork) name() string {
	if n == nil {
		return ""
	}
	return n.want.Name
}

// ensure makes the network on the host unless it was made already. A
// network of its name with another subnet (the node's block changed) is
// replaced when no container uses it; otherwise it is ErrPodNetworkMismatch.
func (n *podNetwork) ensure(ctx context.Context, rt networkRuntime) error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ready {
		return nil
	}
	got, err := rt.EnsureNetwork(ctx, n.want)
	if err != nil {
		return fmt.Errorf("pod network %s: %w", n.want.Name, err)
	}
	if got.Subnet != n.want.Subnet {
		if err := rt.RemoveNetwork(ctx, got.Name); err != nil {
			return fmt.Errorf("%w: the host's network %s has subnet %s, the node's block is %s, and it cannot be replaced: %v",
				ErrPodNetworkMismatch, got.Name, got.Subnet, n.want.Subnet, err)
		}
		if got, err = rt.EnsureNetwork(ctx, n.want); err != nil {
			return fmt.Errorf("pod network %s: %w", n.want.Name, err)
		}
		if got.Subnet != n.want.Subnet {
			return fmt.Errorf("%w: the host made network %s with subnet %s, not %s", ErrPodNetworkMismatch, got.Name, got.Subnet, n.want.Subnet)
		}
	}
	n.ready = true
	return nil
}

// recheck makes the next ensure look at the host again.
func (n *podNetwork) recheck() {
	if n == nil {
		return
	}
	n.mu.Lock()
	n.ready = false
	n.mu.Unlock()
}
