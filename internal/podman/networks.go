package podman

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/containers/podman/v5/pkg/bindings/network"
	nettypes "go.podman.io/common/libnetwork/types"
)

// Network is a bridge network on the host, as rbn makes and checks them.
type Network struct {
	Name string
	// Interface is the bridge's name on the host.
	Interface string
	// Subnet is the network's one IPv4 subnet; its first address is the
	// gateway.
	Subnet netip.Prefix
	Labels map[string]string
}

// EnsureNetwork creates the bridge network want unless one of its name
// exists, and returns the network the host has, which the caller compares
// with want: podman's name resolution is off (pods get their resolv.conf
// from rbn), and addresses come from podman's own IPAM, one per pod.
func (c *Client) EnsureNetwork(ctx context.Context, want Network) (_ *Network, err error) {
	cctx, end, err := c.call(ctx, opNetworkEnsure)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	if r, err := network.Inspect(cctx, want.Name, nil); err == nil {
		return fromPodmanNetwork(r.Network), nil
	} else if !errors.Is(wrap("", err), ErrNotFound) {
		return nil, wrap("inspect network "+want.Name, err)
	}
	gw := want.Subnet.Masked().Addr().Next()
	r, err := network.Create(cctx, &nettypes.Network{
		Name:             want.Name,
		Driver:           nettypes.BridgeNetworkDriver,
		NetworkInterface: want.Interface,
		Subnets: []nettypes.Subnet{{
			Subnet:  nettypes.IPNet{IPNet: net.IPNet{IP: want.Subnet.Addr().AsSlice(), Mask: net.CIDRMask(want.Subnet.Bits(), 32)}},
			Gateway: gw.AsSlice(),
		}},
		DNSEnabled:  false,
		Labels:      want.Labels,
		IPAMOptions: map[string]string{nettypes.Driver: nettypes.HostLocalIPAMDriver},
	})
	if err != nil {
		return nil, wrap("create network "+want.Name, err)
	}
	return fromPodmanNetwork(r), nil
}

// ListNetworks lists the networks carrying every given label.
func (c *Client) ListNetworks(ctx context.Context, labels map[string]string) (_ []Network, err error) {
	cctx, end, err := c.call(ctx, opNetworkList)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	list, err := network.List(cctx, new(network.ListOptions).WithFilters(labelFilter(labels)))
	if err != nil {
		return nil, wrap("list networks", err)
	}
	out := make([]Network, 0, len(list))
	for _, n := range list {
		out = append(out, *fromPodmanNetwork(n))
	}
	return out, nil
}

// RemoveNetwork removes a network no container uses; a missing one is not
// an error.
func (c *Client) RemoveNetwork(ctx context.Context, name string) (err error) {
	cctx, end, err := c.call(ctx, opNetworkRemove)
	if err != nil {
		return err
	}
	defer end(&err)
	reports, err := network.Remove(cctx, name, nil)
	if err == nil {
		for _, r := range reports {
			if r != nil && r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil && errors.Is(wrap("", err), ErrNotFound) {
		return nil
	}
	return wrap("remove network "+name, err)
}

func fromPodmanNetwork(n nettypes.Network) *Network {
	out := &Network{Name: n.Name, Interface: n.NetworkInterface, Labels: n.Labels}
	for _, s := range n.Subnets {
		if p, err := netip.ParsePrefix(s.Subnet.String()); err == nil && p.Addr().Is4() {
			out.Subnet = p
			break
		}
	}
	return out
}
