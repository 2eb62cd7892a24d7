package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/remote-build-nodes/rbn/internal/callstats"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/provider/node"
)

// Reasons for a host that is not ready, beside sshconn's.
const (
	ReasonPodmanUnavailable = "PodmanUnavailable"
	ReasonConnecting        = "Connecting"
)

// HostConfig configures a Host.
type HostConfig struct {
	Name string
	SSH  sshconn.Config
	// SSHClient, when set, is a connection to the host that someone else
	// runs (HostPool takes one from an sshconn.Pool); SSH then gives only
	// its timeouts. Nil: NewHost makes a connection of its own from SSH and
	// Run runs it.
	SSHClient    *sshconn.Client
	PodmanSocket string
	// How often podman is pinged, and its facts read. Defaults 10s and 30s,
	// as KubeletConfiguration's.
	HealthCheckInterval time.Duration
	InfoRefreshInterval time.Duration
	// PodmanRequestTimeout and PodmanImagePullTimeout bound the podman
	// calls (podman.Config's RequestTimeout and ImagePullTimeout). Zero:
	// their defaults.
	PodmanRequestTimeout   time.Duration
	PodmanImagePullTimeout time.Duration
	// ImagePullProgressDeadline cancels a relayed pull whose registry sends
	// nothing for that long (imagerelay.Request's ProgressDeadline). Zero:
	// no bound.
	ImagePullProgressDeadline time.Duration
	Clock                     clock.WithTicker
	Logger                    *slog.Logger
}

// Host is one build host: its SSH connection, its podman client and what was
// last learned about it. Run keeps it current.
type Host struct {
	cfg    HostConfig
	ssh    *sshconn.Client
	ownSSH bool // Run runs ssh
	podman *podman.Client
	// sampler reads the host's /proc while someone asks for its figures.
	sampler *hostSampler
	// containerStats shares the figures of the host's running containers
	// among its nodes and their stats endpoints: read by cgroups, or by
	// podman's stats call where cgroupLayout cannot read them.
	containerStats *containerStatsCache
	cgroups        *cgroupReader
	// containers, pods and volumes share lists of the host's podman
	// objects among its nodes' relists and sweeps (and the cgroup reader).
	containers *hostList[podman.ContainerSummary]
	pods       *hostList[podman.PodSummary]
	volumes    *hostList[podman.Volume]
	// podmanStats: the host's cgroups could not be read; podman's stats
	// call reads its figures from then on (guarded by mu).
	podmanStats bool

	mu      sync.Mutex
	info    *podman.HostInfo
	images  []string
	health  node.Health
	changed chan struct{}
	sweeps  SweepStats
	relays  RelayStats
}

// Images returns the image references last listed on the host.
func (h *Host) Images() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.images
}

// RefreshImages re-reads the host's image list (after a pull, say).
func (h *Host) RefreshImages(ctx context.Context) {
	refs, err := h.podman.ListImages(ctx)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if slices.Equal(refs, h.images) {
		return
	}
	h.images = refs
	close(h.changed)
	h.changed = make(chan struct{})
}

// NewHost validates cfg and prepares the connections; Run starts them.
func NewHost(cfg HostConfig) (*Host, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HealthCheckInterval <= 0 {
		cfg.HealthCheckInterval = 10 * time.Second
	}
	if cfg.InfoRefreshInterval <= 0 {
		cfg.InfoRefreshInterval = 30 * time.Second
	}
	sc := cfg.SSHClient
	if sc == nil {
		cfg.SSH.Clock = cfg.Clock
		cfg.SSH.Logger = cfg.Logger
		cfg.SSH.Interactive = true
		var err error
		if sc, err = sshconn.New(cfg.SSH); err != nil {
			return nil, err
		}
	}
	pc, err := podman.New(podman.Config{
		Name:             cfg.Name,
		Logger:           cfg.Logger,
		Clock:            cfg.Clock,
		RequestTimeout:   cfg.PodmanRequestTimeout,
		ImagePullTimeout: cfg.PodmanImagePullTimeout,
		Dial: func(ctx context.Context) (net.Conn, error) {
			return sc.Dial(ctx, "unix", cfg.PodmanSocket)
		},
	})
	if err != nil {
		return nil, err
	}
	h := &Host{
		cfg: cfg, ssh: sc, ownSSH: cfg.SSHClient == nil, podman: pc, changed: make(chan struct{}),
		health: node.Health{Reason: ReasonConnecting, Message: "connecting to " + sc.Addr(), Since: cfg.Clock.Now()},
	}
	h.sampler = newHostSampler(h, hostSampleInterval, cfg.Clock.Now, cfg.Logger)
	h.containers = newHostList(func(ctx context.Context) ([]podman.ContainerSummary, error) {
		return pc.ListContainers(ctx, nil)
	}, cfg.Clock.Now)
	h.pods = newHostList(func(ctx context.Context) ([]podman.PodSummary, error) {
		return pc.ListPods(ctx, nil)
	}, cfg.Clock.Now)
	h.volumes = newHostList(func(ctx context.Context) ([]podman.Volume, error) {
		return pc.ListVolumes(ctx, nil)
	}, cfg.Clock.Now)
	h.cgroups = newCgroupReader(sc.OutputTo, h.containers, cfg.Clock.Now)
	h.containerStats = newContainerStatsCache(h.readContainerStats, containerStatsMaxAge, cfg.Clock.Now)
	return h, nil
}

// errHostNotProbed: the host's facts have not been read yet.
var errHostNotProbed = errors.New("the build host's facts are not read yet")

// readContainerStats reads the figures of the host's running containers:
// from their cgroup files where cgroupLayout says where they are, else
// (and from the first time the files cannot be read on) with podman's
// stats call; before the host's facts are read, none.
func (h *Host) readContainerStats(ctx context.Context) ([]podman.ContainerStats, error) {
	h.mu.Lock()
	probed := h.info != nil
	l, ok := cgroupLayout(h.info)
	ok = ok && !h.podmanStats
	h.mu.Unlock()
	if !probed {
		// Where its figures are is not known yet (nor whether it answers).
		return nil, errHostNotProbed
	}
	if ok {
		stats, err := h.cgroups.read(ctx, l)
		if !errors.Is(err, errCgroupsUnreadable) {
			return stats, err
		}
		h.cfg.Logger.Warn("reading the host's container figures with podman's stats call from now on", "host", h.cfg.Name, "err", err)
		h.mu.Lock()
		h.podmanStats = true
		h.mu.Unlock()
	}
	return h.podman.Stats(ctx, nil)
}

// PodmanCallStats are the totals of the host's podman calls (Podman().CallStats()).
func (h *Host) PodmanCallStats() map[string]callstats.Op { return h.podman.CallStats() }

// CommandStats are the totals of the commands rbn-kubelet ran on the host
// over SSH outside pods (the cgroup reads), by operation.
func (h *Host) CommandStats() map[string]callstats.Op { return h.cgroups.calls.Snapshot() }

// RuntimeCallStats are the host's podman calls and its SSH commands
// together (their operations' names differ): what kubelet counts as its
// container runtime's operations.
func (h *Host) RuntimeCallStats() map[string]callstats.Op {
	out := h.podman.CallStats()
	maps.Copy(out, h.cgroups.calls.Snapshot())
	return out
}

// Podman is the host's podman client.
func (h *Host) Podman() *podman.Client { return h.podman }

// SSH is the host's SSH connection.
func (h *Host) SSH() *sshconn.Client { return h.ssh }

// Snapshot returns the last host facts (nil before the first contact) and health.
func (h *Host) Snapshot() (*podman.HostInfo, node.Health) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.info, h.health
}

// Changed returns a channel closed at the next change of facts or health.
func (h *Host) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

func (h *Host) update(info *podman.HostInfo, ready bool, reason, msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if info != nil {
		h.info = info
	}
	if ready != h.health.Ready || reason != h.health.Reason || msg != h.health.Message || info != nil {
		if ready != h.health.Ready {
			h.health.Since = h.cfg.Clock.Now()
			h.cfg.Logger.Info("host health changed", "host", h.cfg.Name, "ready", ready, "reason", reason, "message", msg)
		}
		h.health.Ready, h.health.Reason, h.health.Message = ready, reason, msg
		close(h.changed)
		h.changed = make(chan struct{})
	}
}

// Run keeps the connections up and the facts fresh until ctx ends, and
// returns nil then: a host that cannot be reached is its health, not a
// failure of Run.
func (h *Host) Run(ctx context.Context) error {
	defer h.podman.Close()
	defer h.sampler.stop()
	if h.ownSSH {
		sshDone := make(chan struct{})
		go func() { defer close(sshDone); h.ssh.Run(ctx) }()
		defer func() { <-sshDone }()
	}

	health := h.cfg.Clock.NewTicker(h.cfg.HealthCheckInterval)
	defer health.Stop()
	refresh := h.cfg.Clock.NewTicker(h.cfg.InfoRefreshInterval)
	defer refresh.Stop()

	connected := false
	for {
		sshChanged := h.ssh.Changed()
		st := h.ssh.State()
		switch {
		case !st.Connected && st.Err == nil:
			// First attempt still under way: stay Connecting.
		case !st.Connected:
			connected = false
			reason, msg := string(sshconn.ReasonOf(st.Err)), "ssh not connected"
			if st.Err != nil {
				msg = st.Err.Error()
			}
			h.update(nil, false, reason, msg)
		case !connected:
			// Fresh connection: ping podman and read facts.
			connected = h.probe(ctx, true)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sshChanged:
		case <-health.C():
			if connected {
				connected = h.probe(ctx, false)
			}
		case <-refresh.C():
			if connected {
				connected = h.probe(ctx, true)
			}
		}
	}
}

// probe checks podman (and reads facts when withInfo) and records the result.
// A failure leaves connected false so the next SSH change or tick probes again.
func (h *Host) probe(ctx context.Context, withInfo bool) bool {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.SSH.DialTimeout+10*time.Second)
	defer cancel()
	if !withInfo {
		if err := h.podman.Ping(ctx); err != nil {
			h.podmanFailed(err)
			return false
		}
		h.update(nil, true, "", "")
		return true
	}
	if err := h.podman.Connect(ctx); err != nil {
		h.podmanFailed(err)
		return false
	}
	info, err := h.podman.Info(ctx)
	if err != nil {
		// Connect pinged podman: it answers, and `system info` (hundreds of
		// ms of podman's work, more on a loaded host) was too slow or failed.
		// With facts known, keep them and the host ready until the next
		// refresh, rather than pause every pod of every node on the host.
		if known, _ := h.Snapshot(); known != nil && sshconn.ReasonOf(err) == "" {
			h.cfg.Logger.Warn("host facts not refreshed: keeping the last ones", "host", h.cfg.Name, "err", err)
			h.update(nil, true, "", "")
			return true
		}
		h.podmanFailed(err)
		return false
	}
	// Unknown (""/0): lost runs are not told apart from reboots, memory
	// pressure is judged from MemFree.
	var factsErr error
	if info.BootID, info.MemAvailable, factsErr = h.procFacts(ctx); factsErr != nil {
		h.cfg.Logger.Warn("host's boot id or MemAvailable unknown", "host", h.cfg.Name, "err", factsErr)
	}
	if info.GraphRoot != "" && info.StorageTotal > 0 {
		// Unknown: the free blocks podman reports, root's reserve with them.
		if avail, err := h.storageAvailable(ctx, info.GraphRoot); err != nil {
			h.cfg.Logger.Warn("podman store's space available to unprivileged users unknown: counting the free space", "host", h.cfg.Name, "err", err)
		} else {
			info.StorageAvailable = min(avail, info.StorageTotal)
		}
	}
	h.update(info, true, "", "")
	h.RefreshImages(ctx)
	return true
}

func (h *Host) podmanFailed(err error) {
	// A dead SSH link shows first as a failed podman call: say so.
	if r := sshconn.ReasonOf(err); r != "" {
		h.update(nil, false, string(r), err.Error())
		return
	}
	h.update(nil, false, ReasonPodmanUnavailable, "podman API at "+h.cfg.PodmanSocket+": "+err.Error())
}

// bootIDPath is the kernel's boot id: a random UUID made at every boot.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// procFacts reads the host's boot id and MemAvailable (from /proc/meminfo)
// with one command.
func (h *Host) procFacts(ctx context.Context) (bootID string, memAvailable int64, err error) {
	out, err := h.ssh.Output(ctx, "cat", bootIDPath, "/proc/meminfo")
	if err != nil {
		return "", 0, err
	}
	return parseProcFacts(out)
}

// storageAvailable reads the space of dir's filesystem available to
// unprivileged users (statfs f_bavail times f_frsize), as the kubelet counts
// nodefs.available.
func (h *Host) storageAvailable(ctx context.Context, dir string) (uint64, error) {
	out, err := h.ssh.Output(ctx, "stat", "-f", "-c", "%S %a", "--", dir)
	if err != nil {
		return 0, fmt.Errorf("stat -f %s: %w", dir, hostCommandError(err))
	}
	return parseStatfsAvailable(out)
}

// parseStatfsAvailable reads `stat -f -c '%S %a'`: the fundamental block
// size and the blocks available to unprivileged users.
func parseStatfsAvailable(out []byte) (uint64, error) {
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, fmt.Errorf("stat -f: %q is not a block size and a block count", out)
	}
	size, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || size == 0 {
		return 0, fmt.Errorf("stat -f: block size %q", f[0])
	}
	blocks, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat -f: available blocks %q", f[1])
	}
	if blocks > math.MaxUint64/size {
		return 0, fmt.Errorf("stat -f: %d blocks of %d bytes overflow", blocks, size)
	}
	return blocks * size, nil
}

// parseProcFacts splits `cat boot_id /proc/meminfo`: the boot id's line,
// then meminfo's.
func parseProcFacts(out []byte) (bootID string, memAvailable int64, err error) {
	first, meminfo, _ := strings.Cut(string(out), "\n")
	bootID = strings.TrimSpace(first)
	if len(bootID) != 36 || strings.Count(bootID, "-") != 4 {
		return "", 0, fmt.Errorf("%s: %q is not a boot id", bootIDPath, bootID)
	}
	memAvailable, err = parseMemAvailable([]byte(meminfo))
	return bootID, memAvailable, err
}

// parseMemAvailable finds MemAvailable in /proc/meminfo's text, in bytes.
func parseMemAvailable(meminfo []byte) (int64, error) {
	for line := range strings.Lines(string(meminfo)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "MemAvailable:" {
			continue
		}
		n, err := meminfoBytes(f)
		return int64(n), err
	}
	return 0, errors.New("/proc/meminfo: no MemAvailable (kernel older than 3.14)")
}

// ready reports the host usable for pod work.
func (h *Host) ready() bool {
	_, health := h.Snapshot()
	return health.Ready
}
