package pod

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	nettypes "go.podman.io/common/libnetwork/types"
	"go.podman.io/image/v5/manifest"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// KeepDir is where the infra container mounts the tmpfs volumes it holds.
const KeepDir = "/rbn-keep"

// ErrNoMountpoint: a subPath mount of a named volume whose host mountpoint the
// caller did not pass. The bind source cannot be built without it.
var ErrNoMountpoint = errors.New("no host mountpoint for volume")

// The specs below must work on podman 4.3 as well as 5.x: the 5.x bindings
// marshal them to JSON and a 4.3 service decodes them, ignoring fields it does
// not know. Hence every setting that matters uses a field 4.3 has, and
// nothing relies on a 5.x-only one (NamedVolume.SubPath, which 4.3 would
// drop silently, mounting the whole volume instead).

// ContainerSpec renders one run of a planned container (attempt is its
// restart count) as a podman container in the pod podID. mountpoints maps a
// named volume's K8sName to its directory on the host, for subPath mounts,
// and a hostPath volume's to its real path on the host, which is mounted
// instead of the path as written when present.
//
// Mounts: a whole EmptyDir or Files volume is a podman named volume. A
// subPath of one is a bind mount of mountpoint/subPath, and a HostPath volume
// a bind mount of the host path (/subPath): podman 4.3 cannot mount part of a
// named volume. The runtime must create a missing subPath directory before
// creating the container (the kubelet does), and must make sure the source
// does not traverse a symlink a container planted in a writable volume, as
// the bind is resolved on the host.
func ContainerSpec(c Container, p *Plan, attempt int, podID string, mountpoints map[string]string) (*specgen.SpecGenerator, error) {
	uid := p.Labels[LabelPodUID]
	if uid == "" {
		return nil, fmt.Errorf("container spec %s: plan has no %s label", c.K8sName, LabelPodUID)
	}
	s := specgen.NewSpecGenerator(c.Image, false)

	s.Name = ContainerName(types.UID(uid), c.K8sName, attempt)
	s.Pod = podID
	s.Labels = maps.Clone(p.Labels)
	s.Labels[LabelContainer] = c.K8sName
	s.Labels[LabelAttempt] = strconv.Itoa(attempt)
	if c.Init {
		s.Labels[LabelInit] = "true"
	}
	if c.StopSignal != "" {
		sig, err := SignalNumber(c.StopSignal)
		if err != nil {
			return nil, fmt.Errorf("container spec %s: lifecycle.stopSignal: %w", c.K8sName, err)
		}
		s.StopSignal = &sig
	}
	s.Entrypoint = c.Entrypoint
	s.Command = c.Command
	s.Env = maps.Clone(c.Env)
	s.Terminal = ptr.To(c.TTY)
	s.Stdin = ptr.To(c.Stdin)
	// Restarts are the runtime's, as new containers (attempt+1); podman must
	// not restart on its own, whatever the pod's or containers.conf default.
	s.RestartPolicy = "no"
	// Kubernetes runs /sbin/init like any other command; podman's systemd
	// mode would add tmpfs mounts and a stop signal the pod did not ask for.
	s.Systemd = "false"
	// Kubernetes ignores an image's HEALTHCHECK; podman would run it with
	// systemd timers on the host.
	s.HealthConfig = &manifest.Schema2HealthConfig{Test: []string{"NONE"}}

	s.WorkDir = c.WorkingDir
	if c.WorkingDir != "" {
		// Container runtimes under Kubernetes create a missing workingDir.
		s.CreateWorkingDir = ptr.To(true)
	}

	// Always explicit: the service fills unset ones from the host's
	// containers.conf, which may differ from Kubernetes' defaults.
	s.Privileged = ptr.To(c.Privileged)
	s.ReadOnlyFilesystem = ptr.To(c.ReadOnlyRootfs)
	if c.ReadOnlyRootfs {
		// podman would otherwise mount writable tmpfs on /tmp, /var/tmp and
		// /run of a read-only container; Kubernetes does not.
		s.ReadWriteTmpfs = ptr.To(false)
	}
	if c.NoNewPrivileges {
		s.NoNewPrivileges = ptr.To(true)
	}
	s.CapAdd = capNames(c.CapAdd)
	s.CapDrop = capNames(c.CapDrop)
	s.User = c.User
	for _, g := range c.Groups {
		s.Groups = append(s.Groups, strconv.FormatInt(g, 10))
	}
	// The RuntimeClass's handler, for every container of the pod; the infra
	// container keeps podman's default, as a pod's cannot be chosen.
	s.OCIRuntime = p.OCIRuntime
	if p.ContainerLogMaxBytes > 0 {
		// k8s-file, whatever the host's default: journald's size is the
		// host's journal's, not the container's.
		s.LogConfiguration = &specgen.LogConfig{Driver: "k8s-file", Size: p.ContainerLogMaxBytes}
	}
	s.ResourceLimits = resourceLimits(c.MemoryLimitBytes, c.CPUShares, c.CPUQuotaMicros, c.CPUPeriodMicros)

	vols := make(map[string]*Volume, len(p.Volumes))
	for i := range p.Volumes {
		vols[p.Volumes[i].K8sName] = &p.Volumes[i]
	}
	for _, m := range c.Mounts {
		vol, ok := vols[m.Volume]
		if !ok {
			return nil, fmt.Errorf("container spec %s: mount %s names volume %q, which the plan lacks", c.K8sName, m.MountPath, m.Volume)
		}
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		switch {
		case vol.Kind == VolumeHostPath:
			src := vol.HostPath
			if real := mountpoints[vol.K8sName]; real != "" {
				src = real // as resolved on the host and checked against the allowlist
			}
			s.Mounts = append(s.Mounts, bindMount(path.Join(src, m.SubPath), m.MountPath, mode))
		case m.SubPath == "":
			s.Volumes = append(s.Volumes, &specgen.NamedVolume{Name: vol.PodmanName, Dest: m.MountPath, Options: []string{mode}})
		default:
			mp, ok := mountpoints[vol.K8sName]
			if !ok || mp == "" {
				return nil, fmt.Errorf("container spec %s: subPath mount %s of volume %s: %w", c.K8sName, m.MountPath, vol.K8sName, ErrNoMountpoint)
			}
			s.Mounts = append(s.Mounts, bindMount(path.Join(mp, m.SubPath), m.MountPath, mode))
		}
	}
	if c.TerminationMessagePath != "" {
		// The run's own file, which the runtime creates before the
		// container (world-writable, as the kubelet's, for a container
		// of any user) and reads when it has ended.
		mp := mountpoints[TerminationLogs]
		if mp == "" {
			return nil, fmt.Errorf("container spec %s: terminationMessagePath: %w", c.K8sName, ErrNoMountpoint)
		}
		s.Mounts = append(s.Mounts, bindMount(path.Join(mp, TerminationFile(c.K8sName, attempt)), c.TerminationMessagePath, "rw"))
	}
	return s, nil
}

// podDNS gives the podman pod (its infra container, whose resolv.conf every
// container of the pod shares) the plan's resolv.conf, exactly. podman
// replaces the host's nameservers, searches and options with the ones it is
// given, but keeps the host's for a kind it is given none of; and podman
// before 5.6 (go.podman.io/common before 0.64) also appends the host's
// searches and options to given ones when it is given no nameserver. So the
// nameservers are always given (the plan always has some but for an invalid
// dnsPolicy None), and no searches is given as ".", no options as one empty
// option, which podman writes as no search and no options line. (On a
// network with DNS enabled, which podman's default network is not, podman 5
// would write aardvark-dns's address instead of the given servers.)
func podDNS(s *specgen.PodSpecGenerator, d *ResolvConf) {
	if d == nil {
		return
	}
	for _, ns := range d.Nameservers {
		if ip := net.ParseIP(ns); ip != nil { // Translate checked them
			s.DNSServer = append(s.DNSServer, ip)
		}
	}
	s.DNSSearch = slices.Clone(d.Searches)
	if len(s.DNSSearch) == 0 {
		s.DNSSearch = []string{"."}
	}
	s.DNSOption = slices.Clone(d.Options)
	if len(s.DNSOption) == 0 {
		s.DNSOption = []string{""}
	}
}

func bindMount(source, dest, mode string) spec.Mount {
	return spec.Mount{Type: "bind", Source: source, Destination: dest, Options: []string{"rbind", mode}}
}

// capNames spells capabilities as podman's own CLI passes them ("CAP_" +
// name); the bare Kubernetes spelling ("SYS_ADMIN") relies on the service
// normalizing it. "ALL" stays as it is.
func capNames(caps []string) []string {
	if len(caps) == 0 {
		return nil
	}
	out := make([]string, len(caps))
	for i, c := range caps {
		c = strings.ToUpper(c)
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out[i] = c
	}
	return out
}

// resourceLimits renders the enforced resources (of a container or of the
// pod's cgroup); nil when there are none.
func resourceLimits(memory int64, shares uint64, quota int64, period uint64) *spec.LinuxResources {
	var res spec.LinuxResources
	if memory > 0 {
		// Swap equal to the limit (memory+swap) means no swap, the kubelet's
		// default (NoSwap); podman would otherwise allow as much swap again.
		// Hosts without swap accounting drop it with a warning.
		res.Memory = &spec.LinuxMemory{Limit: ptr.To(memory), Swap: ptr.To(memory)}
	}
	if shares > 0 || quota > 0 {
		res.CPU = &spec.LinuxCPU{}
		if shares > 0 {
			res.CPU.Shares = ptr.To(shares)
		}
		if quota > 0 {
			res.CPU.Quota = ptr.To(quota)
			res.CPU.Period = ptr.To(period)
		}
	}
	if res.Memory == nil && res.CPU == nil {
		return nil
	}
	return &res
}

// PodSpec renders the podman pod of a plan. Its infra container shares the
// network, IPC and UTS namespaces as a Kubernetes pod sandbox does, and the
// PID namespace for shareProcessNamespace (its pause process is then PID 1,
// as the kubelet's sandbox's is), carries the pod's /etc/hosts entries,
// resolv.conf and sysctls, publishes the host ports, and holds the tmpfs volumes mounted so
// their content outlives each container. Note that podman lets every
// container of the pod inherit the infra's volumes, so they also appear,
// read-only, under KeepDir.
//
// podman sets a pod's sysctls on its infra container alone: they hold for
// every container because the ones the kubelet allows are of the network
// and IPC namespaces, which the containers join.
func PodSpec(p *Plan) *specgen.PodSpecGenerator {
	s := specgen.NewPodSpecGenerator()
	s.Name = p.PodName
	s.InfraName = p.InfraName()
	s.Hostname = p.Hostname
	s.Labels = maps.Clone(p.Labels)
	s.NoInfra = false
	s.SharedNamespaces = []string{"ipc", "net", "uts"}
	if p.ShareProcessNamespace {
		s.SharedNamespaces = []string{"ipc", "net", "pid", "uts"}
	}
	if r := p.Resources; r != nil {
		// The pod's cgroup (podman creates it under its cgroup parent,
		// with cgroupfs on cgroup v1 too, and puts every container of
		// the pod below it), as the kubelet's pod cgroup.
		s.ResourceLimits = resourceLimits(r.MemoryLimitBytes, r.CPUShares, r.CPUQuotaMicros, r.CPUPeriodMicros)
		if m := s.ResourceLimits.Memory; m != nil {
			// No memory+swap limit on the pod cgroup, as the kubelet's
			// (its containers have theirs): podman writes it to the pod
			// cgroup without checking that the host accounts swap, and
			// would fail the pod where it does not.
			m.Swap = nil
		}
	}
	if p.Network != "" {
		s.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
		s.Networks = map[string]nettypes.PerNetworkOptions{p.Network: {}}
	}
	s.HostAdd = slices.Clone(p.HostAliases)
	s.Sysctl = maps.Clone(p.Sysctls)
	podDNS(s, p.DNS)
	for _, hp := range p.HostPorts {
		s.PortMappings = append(s.PortMappings, nettypes.PortMapping{
			HostIP:        hp.HostIP,
			ContainerPort: uint16(hp.ContainerPort),
			HostPort:      uint16(hp.HostPort),
			Protocol:      hp.Protocol,
		})
	}
	for _, v := range p.Volumes {
		if v.Kind == VolumeEmptyDir && v.Tmpfs {
			s.Volumes = append(s.Volumes, &specgen.NamedVolume{Name: v.PodmanName, Dest: KeepDir + "/" + v.K8sName, Options: []string{"ro"}})
		}
	}
	return s
}
