package provider

import (
	"context"
	"fmt"

	"github.com/remote-build-nodes/rbn/internal/refpool"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// HostPool shares one running Host among the RemoteBuildNodes that name the
// same build host (the same SSH connection and podman socket): one health
// poller, one reading of the host's facts and images, one podman client,
// whatever the number of nodes on it. Without it, a host serving N nodes
// answered N pings and N `system info` calls per period, which slowed its
// podman enough to turn the nodes NotReady in the scale benchmark.
type HostPool struct {
	ssh   *sshconn.Pool
	hosts *refpool.Pool[*Host]
}

// NewHostPool returns an empty pool whose hosts take their connections from ssh.
func NewHostPool(ssh *sshconn.Pool) *HostPool {
	return &HostPool{ssh: ssh, hosts: refpool.New[*Host]()}
}

// SSH is the pool of the hosts' SSH connections (for their metrics).
func (p *HostPool) SSH() *sshconn.Pool { return p.ssh }

// Acquire returns the running Host for cfg, starting it (and acquiring its
// SSH connection) when no node holds it, and the function that releases
// it; the last release stops the Host and releases its connection. A Host
// keeps the Name, Logger and Clock of the Acquire that started it: give ones
// that name no single node. cfg.SSHClient must be nil: the pool provides it.
func (p *HostPool) Acquire(cfg HostConfig) (*Host, func(), error) {
	if cfg.SSHClient != nil {
		return nil, nil, fmt.Errorf("host %s: HostPool provides the SSH connection, SSHClient must be nil", cfg.Name)
	}
	// As NewHost configures a connection of its own: the PTY session
	// against the Nagle stall, the host's logger and clock.
	cfg.SSH.Interactive = true
	if cfg.SSH.Logger == nil {
		cfg.SSH.Logger = cfg.Logger
	}
	if cfg.SSH.Clock == nil {
		cfg.SSH.Clock = cfg.Clock
	}
	key := fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s", sshconn.Key(cfg.SSH), cfg.PodmanSocket, cfg.HealthCheckInterval, cfg.InfoRefreshInterval,
		cfg.PodmanRequestTimeout, cfg.PodmanImagePullTimeout, cfg.ImagePullProgressDeadline)
	return p.hosts.Acquire(key, func() (*Host, func(context.Context), error) {
		sc, releaseSSH, err := p.ssh.Acquire(cfg.SSH)
		if err != nil {
			return nil, nil, err
		}
		cfg.SSHClient = sc
		h, err := NewHost(cfg)
		if err != nil {
			releaseSSH()
			return nil, nil, err
		}
		return h, func(ctx context.Context) {
			defer releaseSSH()
			if err := h.Run(ctx); err != nil {
				cfg.Logger.Error("host stopped", "host", cfg.Name, "err", err)
			}
		}, nil
	})
}

// Hosts returns the running Hosts, in no order (for their metrics: each
// one's address is SSH().Addr(), its podman calls Podman().CallStats()).
func (p *HostPool) Hosts() []*Host { return p.hosts.Values() }

// Len is the number of Hosts in use.
func (p *HostPool) Len() int { return p.hosts.Len() }
