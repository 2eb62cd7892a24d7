package metrics

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/remote-build-nodes/rbn/internal/callstats"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// SSHConn is one SSH connection as the collector sees it.
type SSHConn struct {
	Host, User string
	State      sshconn.State
}

// SSHConnections lists the build hosts' SSH connections at each scrape.
type SSHConnections func() []SSHConn

// PoolConnections lists the connections of an sshconn.Pool.
func PoolConnections(p *sshconn.Pool) SSHConnections {
	return func() []SSHConn {
		clients := p.Clients()
		out := make([]SSHConn, 0, len(clients))
		for _, c := range clients {
			out = append(out, SSHConn{Host: c.Addr(), User: c.User(), State: c.State()})
		}
		return out
	}
}

var (
	sshUp = prometheus.NewDesc(Namespace+"_ssh_connection_up",
		"Whether rbn-kubelet's SSH connection to the build host is up (1) or not (0).", []string{"host", "user"}, nil)
	sshConnects = prometheus.NewDesc(Namespace+"_ssh_connects_total",
		"SSH connections made to the build host.", []string{"host", "user"}, nil)
	sshFailures = prometheus.NewDesc(Namespace+"_ssh_connect_failures_total",
		"SSH connection attempts to the build host that failed, by reason (SSHUnreachable, HostKeyMismatch, ...).", []string{"host", "user", "reason"}, nil)
	sshLosses = prometheus.NewDesc(Namespace+"_ssh_connections_lost_total",
		"SSH connections to the build host lost once made (keepalive unanswered, closed by the peer).", []string{"host", "user"}, nil)
	sshRTT = prometheus.NewDesc(Namespace+"_ssh_keepalive_rtt_seconds",
		"Round trip of the last answered SSH keepalive to the build host.", []string{"host", "user"}, nil)
	sshChannels = prometheus.NewDesc(Namespace+"_ssh_channels_open",
		"SSH channels open to the build host for rbn-kubelet's work (podman API streams, commands, port-forwards, image relay connections); one that only grows is a leak.", []string{"host", "user"}, nil)
)

// sshCollector turns each SSH connection's state into series. Two
// connections to one host and user (RemoteBuildNodes naming the same host
// with different keys) add up, so that no series is reported twice.
type sshCollector struct{ conns SSHConnections }

// NewSSHCollector reports the connections conns lists.
func NewSSHCollector(conns SSHConnections) prometheus.Collector { return sshCollector{conns} }

func (sshCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sshUp, sshConnects, sshFailures, sshLosses, sshRTT, sshChannels} {
		ch <- d
	}
}

func (c sshCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ host, user string }
	type sums struct {
		up, connects, losses float64
		rtt, channels        float64
		failures             map[sshconn.Reason]float64
	}
	byKey := map[key]*sums{}
	for _, cn := range c.conns() {
		k := key{cn.Host, cn.User}
		s := byKey[k]
		if s == nil {
			s = &sums{failures: map[sshconn.Reason]float64{}}
			byKey[k] = s
		}
		st := cn.State
		if st.Connected {
			s.up++
			s.rtt = max(s.rtt, st.RTT.Seconds())
		}
		s.connects += float64(st.Connects)
		s.losses += float64(st.Losses)
		s.channels += float64(st.Channels)
		for r, n := range st.Failures {
			s.failures[r] += float64(n)
		}
	}
	for k, s := range byKey {
		ch <- prometheus.MustNewConstMetric(sshUp, prometheus.GaugeValue, min(s.up, 1), k.host, k.user)
		ch <- prometheus.MustNewConstMetric(sshConnects, prometheus.CounterValue, s.connects, k.host, k.user)
		ch <- prometheus.MustNewConstMetric(sshLosses, prometheus.CounterValue, s.losses, k.host, k.user)
		ch <- prometheus.MustNewConstMetric(sshChannels, prometheus.GaugeValue, s.channels, k.host, k.user)
		if s.up > 0 {
			ch <- prometheus.MustNewConstMetric(sshRTT, prometheus.GaugeValue, s.rtt, k.host, k.user)
		}
		reasons := make([]sshconn.Reason, 0, len(s.failures))
		for r := range s.failures {
			reasons = append(reasons, r)
		}
		slices.SortFunc(reasons, func(a, b sshconn.Reason) int { return cmp.Compare(a, b) })
		for _, r := range reasons {
			ch <- prometheus.MustNewConstMetric(sshFailures, prometheus.CounterValue, s.failures[r], k.host, k.user, string(r))
		}
	}
}

// TransferStats reports the S3 relay's totals at each scrape.
type TransferStats interface {
	Stats() map[s3relay.Direction]s3relay.DirectionStats
}

var (
	s3Transfers = prometheus.NewDesc(Namespace+"_s3_transfers_total",
		"S3 transfers of pods' inputs (download) and outputs (upload) relayed by rbn-kubelet, by outcome.", []string{"direction", "result"}, nil)
	s3Attempts = prometheus.NewDesc(Namespace+"_s3_transfer_attempts_total",
		"Attempts the S3 transfers made, retries included.", []string{"direction"}, nil)
	s3Bytes = prometheus.NewDesc(Namespace+"_s3_transfer_bytes_total",
		"Bytes moved by the S3 transfers that succeeded.", []string{"direction"}, nil)
	s3Seconds = prometheus.NewDesc(Namespace+"_s3_transfer_seconds_total",
		"Time spent in S3 transfers, succeeded or not (rate of bytes over rate of this: throughput).", []string{"direction"}, nil)
)

type transferCollector struct{ stats TransferStats }

// NewTransferCollector reports the totals of stats (an s3relay.Relay).
func NewTransferCollector(stats TransferStats) prometheus.Collector { return transferCollector{stats} }

func (transferCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s3Transfers, s3Attempts, s3Bytes, s3Seconds} {
		ch <- d
	}
}

func (c transferCollector) Collect(ch chan<- prometheus.Metric) {
	for d, st := range c.stats.Stats() {
		dir := string(d)
		ch <- prometheus.MustNewConstMetric(s3Transfers, prometheus.CounterValue, float64(st.Succeeded), dir, "success")
		ch <- prometheus.MustNewConstMetric(s3Transfers, prometheus.CounterValue, float64(st.Failed), dir, "failure")
		ch <- prometheus.MustNewConstMetric(s3Attempts, prometheus.CounterValue, float64(st.Attempts), dir)
		ch <- prometheus.MustNewConstMetric(s3Bytes, prometheus.CounterValue, float64(st.Bytes), dir)
		ch <- prometheus.MustNewConstMetric(s3Seconds, prometheus.CounterValue, st.Duration.Seconds(), dir)
	}
}

// HostCalls are one client's calls to a build host, as the collectors see
// them: a podman client's API calls, or the commands rbn-kubelet ran on
// the host over SSH.
type HostCalls struct {
	// Host is the build host's address, as the SSH series name it.
	Host string
	// Calls are the client's totals by operation (podman.Client.CallStats,
	// provider.Host.CommandStats).
	Calls map[string]callstats.Op
}

// HostCallLists lists the build hosts' clients at each scrape.
type HostCallLists func() []HostCalls

var (
	podmanRequests = prometheus.NewDesc(Namespace+"_podman_requests_total",
		"Calls rbn-kubelet made to the build host's podman API, by operation and result (success, error, not_found: an answer that the object does not exist). A call that opens a stream (events, logs, copy_from, attach, exec_start) counts once the stream is open.",
		[]string{"host", "operation", "result"}, nil)
	podmanSeconds = prometheus.NewDesc(Namespace+"_podman_request_duration_seconds",
		"Latency of calls to the build host's podman API, by operation, whatever their result. A stream's time is the time podman took to open it.",
		[]string{"host", "operation"}, nil)
	hostCommands = prometheus.NewDesc(Namespace+"_host_commands_total",
		"Commands rbn-kubelet ran on the build host over SSH outside pods, by operation (cgroup_stats: the read of the containers' cgroup files that replaces podman's stats call) and result.",
		[]string{"host", "operation", "result"}, nil)
	hostCommandSeconds = prometheus.NewDesc(Namespace+"_host_command_duration_seconds",
		"Latency of the commands rbn-kubelet ran on the build host over SSH outside pods, by operation, whatever their result.",
		[]string{"host", "operation"}, nil)
)

// callCollector turns clients' totals into a counter by result and a
// latency histogram. Two clients on one host (two podman sockets behind one
// address) add up, so that no series is reported twice.
type callCollector struct {
	total, seconds *prometheus.Desc
	clients        HostCallLists
}

// NewPodmanCollector reports the calls of the podman clients clients lists.
func NewPodmanCollector(clients HostCallLists) prometheus.Collector {
	return callCollector{podmanRequests, podmanSeconds, clients}
}

// NewHostCommandCollector reports the SSH commands clients lists.
func NewHostCommandCollector(clients HostCallLists) prometheus.Collector {
	return callCollector{hostCommands, hostCommandSeconds, clients}
}

func (c callCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.seconds
}

func (c callCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ host, op string }
	byKey := map[key]callstats.Op{}
	for _, cl := range c.clients() {
		for op, o := range cl.Calls {
			k := key{cl.Host, op}
			byKey[k] = byKey[k].Add(o)
		}
	}
	for k, o := range byKey {
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(o.Succeeded()), k.host, k.op, "success")
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(o.Errors), k.host, k.op, "error")
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(o.NotFound), k.host, k.op, "not_found")
		buckets := make(map[float64]uint64, len(callstats.Bounds))
		for i, n := range o.Cumulative() {
			buckets[callstats.Bounds[i].Seconds()] = n
		}
		ch <- prometheus.MustNewConstHistogram(c.seconds, o.Calls, o.Duration.Seconds(), buckets, k.host, k.op)
	}
}

// HostWork are a build host's totals of rbn's work on it
// (provider.SweepStats, provider.RelayStats).
type HostWork struct {
	// Host is the build host's address, as the SSH series name it.
	Host string
	// Orphan sweeps: run, failed, and the objects removed by kind.
	Sweeps, SweepsFailed      uint64
	Pods, Containers, Volumes uint64
	// Image pulls through rbn-kubelet's relay: asked, failed, and what the
	// successful ones sent.
	RelayPulls, RelayFailed, RelayBlobs, RelayBytes uint64
}

// HostWorks lists the build hosts' totals at each scrape.
type HostWorks func() []HostWork

var (
	orphanSweeps = prometheus.NewDesc(Namespace+"_orphan_sweeps_total",
		"Sweeps of the build host for podman objects whose Kubernetes pod is gone, by result (error: some object could not be listed or removed; the next sweep tries again).",
		[]string{"host", "result"}, nil)
	orphansRemoved = prometheus.NewDesc(Namespace+"_orphans_removed_total",
		"Podman objects the orphan sweeps removed from the build host, by kind (pod, container, volume): pods deleted while no replica served their node, leftovers of failed removals.",
		[]string{"host", "kind"}, nil)
	relayPulls = prometheus.NewDesc(Namespace+"_image_relay_pulls_total",
		"Image pulls for the build host through rbn-kubelet's image relay (imagePull: ThroughKubelet), by result.",
		[]string{"host", "result"}, nil)
	relayBlobs = prometheus.NewDesc(Namespace+"_image_relay_blobs_total",
		"Blobs (layers and configs) the image relay sent the build host in successful pulls; those the host had are not sent.",
		[]string{"host"}, nil)
	relayBytes = prometheus.NewDesc(Namespace+"_image_relay_bytes_total",
		"Bytes the image relay sent the build host in successful pulls.",
		[]string{"host"}, nil)
)

// hostWorkCollector turns the hosts' totals into series; two entries for
// one address add up.
type hostWorkCollector struct{ works HostWorks }

// NewHostWorkCollector reports the orphan sweeps and relayed pulls works lists.
func NewHostWorkCollector(works HostWorks) prometheus.Collector { return hostWorkCollector{works} }

func (hostWorkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{orphanSweeps, orphansRemoved, relayPulls, relayBlobs, relayBytes} {
		ch <- d
	}
}

func (c hostWorkCollector) Collect(ch chan<- prometheus.Metric) {
	byHost := map[string]*HostWork{}
	var hosts []string
	for _, h := range c.works() {
		sum := byHost[h.Host]
		if sum == nil {
			sum = &HostWork{Host: h.Host}
			byHost[h.Host] = sum
			hosts = append(hosts, h.Host)
		}
		sum.Sweeps += h.Sweeps
		sum.SweepsFailed += h.SweepsFailed
		sum.Pods += h.Pods
		sum.Containers += h.Containers
		sum.Volumes += h.Volumes
		sum.RelayPulls += h.RelayPulls
		sum.RelayFailed += h.RelayFailed
		sum.RelayBlobs += h.RelayBlobs
		sum.RelayBytes += h.RelayBytes
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, host := range hosts {
		s := byHost[host]
		counter(orphanSweeps, s.Sweeps-s.SweepsFailed, host, "success")
		counter(orphanSweeps, s.SweepsFailed, host, "error")
		counter(orphansRemoved, s.Pods, host, "pod")
		counter(orphansRemoved, s.Containers, host, "container")
		counter(orphansRemoved, s.Volumes, host, "volume")
		counter(relayPulls, s.RelayPulls-s.RelayFailed, host, "success")
		counter(relayPulls, s.RelayFailed, host, "error")
		counter(relayBlobs, s.RelayBlobs, host)
		counter(relayBytes, s.RelayBytes, host)
	}
}

// VolumeRoot is a served node's volume root on its build host, as last read
// (internal/hostvolume's Space), for the volumes of rbn.dev/host-local.
type VolumeRoot struct {
	Node string
	// Known: read at least once; the gauges are left out until then.
	Known bool
	// Size and Available are the root file system's; Volumes counts the
	// volumes' files, VolumesSize sums the sizes they were given and
	// VolumesUsed what they hold on the disk.
	Size, Available          int64
	Volumes                  int
	VolumesSize, VolumesUsed int64
	// OrphansRemoved counts the volumes of no PersistentVolume swept.
	OrphansRemoved uint64
}

// VolumeRoots lists the served nodes' volume roots at each scrape.
type VolumeRoots func() []VolumeRoot

var (
	volumeRootSize = prometheus.NewDesc(Namespace+"_host_volume_root_size_bytes",
		"Size of the file system of the node's volume root on its build host (spec.volumes.root).",
		[]string{"node"}, nil)
	volumeRootAvailable = prometheus.NewDesc(Namespace+"_host_volume_root_available_bytes",
		"Space free for unprivileged writes on the file system of the node's volume root.",
		[]string{"node"}, nil)
	hostVolumes = prometheus.NewDesc(Namespace+"_host_volumes",
		"Volumes of rbn.dev/host-local on the node's build host (their file system files; one being made may count twice).",
		[]string{"node"}, nil)
	hostVolumesSize = prometheus.NewDesc(Namespace+"_host_volumes_size_bytes",
		"Sizes given to the node's volumes of rbn.dev/host-local, summed: the most they may take of the root's file system.",
		[]string{"node"}, nil)
	hostVolumesUsed = prometheus.NewDesc(Namespace+"_host_volumes_used_bytes",
		"Disk space the node's volumes of rbn.dev/host-local hold on the root's file system.",
		[]string{"node"}, nil)
	hostVolumeOrphans = prometheus.NewDesc(Namespace+"_host_volume_orphans_removed_total",
		"Volumes below the node's volume root that belonged to no PersistentVolume, removed by the sweep.",
		[]string{"node"}, nil)
)

type volumeRootCollector struct{ roots VolumeRoots }

// NewVolumeRootCollector reports the volume roots roots lists.
func NewVolumeRootCollector(roots VolumeRoots) prometheus.Collector {
	return volumeRootCollector{roots}
}

func (volumeRootCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{volumeRootSize, volumeRootAvailable, hostVolumes, hostVolumesSize, hostVolumesUsed, hostVolumeOrphans} {
		ch <- d
	}
}

func (c volumeRootCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, node string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, node)
	}
	for _, r := range c.roots() {
		ch <- prometheus.MustNewConstMetric(hostVolumeOrphans, prometheus.CounterValue, float64(r.OrphansRemoved), r.Node)
		if !r.Known {
			continue
		}
		gauge(volumeRootSize, float64(r.Size), r.Node)
		gauge(volumeRootAvailable, float64(r.Available), r.Node)
		gauge(hostVolumes, float64(r.Volumes), r.Node)
		gauge(hostVolumesSize, float64(r.VolumesSize), r.Node)
		gauge(hostVolumesUsed, float64(r.VolumesUsed), r.Node)
	}
}

// ImageCollection is a node's image garbage collection's totals, and the
// evictions that follow it under disk pressure.
type ImageCollection struct {
	Node string
	// Removed counts the images removed by reason ("space", "age"); Bytes
	// sums their sizes; Failures counts the collections that failed or
	// could not free enough.
	Removed  map[string]uint64
	Bytes    uint64
	Failures uint64
	// Evictions counts the pods evicted because removing images did not
	// relieve the host's disk pressure.
	Evictions uint64
}

// ImageCollections lists the served nodes' image collections at each scrape.
type ImageCollections func() []ImageCollection

var (
	imagesRemoved = prometheus.NewDesc(Namespace+"_images_removed_total",
		"Images the node's image garbage collection removed from its build host, by reason: space (the store above spec.imageGC.highThresholdPercent) or age (unused beyond maximumAge).",
		[]string{"node", "reason"}, nil)
	imagesRemovedBytes = prometheus.NewDesc(Namespace+"_images_removed_bytes_total",
		"Sizes of the images the node's image garbage collection removed, summed (shared layers counted in each).",
		[]string{"node"}, nil)
	imageGCFailures = prometheus.NewDesc(Namespace+"_image_gc_failures_total",
		"Image garbage collections of the node that failed or could not free what they had to (events FreeDiskSpaceFailed, ImageGCFailed).",
		[]string{"node"}, nil)
	diskPressureEvictions = prometheus.NewDesc(Namespace+"_disk_pressure_evictions_total",
		"Pods of the node evicted because its build host's disk was under pressure (spec.diskPressure) and removing unused images did not relieve it.",
		[]string{"node"}, nil)
)

type imageCollectionCollector struct{ list ImageCollections }

// NewImageCollectionCollector reports the image collections list lists.
func NewImageCollectionCollector(list ImageCollections) prometheus.Collector {
	return imageCollectionCollector{list}
}

func (imageCollectionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{imagesRemoved, imagesRemovedBytes, imageGCFailures, diskPressureEvictions} {
		ch <- d
	}
}

func (c imageCollectionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, gc := range c.list() {
		for _, reason := range []string{"age", "space"} {
			ch <- prometheus.MustNewConstMetric(imagesRemoved, prometheus.CounterValue, float64(gc.Removed[reason]), gc.Node, reason)
		}
		ch <- prometheus.MustNewConstMetric(imagesRemovedBytes, prometheus.CounterValue, float64(gc.Bytes), gc.Node)
		ch <- prometheus.MustNewConstMetric(imageGCFailures, prometheus.CounterValue, float64(gc.Failures), gc.Node)
		ch <- prometheus.MustNewConstMetric(diskPressureEvictions, prometheus.CounterValue, float64(gc.Evictions), gc.Node)
	}
}

// PodTimes are a served node's pod timing histograms
// (provider.Pods.StartStages, provider.Pods.StatusLatency).
type PodTimes struct {
	Node string
	// Stages of the pods' starts, by stage.
	Stages        map[string]prometheus.Histogram
	StatusLatency prometheus.Histogram
}

// PodTimesList lists the served nodes' pod timings at each scrape.
type PodTimesList func() []PodTimes

var (
	podStartStage = prometheus.NewDesc(Namespace+"_pod_start_stage_duration_seconds",
		"Pods of the node that started, by stage of their start: config (up to the pod's translation, which waits for the objects and claims it names), sandbox (S3 inputs, pod network, volumes, infra container), images (pulls), containers (the rest up to the report of Running: init containers, creating and starting the containers). The stages of a start add up to its kubelet_pod_start_duration_seconds on the node's /metrics.",
		[]string{"node", "stage"}, nil)
	podStatusLatency = prometheus.NewDesc(Namespace+"_pod_status_update_latency_seconds",
		"From a change of a pod's status that rbn-kubelet saw (a container started or ended, a probe's verdict) to the apiserver accepting the pod's status with it: virtual-kubelet's queue and the write. Changes written together count once, from the oldest.",
		[]string{"node"}, nil)
)

type podTimesCollector struct{ list PodTimesList }

// NewPodTimesCollector reports the pod timings list lists.
func NewPodTimesCollector(list PodTimesList) prometheus.Collector {
	return podTimesCollector{list}
}

func (podTimesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podStartStage
	ch <- podStatusLatency
}

func (c podTimesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.list() {
		for stage, h := range n.Stages {
			ch <- constHistogram(podStartStage, h, n.Node, stage)
		}
		if n.StatusLatency != nil {
			ch <- constHistogram(podStatusLatency, n.StatusLatency, n.Node)
		}
	}
}

// constHistogram is h's current figures as a metric of desc.
func constHistogram(desc *prometheus.Desc, h prometheus.Histogram, labels ...string) prometheus.Metric {
	m := &dto.Metric{}
	if err := h.Write(m); err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	hist := m.GetHistogram()
	buckets := make(map[float64]uint64, len(hist.GetBucket()))
	for _, b := range hist.GetBucket() {
		buckets[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	return prometheus.MustNewConstHistogram(desc, hist.GetSampleCount(), hist.GetSampleSum(), buckets, labels...)
}
