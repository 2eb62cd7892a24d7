package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/remote-build-nodes/rbn/internal/callstats"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// Each host's connection becomes its series; two connections to one host
// and user add up (one series each, never two with the same labels); the
// keepalive round trip is reported only while connected.
func TestSSHCollector(t *testing.T) {
	conns := func() []SSHConn {
		return []SSHConn{
			{Host: "10.0.0.1:22", User: "root", State: sshconn.State{Connected: true, RTT: 3 * time.Millisecond, Connects: 2, Losses: 1, Channels: 4,
				Failures: map[sshconn.Reason]uint64{sshconn.ReasonUnreachable: 4}}},
			{Host: "10.0.0.2:22", User: "root", State: sshconn.State{Connects: 1, Channels: 1,
				Failures: map[sshconn.Reason]uint64{sshconn.ReasonHostKeyMismatch: 1}}},
			{Host: "10.0.0.2:22", User: "root", State: sshconn.State{Connected: true, RTT: 5 * time.Millisecond, Connects: 1, Channels: 2}},
		}
	}
	want := `
# HELP rbn_ssh_channels_open SSH channels open to the build host for rbn-kubelet's work (podman API streams, commands, port-forwards, image relay connections); one that only grows is a leak.
# TYPE rbn_ssh_channels_open gauge
rbn_ssh_channels_open{host="10.0.0.1:22",user="root"} 4
rbn_ssh_channels_open{host="10.0.0.2:22",user="root"} 3
# HELP rbn_ssh_connect_failures_total SSH connection attempts to the build host that failed, by reason (SSHUnreachable, HostKeyMismatch, ...).
# TYPE rbn_ssh_connect_failures_total counter
rbn_ssh_connect_failures_total{host="10.0.0.1:22",reason="SSHUnreachable",user="root"} 4
rbn_ssh_connect_failures_total{host="10.0.0.2:22",reason="HostKeyMismatch",user="root"} 1
# HELP rbn_ssh_connection_up Whether rbn-kubelet's SSH connection to the build host is up (1) or not (0).
# TYPE rbn_ssh_connection_up gauge
rbn_ssh_connection_up{host="10.0.0.1:22",user="root"} 1
rbn_ssh_connection_up{host="10.0.0.2:22",user="root"} 1
# HELP rbn_ssh_connections_lost_total SSH connections to the build host lost once made (keepalive unanswered, closed by the peer).
# TYPE rbn_ssh_connections_lost_total counter
rbn_ssh_connections_lost_total{host="10.0.0.1:22",user="root"} 1
rbn_ssh_connections_lost_total{host="10.0.0.2:22",user="root"} 0
# HELP rbn_ssh_connects_total SSH connections made to the build host.
# TYPE rbn_ssh_connects_total counter
rbn_ssh_connects_total{host="10.0.0.1:22",user="root"} 2
rbn_ssh_connects_total{host="10.0.0.2:22",user="root"} 2
# HELP rbn_ssh_keepalive_rtt_seconds Round trip of the last answered SSH keepalive to the build host.
# TYPE rbn_ssh_keepalive_rtt_seconds gauge
rbn_ssh_keepalive_rtt_seconds{host="10.0.0.1:22",user="root"} 0.003
rbn_ssh_keepalive_rtt_seconds{host="10.0.0.2:22",user="root"} 0.005
`
	if err := testutil.CollectAndCompare(NewSSHCollector(conns), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(NewSSHCollector(func() []SSHConn { return nil })); n != 0 {
		t.Errorf("no connections: %d series, want none", n)
	}
}

type fakeTransfers map[s3relay.Direction]s3relay.DirectionStats

func (f fakeTransfers) Stats() map[s3relay.Direction]s3relay.DirectionStats { return f }

func TestTransferCollector(t *testing.T) {
	stats := fakeTransfers{
		s3relay.Upload:   {Succeeded: 3, Failed: 1, Attempts: 5, Bytes: 3 << 20, Duration: 1500 * time.Millisecond},
		s3relay.Download: {},
	}
	want := `
# HELP rbn_s3_transfer_bytes_total Bytes moved by the S3 transfers that succeeded.
# TYPE rbn_s3_transfer_bytes_total counter
rbn_s3_transfer_bytes_total{direction="download"} 0
rbn_s3_transfer_bytes_total{direction="upload"} 3.145728e+06
# HELP rbn_s3_transfers_total S3 transfers of pods' inputs (download) and outputs (upload) relayed by rbn-kubelet, by outcome.
# TYPE rbn_s3_transfers_total counter
rbn_s3_transfers_total{direction="download",result="failure"} 0
rbn_s3_transfers_total{direction="download",result="success"} 0
rbn_s3_transfers_total{direction="upload",result="failure"} 1
rbn_s3_transfers_total{direction="upload",result="success"} 3
# HELP rbn_s3_transfer_seconds_total Time spent in S3 transfers, succeeded or not (rate of bytes over rate of this: throughput).
# TYPE rbn_s3_transfer_seconds_total counter
rbn_s3_transfer_seconds_total{direction="download"} 0
rbn_s3_transfer_seconds_total{direction="upload"} 1.5
# HELP rbn_s3_transfer_attempts_total Attempts the S3 transfers made, retries included.
# TYPE rbn_s3_transfer_attempts_total counter
rbn_s3_transfer_attempts_total{direction="download"} 0
rbn_s3_transfer_attempts_total{direction="upload"} 5
`
	if err := testutil.CollectAndCompare(NewTransferCollector(stats), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// Each host's operations become series by result, and their time; two
// clients on one host add up (never two series with the same labels).
func TestPodmanCollector(t *testing.T) {
	type call struct {
		op   string
		res  callstats.Result
		took time.Duration
	}
	record := func(calls ...call) map[string]callstats.Op {
		var r callstats.Recorder
		for _, c := range calls {
			r.Record(c.op, c.res, c.took)
		}
		return r.Snapshot()
	}
	ms := time.Millisecond
	clients := func() []HostCalls {
		return []HostCalls{
			{Host: "10.0.0.1:22", Calls: record(
				call{"container_start", callstats.Success, 300 * ms}, call{"container_start", callstats.Success, 300 * ms},
				call{"container_start", callstats.Success, 300 * ms}, call{"container_start", callstats.Success, 300 * ms},
				call{"container_start", callstats.Error, 300 * ms},
				call{"container_inspect", callstats.Success, 20 * ms}, call{"container_inspect", callstats.NotFound, 60 * ms},
				call{"container_inspect", callstats.NotFound, 60 * ms}, call{"container_inspect", callstats.NotFound, 60 * ms},
			)},
			{Host: "10.0.0.2:22", Calls: record(
				call{"container_start", callstats.Error, 2 * time.Second}, call{"container_start", callstats.Error, 2 * time.Second},
			)},
			// Another podman socket on the first host.
			{Host: "10.0.0.1:22", Calls: record(call{"container_start", callstats.Success, 500 * ms})},
		}
	}
	// Bucket bounds in seconds, and a histogram's lines from the cumulative
	// count at each bound.
	bounds := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60"}
	histogram := func(labels string, sum string, count int, cumulative func(i int) int) string {
		var b strings.Builder
		for i, le := range bounds {
			fmt.Fprintf(&b, "rbn_podman_request_duration_seconds_bucket{%s,le=%q} %d\n", labels, le, cumulative(i))
		}
		fmt.Fprintf(&b, "rbn_podman_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", labels, count)
		fmt.Fprintf(&b, "rbn_podman_request_duration_seconds_sum{%s} %s\n", labels, sum)
		fmt.Fprintf(&b, "rbn_podman_request_duration_seconds_count{%s} %d\n", labels, count)
		return b.String()
	}
	from := func(first, n int) func(int) int {
		return func(i int) int {
			if i >= first {
				return n
			}
			return 0
		}
	}
	want := `
# HELP rbn_podman_request_duration_seconds Latency of calls to the build host's podman API, by operation, whatever their result. A stream's time is the time podman took to open it.
# TYPE rbn_podman_request_duration_seconds histogram
` + histogram(`host="10.0.0.1:22",operation="container_inspect"`, "0.2", 4, func(i int) int {
		// 20 ms in the 25 ms bucket, 3 x 60 ms in the 100 ms one.
		switch {
		case i >= 4:
			return 4
		case i >= 2:
			return 1
		}
		return 0
	}) + histogram(`host="10.0.0.1:22",operation="container_start"`, "2", 6, from(6, 6)) +
		histogram(`host="10.0.0.2:22",operation="container_start"`, "4", 2, from(8, 2)) + `# HELP rbn_podman_requests_total Calls rbn-kubelet made to the build host's podman API, by operation and result (success, error, not_found: an answer that the object does not exist). A call that opens a stream (events, logs, copy_from, attach, exec_start) counts once the stream is open.
# TYPE rbn_podman_requests_total counter
rbn_podman_requests_total{host="10.0.0.1:22",operation="container_inspect",result="error"} 0
rbn_podman_requests_total{host="10.0.0.1:22",operation="container_inspect",result="not_found"} 3
rbn_podman_requests_total{host="10.0.0.1:22",operation="container_inspect",result="success"} 1
rbn_podman_requests_total{host="10.0.0.1:22",operation="container_start",result="error"} 1
rbn_podman_requests_total{host="10.0.0.1:22",operation="container_start",result="not_found"} 0
rbn_podman_requests_total{host="10.0.0.1:22",operation="container_start",result="success"} 5
rbn_podman_requests_total{host="10.0.0.2:22",operation="container_start",result="error"} 2
rbn_podman_requests_total{host="10.0.0.2:22",operation="container_start",result="not_found"} 0
rbn_podman_requests_total{host="10.0.0.2:22",operation="container_start",result="success"} 0
`
	if err := testutil.CollectAndCompare(NewPodmanCollector(clients), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(NewPodmanCollector(func() []HostCalls { return nil })); n != 0 {
		t.Errorf("no clients: %d series, want none", n)
	}
}

// Each host's totals become its series; two entries for one address add up.
func TestHostWorkCollector(t *testing.T) {
	works := func() []HostWork {
		return []HostWork{
			{Host: "10.0.0.1:22", Sweeps: 10, SweepsFailed: 1, Pods: 2, Containers: 5, Volumes: 1, RelayPulls: 3, RelayFailed: 1, RelayBlobs: 4, RelayBytes: 1 << 20},
			{Host: "10.0.0.2:22", Sweeps: 3},
			{Host: "10.0.0.1:22", Sweeps: 4, Containers: 1, RelayPulls: 1, RelayBlobs: 1, RelayBytes: 10},
		}
	}
	want := `
# HELP rbn_image_relay_blobs_total Blobs (layers and configs) the image relay sent the build host in successful pulls; those the host had are not sent.
# TYPE rbn_image_relay_blobs_total counter
rbn_image_relay_blobs_total{host="10.0.0.1:22"} 5
rbn_image_relay_blobs_total{host="10.0.0.2:22"} 0
# HELP rbn_image_relay_bytes_total Bytes the image relay sent the build host in successful pulls.
# TYPE rbn_image_relay_bytes_total counter
rbn_image_relay_bytes_total{host="10.0.0.1:22"} 1.048586e+06
rbn_image_relay_bytes_total{host="10.0.0.2:22"} 0
# HELP rbn_image_relay_pulls_total Image pulls for the build host through rbn-kubelet's image relay (imagePull: ThroughKubelet), by result.
# TYPE rbn_image_relay_pulls_total counter
rbn_image_relay_pulls_total{host="10.0.0.1:22",result="error"} 1
rbn_image_relay_pulls_total{host="10.0.0.1:22",result="success"} 3
rbn_image_relay_pulls_total{host="10.0.0.2:22",result="error"} 0
rbn_image_relay_pulls_total{host="10.0.0.2:22",result="success"} 0
# HELP rbn_orphan_sweeps_total Sweeps of the build host for podman objects whose Kubernetes pod is gone, by result (error: some object could not be listed or removed; the next sweep tries again).
# TYPE rbn_orphan_sweeps_total counter
rbn_orphan_sweeps_total{host="10.0.0.1:22",result="error"} 1
rbn_orphan_sweeps_total{host="10.0.0.1:22",result="success"} 13
rbn_orphan_sweeps_total{host="10.0.0.2:22",result="error"} 0
rbn_orphan_sweeps_total{host="10.0.0.2:22",result="success"} 3
# HELP rbn_orphans_removed_total Podman objects the orphan sweeps removed from the build host, by kind (pod, container, volume): pods deleted while no replica served their node, leftovers of failed removals.
# TYPE rbn_orphans_removed_total counter
rbn_orphans_removed_total{host="10.0.0.1:22",kind="container"} 6
rbn_orphans_removed_total{host="10.0.0.1:22",kind="pod"} 2
rbn_orphans_removed_total{host="10.0.0.1:22",kind="volume"} 1
rbn_orphans_removed_total{host="10.0.0.2:22",kind="container"} 0
rbn_orphans_removed_total{host="10.0.0.2:22",kind="pod"} 0
rbn_orphans_removed_total{host="10.0.0.2:22",kind="volume"} 0
`
	if err := testutil.CollectAndCompare(NewHostWorkCollector(works), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestVolumeRootCollector(t *testing.T) {
	roots := func() []VolumeRoot {
		return []VolumeRoot{
			{Node: "build-1", Known: true, Size: 100 << 30, Available: 60 << 30, Volumes: 2, VolumesSize: 40 << 30, VolumesUsed: 1 << 30, OrphansRemoved: 1},
			// Not read yet: the sweep's counter only.
			{Node: "build-2"},
		}
	}
	want := `
# HELP rbn_host_volume_orphans_removed_total Volumes below the node's volume root that belonged to no PersistentVolume, removed by the sweep.
# TYPE rbn_host_volume_orphans_removed_total counter
rbn_host_volume_orphans_removed_total{node="build-1"} 1
rbn_host_volume_orphans_removed_total{node="build-2"} 0
# HELP rbn_host_volume_root_available_bytes Space free for unprivileged writes on the file system of the node's volume root.
# TYPE rbn_host_volume_root_available_bytes gauge
rbn_host_volume_root_available_bytes{node="build-1"} 6.4424509440e+10
# HELP rbn_host_volume_root_size_bytes Size of the file system of the node's volume root on its build host (spec.volumes.root).
# TYPE rbn_host_volume_root_size_bytes gauge
rbn_host_volume_root_size_bytes{node="build-1"} 1.073741824e+11
# HELP rbn_host_volumes Volumes of rbn.dev/host-local on the node's build host (their file system files; one being made may count twice).
# TYPE rbn_host_volumes gauge
rbn_host_volumes{node="build-1"} 2
# HELP rbn_host_volumes_size_bytes Sizes given to the node's volumes of rbn.dev/host-local, summed: the most they may take of the root's file system.
# TYPE rbn_host_volumes_size_bytes gauge
rbn_host_volumes_size_bytes{node="build-1"} 4.294967296e+10
# HELP rbn_host_volumes_used_bytes Disk space the node's volumes of rbn.dev/host-local hold on the root's file system.
# TYPE rbn_host_volumes_used_bytes gauge
rbn_host_volumes_used_bytes{node="build-1"} 1.073741824e+09
`
	if err := testutil.CollectAndCompare(NewVolumeRootCollector(roots), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(NewVolumeRootCollector(roots)); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestImageCollectionCollector(t *testing.T) {
	list := func() []ImageCollection {
		return []ImageCollection{
			{Node: "build-1", Removed: map[string]uint64{"space": 3, "age": 1}, Bytes: 512 << 20, Failures: 2, Evictions: 4},
			{Node: "build-2"},
		}
	}
	want := `
# HELP rbn_disk_pressure_evictions_total Pods of the node evicted because its build host's disk was under pressure (spec.diskPressure) and removing unused images did not relieve it.
# TYPE rbn_disk_pressure_evictions_total counter
rbn_disk_pressure_evictions_total{node="build-1"} 4
rbn_disk_pressure_evictions_total{node="build-2"} 0
# HELP rbn_image_gc_failures_total Image garbage collections of the node that failed or could not free what they had to (events FreeDiskSpaceFailed, ImageGCFailed).
# TYPE rbn_image_gc_failures_total counter
rbn_image_gc_failures_total{node="build-1"} 2
rbn_image_gc_failures_total{node="build-2"} 0
# HELP rbn_images_removed_bytes_total Sizes of the images the node's image garbage collection removed, summed (shared layers counted in each).
# TYPE rbn_images_removed_bytes_total counter
rbn_images_removed_bytes_total{node="build-1"} 5.36870912e+08
rbn_images_removed_bytes_total{node="build-2"} 0
# HELP rbn_images_removed_total Images the node's image garbage collection removed from its build host, by reason: space (the store above spec.imageGC.highThresholdPercent) or age (unused beyond maximumAge).
# TYPE rbn_images_removed_total counter
rbn_images_removed_total{node="build-1",reason="age"} 1
rbn_images_removed_total{node="build-1",reason="space"} 3
rbn_images_removed_total{node="build-2",reason="age"} 0
rbn_images_removed_total{node="build-2",reason="space"} 0
`
	if err := testutil.CollectAndCompare(NewImageCollectionCollector(list), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(NewImageCollectionCollector(list)); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestPodTimesCollector(t *testing.T) {
	histogram := func(seconds ...float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Buckets: []float64{0.1, 1, 10}})
		for _, s := range seconds {
			h.Observe(s)
		}
		return h
	}
	list := func() []PodTimes {
		return []PodTimes{
			{Node: "build-1", Stages: map[string]prometheus.Histogram{"config": histogram(0.05), "images": histogram(4)}, StatusLatency: histogram(0.02, 0.5)},
			{Node: "build-2", Stages: map[string]prometheus.Histogram{"config": histogram(), "images": histogram()}, StatusLatency: histogram()},
		}
	}
	want := `
# HELP rbn_pod_start_stage_duration_seconds Pods of the node that started, by stage of their start: config (up to the pod's translation, which waits for the objects and claims it names), sandbox (S3 inputs, pod network, volumes, infra container), images (pulls), containers (the rest up to the report of Running: init containers, creating and starting the containers). The stages of a start add up to its kubelet_pod_start_duration_seconds on the node's /metrics.
# TYPE rbn_pod_start_stage_duration_seconds histogram
rbn_pod_start_stage_duration_seconds_bucket{node="build-1",stage="config",le="0.1"} 1
rbn_pod_start_stage_duration_seconds_bucket{node="build-1",stage="config",le="1"} 1
rbn_pod_start_stage_duration_seconds_bucket{node="build-1",stage="config",le="10"} 1
rbn_pod_start_stage_duration_seconds_bucket{node="build-1",stage="config",le="+Inf"} 1
rbn_pod_start_stage_duration_seconds_sum{node="build-1",stage="config"} 0.05
rbn_pod_start_stage_duration_seconds_count{node="build-1",stage="config"} 1
rbn_pod_start_stage_duration_seconds_bucket{node="build-1",stage="images",le="0.1"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-1",stage="images",le="1"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-1",stage="images",le="10"} 1
rbn_pod_start_stage_duration_seconds_bucket{node="build-1",stage="images",le="+Inf"} 1
rbn_pod_start_stage_duration_seconds_sum{node="build-1",stage="images"} 4
rbn_pod_start_stage_duration_seconds_count{node="build-1",stage="images"} 1
rbn_pod_start_stage_duration_seconds_bucket{node="build-2",stage="config",le="0.1"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-2",stage="config",le="1"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-2",stage="config",le="10"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-2",stage="config",le="+Inf"} 0
rbn_pod_start_stage_duration_seconds_sum{node="build-2",stage="config"} 0
rbn_pod_start_stage_duration_seconds_count{node="build-2",stage="config"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-2",stage="images",le="0.1"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-2",stage="images",le="1"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-2",stage="images",le="10"} 0
rbn_pod_start_stage_duration_seconds_bucket{node="build-2",stage="images",le="+Inf"} 0
rbn_pod_start_stage_duration_seconds_sum{node="build-2",stage="images"} 0
rbn_pod_start_stage_duration_seconds_count{node="build-2",stage="images"} 0
# HELP rbn_pod_status_update_latency_seconds From a change of a pod's status that rbn-kubelet saw (a container started or ended, a probe's verdict) to the apiserver accepting the pod's status with it: virtual-kubelet's queue and the write. Changes written together count once, from the oldest.
# TYPE rbn_pod_status_update_latency_seconds histogram
rbn_pod_status_update_latency_seconds_bucket{node="build-1",le="0.1"} 1
rbn_pod_status_update_latency_seconds_bucket{node="build-1",le="1"} 2
rbn_pod_status_update_latency_seconds_bucket{node="build-1",le="10"} 2
rbn_pod_status_update_latency_seconds_bucket{node="build-1",le="+Inf"} 2
rbn_pod_status_update_latency_seconds_sum{node="build-1"} 0.52
rbn_pod_status_update_latency_seconds_count{node="build-1"} 2
rbn_pod_status_update_latency_seconds_bucket{node="build-2",le="0.1"} 0
rbn_pod_status_update_latency_seconds_bucket{node="build-2",le="1"} 0
rbn_pod_status_update_latency_seconds_bucket{node="build-2",le="10"} 0
rbn_pod_status_update_latency_seconds_bucket{node="build-2",le="+Inf"} 0
rbn_pod_status_update_latency_seconds_sum{node="build-2"} 0
rbn_pod_status_update_latency_seconds_count{node="build-2"} 0
`
	if err := testutil.CollectAndCompare(NewPodTimesCollector(list), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(NewPodTimesCollector(list)); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
