//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// registeredDiskPolicy restores a test host's image garbage collection and
// disk pressure as hack/register-hosts.sh registers them (off: the hosts
// share this machine's disk), undoing a test's pinned images.
const registeredDiskPolicy = `{"spec":{"diskPressure":{"availableBelow":"0%"},"imageGC":{"highThresholdPercent":100,"lowThresholdPercent":99,"pinned":null}}}`

// TestImageGarbageCollection: a build host's podman store above the node's
// spec.imageGC.highThresholdPercent loses its unused images, as a kubelet's
// node does, and keeps the image of a running pod and the pinned ones; when
// it cannot get down to lowThresholdPercent the Node says so with the
// kubelet's FreeDiskSpaceFailed warning, and rbn's metrics count the
// removals.
//
// The thresholds are set so that any host is above them (1% and 0%): the
// test's own images are the only unpinned ones, and every other image of
// the host is pinned, so the tests after this one find the host's store as
// it was, less the test's unused image.
func TestImageGarbageCollection(t *testing.T) {
	s := newStack(t)
	reg := s.registry(t)
	ns := s.Namespace(t)
	node := s.directX86Host(t)
	host := s.HostIndex(t, node)
	s.pullSecret(t, ns, "regcred", reg, reg["PASSWORD"])

	// The unused image: pulled by a pod that ran and went, with its
	// containers.
	s.runImageOnNode(t, ns, "pull-extra", node, reg["IMAGE_EXTRA"], "regcred", "true")
	done := s.Pod(t, ns, "pull-extra")
	s.Kubectl(t, "-n", ns, "delete", "pod", "pull-extra", "--wait=true")
	framework.Eventually(t, "pull-extra's containers gone from the host", time.Minute, func() (bool, string) {
		objs := s.HostObjects(t, host, string(done.UID))
		return len(objs) == 0, fmt.Sprint(objs)
	})
	// Earlier tests' pods on this host go with their namespaces, maybe
	// not yet: until then their containers keep the image in use.
	framework.Eventually(t, "no container on the host made from "+reg["IMAGE_EXTRA"], 2*time.Minute, func() (bool, string) {
		out := s.MustHostPodman(t, host, "ps", "-a", "--filter", "ancestor="+reg["IMAGE_EXTRA"], "--format", "{{.Names}}")
		return strings.TrimSpace(out) == "", out
	})
	// The image in use: a running pod's.
	s.imagePod(t, ns, "running", node, reg["IMAGE"], "regcred", `      command: [sleep, "3600"]`)
	s.WaitPodPhase(t, ns, "running", corev1.PodRunning, 3*time.Minute)

	images := s.hostImages(t, host)
	for _, ref := range []string{reg["IMAGE"], reg["IMAGE_EXTRA"]} {
		if !slices.Contains(images, ref) {
			t.Fatalf("%s not on the host before the collection: %v", ref, images)
		}
	}
	var pinned []string
	for _, ref := range images {
		if ref != reg["IMAGE"] && ref != reg["IMAGE_EXTRA"] {
			pinned = append(pinned, ref)
		}
	}
	policy, err := json.Marshal(map[string]any{"spec": map[string]any{"imageGC": map[string]any{
		"highThresholdPercent": 1, "lowThresholdPercent": 0, "minimumAge": "0s", "pinned": pinned,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	s.patchNodeSpec(t, node, string(policy), `{"spec":{"imageGC":{"highThresholdPercent":100,"lowThresholdPercent":99,"minimumAge":null,"pinned":null}}}`)

	framework.Eventually(t, reg["IMAGE_EXTRA"]+" removed from the host", 2*time.Minute, func() (bool, string) {
		now := s.hostImages(t, host)
		return !slices.Contains(now, reg["IMAGE_EXTRA"]), fmt.Sprint(now)
	})
	after := s.hostImages(t, host)
	for _, ref := range append([]string{reg["IMAGE"]}, pinned...) {
		if !slices.Contains(after, ref) {
			t.Errorf("%s removed: in use or pinned, it had to stay (left: %v)", ref, after)
		}
	}
	// 0% cannot be reached with the pinned images there.
	framework.Eventually(t, "FreeDiskSpaceFailed on node "+node, time.Minute, func() (bool, string) {
		for _, e := range s.Events(t, "", "Node", node) {
			if e.Reason == "FreeDiskSpaceFailed" && e.Type == corev1.EventTypeWarning && !e.LastTimestamp.Time.Before(before.Truncate(time.Second)) &&
				strings.Contains(e.Message, "Failed to garbage collect required amount of images") {
				return true, e.Message
			}
		}
		return false, "no FreeDiskSpaceFailed event since the patch"
	})
	if got := s.Pod(t, ns, "running"); got.Status.Phase != corev1.PodRunning {
		t.Errorf("the running pod is %s after the collection", got.Status.Phase)
	}
	if s.InCluster {
		framework.Eventually(t, "rbn_images_removed_total of "+node, time.Minute, func() (bool, string) {
			n := s.kubeletMetricSum(t, "rbn_images_removed_total", `node="`+node+`"`, `reason="space"`)
			return n >= 1, fmt.Sprint(n)
		})
	}
}

// TestContainerLogMaxSize: with the node's spec.containerLogMaxSize at 1Mi,
// a container that logs 3 MiB leaves a log file of at most 1 MiB on the
// host, and `kubectl logs` shows the end of what it wrote (conmon starts the
// file again when it is full).
func TestContainerLogMaxSize(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	node := s.directX86Host(t)
	host := s.HostIndex(t, node)
	s.patchNodeSpec(t, node, `{"spec":{"containerLogMaxSize":"1Mi"}}`, `{"spec":{"containerLogMaxSize":null}}`)

	// 30000 lines of 100 bytes, then a last line.
	p := framework.JobPod(ns, "chatty", node, nil, []string{"sh", "-c",
		`i=0; while [ $i -lt 30000 ]; do printf 'line %08d %s\n' $i 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234; i=$((i+1)); done; echo last-line`})
	onNodeName(p, node)
	if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := s.WaitPodPhase(t, ns, "chatty", corev1.PodSucceeded, 3*time.Minute)

	var ctr string
	for _, o := range s.HostObjects(t, host, string(done.UID)) {
		if name, ok := strings.CutPrefix(o, "ps:"); ok && strings.Contains(name, "-main-") {
			ctr = name
		}
	}
	if ctr == "" {
		t.Fatalf("no container of chatty on the host: %v", s.HostObjects(t, host, string(done.UID)))
	}
	logPath := strings.TrimSpace(s.MustHostPodman(t, host, "inspect", "--format", "{{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Path}}", ctr))
	driver, path, _ := strings.Cut(logPath, " ")
	if driver != "k8s-file" {
		t.Errorf("log driver %q, want k8s-file", driver)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the container's log file: %v", err)
	}
	if fi.Size() > 1<<20 {
		t.Errorf("log file %s is %d bytes, over 1 MiB", path, fi.Size())
	}
	logs := s.Kubectl(t, "-n", ns, "logs", "chatty")
	if !strings.HasSuffix(logs, "line 00029999 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234\nlast-line\n") {
		t.Errorf("kubectl logs does not end with the last lines written: ...%q", logs[max(0, len(logs)-200):])
	}
	if strings.Contains(logs, "line 00000000 ") || len(logs) > 1<<20 {
		t.Errorf("kubectl logs gave %d bytes starting %q: want at most 1 MiB, the first lines gone", len(logs), logs[:min(len(logs), 40)])
	}
	t.Logf("3 MB logged; %d bytes on the host, %d from kubectl logs", fi.Size(), len(logs))
}

// TestLocalStorageEviction: pods over their local storage limits are
// evicted as a kubelet evicts them: one whose disk emptyDir outgrows its
// sizeLimit, and one whose container writes past its
// limits.ephemeral-storage (a pod of one container: the pod's total,
// which the kubelet looks at first, says so). Each fails with reason
// Evicted, the kubelet's message and a DisruptionTarget condition, and its
// container no longer runs on the host.
func TestLocalStorageEviction(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	node := s.directX86Host(t)
	host := s.HostIndex(t, node)
	// 4 MiB written, then the container waits to be stopped.
	const write = "dd if=/dev/zero of=%s bs=1048576 count=4 2>/dev/null && sync && echo written && sleep 3600"
	scratch := framework.JobPod(ns, "scratch", "", nil, []string{"sh", "-c", fmt.Sprintf(write, "/scratch/fill")})
	scratch.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("1Mi"))}}}}
	scratch.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	rootfs := framework.JobPod(ns, "rootfs", "", nil, []string{"sh", "-c", fmt.Sprintf(write, "/fill")})
	rootfs.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("2Mi")}
	want := map[string]string{
		"scratch": `Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". `,
		"rootfs":  "Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. ",
	}
	signals := map[string]string{"scratch": "emptydirfs.limit", "rootfs": "ephemeralpodfs.limit"}
	for _, p := range []*corev1.Pod{scratch, rootfs} {
		onNodeName(p, node)
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, msg := range want {
		p := s.WaitPodPhase(t, ns, name, corev1.PodFailed, 3*time.Minute)
		if p.Status.Reason != "Evicted" || p.Status.Message != msg {
			t.Errorf("%s: reason %q message %q, want Evicted %q", name, p.Status.Reason, p.Status.Message, msg)
		}
		disruption := false
		for _, c := range p.Status.Conditions {
			disruption = disruption || c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "TerminationByKubelet"
		}
		if !disruption {
			t.Errorf("%s: no DisruptionTarget condition: %+v", name, p.Status.Conditions)
		}
		if got := s.Kubectl(t, "-n", ns, "logs", name); got != "written\n" {
			t.Errorf("%s logged %q, want written (evicted after the write)", name, got)
		}
		if !hasEvent(s.Events(t, ns, "Pod", name), "Evicted", msg) {
			t.Errorf("%s: no Evicted event saying %q", name, msg)
		}
		kubelet := s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics")
		if n, _, err := framework.MetricSum(kubelet, "kubelet_evictions", `eviction_signal="`+signals[name]+`"`); err != nil || n < 1 {
			t.Errorf("%s: kubelet_evictions{eviction_signal=%q} of %s = %v (%v), want at least 1", name, signals[name], node, n, err)
		}
		for _, o := range s.HostObjects(t, host, string(p.UID)) {
			// The infra container stays until the pod is deleted, as for
			// any ended pod.
			if ctr, ok := strings.CutPrefix(o, "ps:"); ok && strings.Contains(ctr, "-main-") {
				if st := s.HostContainerState(t, host, ctr); st == "running" {
					t.Errorf("%s: container %s still running on the host", name, ctr)
				}
			}
		}
	}
}

// TestDiskPressureEviction: a build host whose podman store has less
// available than the node's spec.diskPressure.availableBelow (set to 100%
// here, so that the host's disk counts as short) is under disk pressure as
// a kubelet's node: the Node's DiskPressure condition turns True and the
// node lifecycle controller taints it; the unused images go first, then the
// node's pods are evicted one at a time, in the kubelet's order: the pod
// using more local storage than it requested before the one within its
// request. Each fails with reason Evicted and the kubelet's message, and the
// Node gets the kubelet's EvictionThresholdMet warning. The containers of a
// pod that had ended before go from the host (its log with them, which
// `kubectl logs` says), its object stays Succeeded. Every image of the host
// is pinned, so the tests after this one find its store as it was.
func TestDiskPressureEviction(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	node := s.directX86Host(t)
	host := s.HostIndex(t, node)
	// over writes 8 MiB in its emptyDir and requested none; within asked
	// for 1Gi and writes nothing.
	over := framework.JobPod(ns, "over", "", nil, []string{"sh", "-c",
		"dd if=/dev/zero of=/work/fill bs=1048576 count=8 2>/dev/null && sync && echo written && sleep 3600"})
	over.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	over.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	within := framework.JobPod(ns, "within", "", nil, []string{"sh", "-c", "echo started && sleep 3600"})
	within.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")}
	for _, p := range []*corev1.Pod{over, within} {
		onNodeName(p, node)
		// Through the taint the node lifecycle controller sets, as the
		// pods already running on a node that comes under pressure.
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists})
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	done := framework.JobPod(ns, "done", "", nil, []string{"sh", "-c", "echo done"})
	onNodeName(done, node)
	if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), done, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	doneUID := string(s.WaitPodPhase(t, ns, "done", corev1.PodSucceeded, 3*time.Minute).UID)
	for _, name := range []string{"over", "within"} {
		s.WaitPodPhase(t, ns, name, corev1.PodRunning, 3*time.Minute)
	}
	framework.Eventually(t, "over wrote its 8 MiB", time.Minute, func() (bool, string) {
		out := s.Kubectl(t, "-n", ns, "logs", "over")
		return out == "written\n", out
	})

	policy, err := json.Marshal(map[string]any{"spec": map[string]any{
		"diskPressure": map[string]any{"availableBelow": "100%"},
		"imageGC":      map[string]any{"pinned": s.hostImages(t, host)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	t.Cleanup(func() {
		// After the restore (cleanups run last first): the node takes
		// pods again.
		s.waitDiskPressure(t, node, false)
	})
	s.patchNodeSpec(t, node, string(policy), registeredDiskPolicy)

	s.waitDiskPressure(t, node, true)
	const nodeLow = "The node was low on resource: ephemeral-storage. Threshold quantity: "
	evictedAt := map[string]time.Time{}
	for _, name := range []string{"over", "within"} {
		p := s.WaitPodPhase(t, ns, name, corev1.PodFailed, 3*time.Minute)
		if p.Status.Reason != "Evicted" || !strings.HasPrefix(p.Status.Message, nodeLow) {
			t.Errorf("%s: reason %q message %q, want Evicted %q...", name, p.Status.Reason, p.Status.Message, nodeLow)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "TerminationByKubelet" {
				evictedAt[name] = c.LastTransitionTime.Time
			}
		}
		if _, ok := evictedAt[name]; !ok {
			t.Errorf("%s: no DisruptionTarget condition: %+v", name, p.Status.Conditions)
		}
		if !hasEvent(s.Events(t, ns, "Pod", name), "Evicted", nodeLow) {
			t.Errorf("%s: no Evicted event", name)
		}
	}
	framework.Eventually(t, "the ended pod's containers and podman pod gone from the host", time.Minute, func() (bool, string) {
		var left []string
		for _, o := range s.HostObjects(t, host, doneUID) {
			if !strings.HasPrefix(o, "volume:") {
				left = append(left, o)
			}
		}
		return len(left) == 0, fmt.Sprint(left)
	})
	if p := s.Pod(t, ns, "done"); p.Status.Phase != corev1.PodSucceeded {
		t.Errorf("done is %s after its containers went, want Succeeded", p.Status.Phase)
	}
	if out, err := s.KubectlErr("-n", ns, "logs", "done"); err == nil || !strings.Contains(out+fmt.Sprint(err), "removed from the host with its log") {
		t.Errorf("kubectl logs done: %v %q, want an error saying its log was removed", err, out)
	}
	if over := s.Pod(t, ns, "over"); !strings.Contains(over.Status.Message, "Container main was using ") {
		t.Errorf("over's message does not name its container's use above its request: %q", over.Status.Message)
	}
	if within := s.Pod(t, ns, "within"); strings.Contains(within.Status.Message, "Container ") {
		t.Errorf("within's message names a container, though it used less than it requested: %q", within.Status.Message)
	}
	if !evictedAt["over"].Before(evictedAt["within"]) {
		t.Errorf("evicted over at %s, within at %s: want over (above its request) first", evictedAt["over"], evictedAt["within"])
	}
	thresholdMet := false
	for _, e := range s.Events(t, "", "Node", node) {
		thresholdMet = thresholdMet || e.Reason == "EvictionThresholdMet" && e.Type == corev1.EventTypeWarning &&
			!e.LastTimestamp.Time.Before(before.Truncate(time.Second))
	}
	if !thresholdMet {
		t.Error("no EvictionThresholdMet warning on the node since the patch")
	}
	// The node's kubelet /metrics, as Prometheus's kubelet scrape reads it.
	kubelet := s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics")
	if n, _, err := framework.MetricSum(kubelet, "kubelet_evictions", `eviction_signal="nodefs.available"`); err != nil || n < 2 {
		t.Errorf("kubelet_evictions{eviction_signal=\"nodefs.available\"} of %s = %v (%v), want at least 2", node, n, err)
	}
	if s.InCluster {
		framework.Eventually(t, "rbn_disk_pressure_evictions_total of "+node, time.Minute, func() (bool, string) {
			n := s.kubeletMetricSum(t, "rbn_disk_pressure_evictions_total", `node="`+node+`"`)
			return n >= 2, fmt.Sprint(n)
		})
	}
	t.Logf("evicted over at %s, within at %s", evictedAt["over"].Format(time.TimeOnly), evictedAt["within"].Format(time.TimeOnly))
}

// waitDiskPressure waits until node's DiskPressure condition is True and
// the node lifecycle controller's taint is on it (want), or the condition
// is False and the taint gone.
func (s *stack) waitDiskPressure(t *testing.T, node string, want bool) {
	t.Helper()
	framework.Eventually(t, fmt.Sprintf("%s: DiskPressure and its taint %v", node, want), 3*time.Minute, func() (bool, string) {
		n, err := s.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		status, msg, tainted := corev1.ConditionUnknown, "", false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeDiskPressure {
				status, msg = c.Status, c.Message
			}
		}
		for _, taint := range n.Spec.Taints {
			tainted = tainted || taint.Key == corev1.TaintNodeDiskPressure
		}
		wantStatus := corev1.ConditionFalse
		if want {
			wantStatus = corev1.ConditionTrue
		}
		return status == wantStatus && tainted == want, fmt.Sprintf("condition %s %q, tainted %v", status, msg, tainted)
	})
}

// storeSpace measures the file system of build host i's podman store (the
// test hosts' stores are on this machine's): the bytes available to
// unprivileged users, which the kubelet counts as nodefs.available and rbn
// too, and the free bytes, root's reserve with them, which podman reports.
func (s *stack) storeSpace(t *testing.T, i int) (avail, free uint64) {
	t.Helper()
	root := strings.TrimSpace(s.MustHostPodman(t, i, "info", "--format", "{{.Store.GraphRoot}}"))
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		t.Fatalf("statfs %s: %v", root, err)
	}
	return st.Bavail * uint64(st.Frsize), st.Bfree * uint64(st.Frsize)
}

// TestHostDiskFilled: a job fills its build host's disk past the node's
// threshold for real (it writes, the host's free space falls): the node
// reports DiskPressure, the job filling it is evicted as the kubelet
// evicts, its data leaves the host, and the pressure ends. The test hosts
// share this machine's file system, which must not be filled to the brim:
// the threshold is put 256 MiB under the host's available space at the
// start, and the job writes 512 MiB.
func TestHostDiskFilled(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	node := s.directX86Host(t)
	host := s.HostIndex(t, node)
	fault := framework.RecordFault(t, "host disk filled")
	fault.Jobs(1)
	fault.Orphans(1) // until the filler's data left the host

	avail, _ := s.storeSpace(t, host)
	threshold := int64(avail) - 256<<20
	policy, err := json.Marshal(map[string]any{"spec": map[string]any{
		"diskPressure": map[string]any{"availableBelow": fmt.Sprint(threshold)},
		// Images could give the space back first: all stay, so that it is the job's to give.
		"imageGC": map[string]any{"pinned": s.hostImages(t, host)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.waitDiskPressure(t, node, false) }) // after the restore: cleanups run last first
	s.patchNodeSpec(t, node, string(policy), registeredDiskPolicy)
	s.waitDiskPressure(t, node, false)

	filler := framework.JobPod(ns, "filler", "", nil, []string{"sh", "-c",
		"dd if=/dev/zero of=/work/fill bs=1048576 count=512 2>/dev/null; sync; echo written; sleep 3600"})
	filler.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	filler.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	onNodeName(filler, node)
	if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), filler, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	started := s.WaitPodPhase(t, ns, "filler", corev1.PodRunning, 3*time.Minute)
	filling := time.Now()
	s.waitDiskPressure(t, node, true)
	fault.Figure(fmt.Sprintf("DiskPressure %.1f s after the job started writing 512 MiB (threshold %d MiB available)", time.Since(filling).Seconds(), threshold>>20))
	p := s.WaitPodPhase(t, ns, "filler", corev1.PodFailed, 3*time.Minute)
	const nodeLow = "The node was low on resource: ephemeral-storage. Threshold quantity: "
	if p.Status.Reason != "Evicted" || !strings.HasPrefix(p.Status.Message, nodeLow) {
		t.Errorf("filler: reason %q message %q, want Evicted %q...", p.Status.Reason, p.Status.Message, nodeLow)
	}
	fault.Figure(fmt.Sprintf("the job evicted %.1f s after it started writing", time.Since(filling).Seconds()))
	s.waitDiskPressure(t, node, false)
	fault.Figure(fmt.Sprintf("DiskPressure over %.1f s after it started writing", time.Since(filling).Seconds()))
	framework.Eventually(t, "the filler's data gone from the host", time.Minute, func() (bool, string) {
		vol := "rbn-" + string(started.UID) + "-work"
		out, err := s.HostPodman(host, "volume", "inspect", "--format", "{{.Mountpoint}}", vol)
		if err != nil {
			// The volume itself went; any other failure is not an answer.
			return strings.Contains(out, "no such volume"), err.Error()
		}
		entries, err := os.ReadDir(strings.TrimSpace(out))
		if err != nil {
			return os.IsNotExist(err), err.Error()
		}
		return len(entries) == 0, fmt.Sprint(len(entries), " entries in ", out)
	})
	if !t.Failed() {
		fault.Orphans(0)
	}
}

// TestEndedPodEmptyDirReleased: what a pod wrote in its emptyDirs leaves
// the host once the pod has ended, as the kubelet tears an ended pod's
// volumes down: the disk one's directory and the Memory one's tmpfs (which
// the pod's infra container keeps mounted) are emptied, while the pod
// object, its container and its log stay.
func TestEndedPodEmptyDirReleased(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	node := s.directX86Host(t)
	host := s.HostIndex(t, node)
	p := framework.JobPod(ns, "writer", "", nil, []string{"sh", "-c",
		"dd if=/dev/zero of=/work/out bs=1048576 count=2 2>/dev/null && dd if=/dev/zero of=/ram/out bs=1048576 count=2 2>/dev/null && echo wrote"})
	p.Spec.Volumes = []corev1.Volume{
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "ram", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
	}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}, {Name: "ram", MountPath: "/ram"}}
	onNodeName(p, node)
	if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := s.WaitPodPhase(t, ns, "writer", corev1.PodSucceeded, 3*time.Minute)
	for _, name := range []string{"work", "ram"} {
		vol := "rbn-" + string(done.UID) + "-" + name
		dir := strings.TrimSpace(s.MustHostPodman(t, host, "volume", "inspect", "--format", "{{.Mountpoint}}", vol))
		if name == "ram" {
			// The tmpfs is what is emptied, not the directory below it.
			if out, err := exec.Command("findmnt", "-n", "-o", "FSTYPE", "--mountpoint", dir).Output(); strings.TrimSpace(string(out)) != "tmpfs" {
				t.Fatalf("%s: not a mounted tmpfs (findmnt: %q, %v)", dir, out, err)
			}
		}
		framework.Eventually(t, "the ended pod's emptyDir "+name+" emptied on the host", time.Minute, func() (bool, string) {
			entries, err := os.ReadDir(dir)
			if err != nil {
				return false, err.Error()
			}
			return len(entries) == 0, fmt.Sprint(len(entries), " entries in ", dir)
		})
		if objs := s.HostObjects(t, host, string(done.UID)); !slices.Contains(objs, "volume:"+vol) {
			t.Errorf("the volume %s itself went before the pod: %v", name, objs)
		}
	}
	if got := s.Kubectl(t, "-n", ns, "logs", "writer"); got != "wrote\n" {
		t.Errorf("kubectl logs writer: %q, want wrote", got)
	}
}

// patchNodeSpec merge-patches node's RemoteBuildNode and waits until rbn
// serves it with the change (the node's runtime restarts), then Ready; at
// the end, restore is applied the same way.
func (s *stack) patchNodeSpec(t *testing.T, node, patch, restore string) {
	t.Helper()
	apply := func(t *testing.T, patch string) {
		s.Kubectl(t, "patch", "remotebuildnode", node, "--type=merge", "-p", patch)
		framework.Eventually(t, node+" served with "+patch, 3*time.Minute, func() (bool, string) {
			r, ok := s.RBN(t, node)
			if !ok {
				return false, "RemoteBuildNode absent"
			}
			return r.Status.ObservedGeneration == r.Generation && r.Status.Phase == rbnv1.PhaseReady,
				fmt.Sprintf("generation %d, %+v", r.Generation, r.Status)
		})
		s.WaitNodeReady(t, node, corev1.ConditionTrue, nil, 3*time.Minute)
	}
	t.Cleanup(func() { apply(t, restore) })
	apply(t, patch)
}

// hostImages lists the references (repository:tag) of build host i's
// images, through the host's own podman.
func (s *stack) hostImages(t *testing.T, i int) []string {
	t.Helper()
	out := s.MustHostPodman(t, i, "images", "--format", "{{.Repository}}:{{.Tag}}")
	var refs []string
	for l := range strings.Lines(out) {
		if l = strings.TrimSpace(l); l != "" && l != "<none>:<none>" {
			refs = append(refs, l)
		}
	}
	return refs
}
