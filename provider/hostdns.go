package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// The build host's resolv.conf as podman reads it for a pod with a network
// namespace of its own (go.podman.io/common libnetwork/resolvconf,
// getDefaultResolvConf): /etc/resolv.conf, unless its only nameserver is a
// local stub resolver, which a pod cannot reach: then the file with the
// stub's upstream servers, when the host has it.
const hostResolvConf = "/etc/resolv.conf"

// stubUpstreams are those files, by the stub's address: systemd-resolved's
// and NetworkManager's dnsmasq's.
var stubUpstreams = map[string]string{
	"127.0.0.53": "/run/systemd/resolve/resolv.conf",
	"127.0.0.1":  "/run/NetworkManager/no-stub-resolv.conf",
}

// maxResolvConf bounds what is read of the file (the kubelet reads 10 MB,
// resolv.conf files are a few lines).
const maxResolvConf = 64 << 10

// hostDNS reads the host's resolv.conf, which a pod's dnsConfig is merged
// onto, as podman would. A missing file is an empty one, as for podman.
func (p *Pods) hostDNS(ctx context.Context) (*pod.ResolvConf, error) {
	read := func(path string) ([]byte, bool, error) {
		data, err := p.rt.FileTail(ctx, path, maxResolvConf)
		if errors.Is(err, podman.ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading the build host's %s: %w", path, err)
		}
		return data, true, nil
	}
	data, _, err := read(hostResolvConf)
	if err != nil {
		return nil, err
	}
	rc := pod.ParseResolvConf(data)
	if len(rc.Nameservers) == 1 {
		if upstream, ok := stubUpstreams[rc.Nameservers[0]]; ok {
			data, found, err := read(upstream)
			if err != nil {
				return nil, err
			}
			if found {
				rc = pod.ParseResolvConf(data)
			}
		}
	}
	return &rc, nil
}
