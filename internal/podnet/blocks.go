// Package podnet hands each remote build node a block of the pod network
// rbn owns, so that every pod on a build host gets an address no other pod
// in the cluster holds: the node's block is the subnet of its podman
// network on the host, and podman's IPAM gives each pod one address of it.
//
// The blocks are recorded in one ConfigMap, written under optimistic
// concurrency: replicas that allocate for different nodes at once cannot
// hand out one block twice, since only one of their writes of the same
// object succeeds and the other allocates again.
package podnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"
)

// ConfigMapName is the ConfigMap, in rbn's namespace, that records each
// node's block: one key per node name, its block as the value.
const ConfigMapName = "rbn-pod-network"

// ErrExhausted means every block of the pod network is taken.
var ErrExhausted = errors.New("pod network exhausted")

// Config is the pod network and the size of each node's block.
type Config struct {
	CIDR netip.Prefix
	// BlockBits is the prefix length of each node's block.
	BlockBits int
}

// Validate checks that c describes IPv4 blocks of at least 4 addresses
// (network, gateway, one pod, broadcast) inside CIDR.
func (c Config) Validate() error {
	switch {
	case !c.CIDR.IsValid() || !c.CIDR.Addr().Is4():
		return fmt.Errorf("cidr %q: must be an IPv4 CIDR", c.CIDR)
	case c.CIDR.Masked() != c.CIDR:
		return fmt.Errorf("cidr %s: has host bits set (%s)", c.CIDR, c.CIDR.Masked())
	case c.BlockBits < c.CIDR.Bits() || c.BlockBits > 30:
		return fmt.Errorf("blockSize /%d: must be between the cidr's /%d and /30", c.BlockBits, c.CIDR.Bits())
	}
	return nil
}

// Contains says whether block is one of c's blocks.
func (c Config) Contains(block netip.Prefix) bool {
	return block.IsValid() && block.Bits() == c.BlockBits && block.Masked() == block && c.CIDR.Contains(block.Addr())
}

// NextFree returns the lowest block of c that overlaps none of taken.
func NextFree(c Config, taken []netip.Prefix) (netip.Prefix, error) {
	sorted := append([]netip.Prefix(nil), taken...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Addr().Less(sorted[j].Addr()) })
	size := uint64(1) << (32 - c.BlockBits)
	first := u32(c.CIDR.Addr())
	last := uint64(first) + uint64(1)<<(32-c.CIDR.Bits()) // one past the end
	for start := uint64(first); start+size <= last; start += size {
		b := netip.PrefixFrom(addr(uint32(start)), c.BlockBits)
		if !overlapsAny(b, sorted) {
			return b, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: all /%d blocks of %s are taken", ErrExhausted, c.BlockBits, c.CIDR)
}

func overlapsAny(b netip.Prefix, taken []netip.Prefix) bool {
	for _, t := range taken {
		if b.Overlaps(t) {
			return true
		}
	}
	return false
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Blocks allocates and releases nodes' blocks in the ConfigMap.
type Blocks struct {
	ConfigMaps typedcorev1.ConfigMapInterface // rbn's namespace
	Config     Config
}

// Block returns node's block, allocating the lowest free one if node has
// none (or has one that is no block of the configured network: the
// configuration changed).
func (b *Blocks) Block(ctx context.Context, node string) (netip.Prefix, error) {
	var block netip.Prefix
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := b.ConfigMaps.Get(ctx, ConfigMapName, metav1.GetOptions{})
		create := apierrors.IsNotFound(err)
		switch {
		case create:
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "rbn-kubelet"}}}
		case err != nil:
			return fmt.Errorf("get ConfigMap %s: %w", ConfigMapName, err)
		}
		if p, err := netip.ParsePrefix(cm.Data[node]); err == nil && b.Config.Contains(p) {
			block = p
			return nil
		}
		var taken []netip.Prefix
		for k, v := range cm.Data {
			if p, err := netip.ParsePrefix(v); err == nil && k != node {
				taken = append(taken, p)
			}
		}
		if block, err = NextFree(b.Config, taken); err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[node] = block.String()
		if create {
			_, err = b.ConfigMaps.Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Another replica created it first: start over from it.
				return apierrors.NewConflict(corev1.Resource("configmaps"), ConfigMapName, err)
			}
		} else {
			_, err = b.ConfigMaps.Update(ctx, cm, metav1.UpdateOptions{})
		}
		return err
	})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("pod network block of node %s: %w", node, err)
	}
	return block, nil
}

// Release gives node's block back; a node without one is not an error.
func (b *Blocks) Release(ctx context.Context, node string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := b.ConfigMaps.Get(ctx, ConfigMapName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		if _, ok := cm.Data[node]; !ok {
			return nil
		}
		delete(cm.Data, node)
		_, err = b.ConfigMaps.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("release pod network block of node %s: %w", node, err)
	}
	return nil
}
