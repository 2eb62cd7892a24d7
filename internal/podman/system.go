package podman

import (
	"context"
	"net/http"
	"strings"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/system"
)

// HostInfo is what the host says about itself through podman.
type HostInfo struct {
	Hostname      string
	Arch          string // GOARCH spelling: amd64, arm64, ...
	OS            string
	Kernel        string
	Distribution  string // e.g. "debian 12"
	PodmanVersion string
	APIVersion    string
	CPUs          int
	MemTotal      int64
	MemFree       int64
	// MemAvailable is the kernel's estimate of memory available without
	// swapping (free plus reclaimable caches), from the host's
	// /proc/meminfo: podman reports only MemFree. 0: unknown.
	MemAvailable int64
	// BootID is the host kernel's boot id (/proc/sys/kernel/random/boot_id):
	// another one means the host rebooted. "": unknown.
	BootID    string
	GraphRoot string
	// StorageTotal and StorageUsed describe the filesystem of the image and
	// container store (zero when the service does not report them).
	StorageTotal uint64
	StorageUsed  uint64
	// StorageAvailable is what of that filesystem is left to write. The
	// service reports the free blocks (f_bfree: StorageTotal-StorageUsed),
	// which Info gives; the kubelet counts nodefs.available as the blocks
	// available to unprivileged users (f_bavail), without those the
	// filesystem reserves for root, and the provider sets that from the
	// host (statfs of GraphRoot) when it can read it.
	StorageAvailable uint64
	CgroupManager    string
	// CgroupVersion is the host's cgroup version as podman names it
	// ("v1", hybrid hosts included, or "v2").
	CgroupVersion string
	// Rootless: the service runs as an unprivileged user (podman 4.3
	// reports it too, in host.security).
	Rootless   bool
	OCIRuntime string
	// OCIRuntimes are the OCI runtimes podman can run containers with, by
	// the name a container's spec gives (specgen's OCIRuntime): as far as
	// the API tells, which is the default runtime alone (host.ociRuntime).
	// The others podman's containers.conf configures ([engine.runtimes])
	// are not reported.
	OCIRuntimes []string
}

// Info reads host facts. It is slow (hundreds of ms): cache its result.
func (c *Client) Info(ctx context.Context) (_ *HostInfo, err error) {
	cctx, end, err := c.call(ctx, opInfo)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	info, err := system.Info(cctx, nil)
	if err != nil {
		return nil, wrap("system info", err)
	}
	h := &HostInfo{
		Hostname:      info.Host.Hostname,
		Arch:          info.Host.Arch,
		OS:            info.Host.OS,
		Kernel:        info.Host.Kernel,
		Distribution:  strings.TrimSpace(info.Host.Distribution.Distribution + " " + info.Host.Distribution.Version),
		CPUs:          info.Host.CPUs,
		MemTotal:      info.Host.MemTotal,
		MemFree:       info.Host.MemFree,
		CgroupManager: info.Host.CgroupManager,
		CgroupVersion: info.Host.CgroupsVersion,
		Rootless:      info.Host.Security.Rootless,
	}
	if info.Host.OCIRuntime != nil && info.Host.OCIRuntime.Name != "" {
		h.OCIRuntime = info.Host.OCIRuntime.Name
		h.OCIRuntimes = []string{h.OCIRuntime}
	}
	if info.Version.Version != "" {
		h.PodmanVersion = info.Version.Version
		h.APIVersion = info.Version.APIVersion
	}
	if info.Store != nil {
		h.GraphRoot = info.Store.GraphRoot
		h.StorageTotal = info.Store.GraphRootAllocated
		h.StorageUsed = info.Store.GraphRootUsed
		if h.StorageUsed < h.StorageTotal {
			h.StorageAvailable = h.StorageTotal - h.StorageUsed
		}
	}
	return h, nil
}

// Ping checks that the service answers, with its /_ping endpoint: the
// version endpoint runs conmon, the OCI runtime and the package manager
// to name their versions, and on a busy host took longer than the health
// check's deadline, so a podman that answered was taken for a dead one.
func (c *Client) Ping(ctx context.Context) (err error) {
	cctx, end, err := c.call(ctx, opPing)
	if err != nil {
		return err
	}
	defer end(&err)
	conn, err := bindings.GetClient(cctx)
	if err != nil {
		return wrap("ping", err)
	}
	resp, err := conn.DoRequest(cctx, nil, http.MethodGet, "/_ping", nil, nil)
	if err != nil {
		return wrap("ping", err)
	}
	defer resp.Body.Close()
	return wrap("ping", resp.Process(nil))
}
