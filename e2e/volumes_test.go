//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/scheduler/server"
)

// hostLocalClass is the StorageClass manifests/storage ships.
const hostLocalClass = "rbn-host-local"

// provisionerFinalizer is sig-storage-lib-external-provisioner's, on the
// volumes it must delete.
const provisionerFinalizer = "external-provisioner.volume.kubernetes.io/finalizer"

// claim creates a PersistentVolumeClaim of class (nil: none named) for size.
func (s *stack) claim(t *testing.T, ns, name string, class *string, size string) *corev1.PersistentVolumeClaim {
	t.Helper()
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	c, err := s.Client.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), c, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// boundVolume waits for the claim to be bound and returns its volume.
func (s *stack) boundVolume(t *testing.T, ns, claim string) *corev1.PersistentVolume {
	t.Helper()
	ctx := context.Background()
	var pv *corev1.PersistentVolume
	framework.Eventually(t, "claim "+claim+" bound", 2*time.Minute, func() (bool, string) {
		c, err := s.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if c.Status.Phase != corev1.ClaimBound {
			return false, string(c.Status.Phase)
		}
		pv, err = s.Client.CoreV1().PersistentVolumes().Get(ctx, c.Spec.VolumeName, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return pv
}

// waitVolumeGone waits until the PersistentVolume's object is gone (its
// finalizer removed once its data left the host).
func (s *stack) waitVolumeGone(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	framework.Eventually(t, "persistentvolume "+name+" gone", timeout, func() (bool, string) {
		pv, err := s.Client.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return false, fmt.Sprintf("phase %s, finalizers %v", pv.Status.Phase, pv.Finalizers)
	})
}

// mountedAt says whether something is mounted at dir on this machine,
// whose mount table the local build hosts' volume roots share.
func mountedAt(t *testing.T, dir string) bool {
	t.Helper()
	err := exec.Command("findmnt", "--mountpoint", dir).Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); ok {
			return false
		}
		t.Fatal(err)
	}
	return true
}

// onNode is the node affinity of a volume on node's host: its
// rbn.dev/node label, as rbn's provisioner writes it.
func onNode(node string) *corev1.VolumeNodeAffinity {
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: rbnv1.LabelNode, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
	}}}}
}

// checkHostVolume checks that pv is a host-local volume of node, below the
// host's volume root, its file system mounted, and returns its directory.
func (s *stack) checkHostVolume(t *testing.T, pv *corev1.PersistentVolume, node string, hostIndex int) string {
	t.Helper()
	dir := pv.Annotations["rbn.dev/volume-dir"]
	root := filepath.Join(s.State, "hosts", fmt.Sprintf("host%d", hostIndex), "volumes")
	switch {
	case pv.Labels[rbnv1.LabelNode] != node:
		t.Fatalf("pv %s: label %s=%q, want %s", pv.Name, rbnv1.LabelNode, pv.Labels[rbnv1.LabelNode], node)
	case pv.Spec.Local == nil || pv.Spec.Local.Path != filepath.Join(dir, "data"):
		t.Fatalf("pv %s: source %+v, want local at %s/data", pv.Name, pv.Spec.PersistentVolumeSource, dir)
	case filepath.Dir(dir) != root:
		t.Fatalf("pv %s: volume dir %s, want one below %s", pv.Name, dir, root)
	case pv.Annotations["rbn.dev/volume-image"] != dir+".img":
		t.Fatalf("pv %s: image %q, want %s.img", pv.Name, pv.Annotations["rbn.dev/volume-image"], dir)
	case !equality.Semantic.DeepEqual(pv.Spec.NodeAffinity, onNode(node)):
		t.Fatalf("pv %s: node affinity %+v, want %s in [%s]", pv.Name, pv.Spec.NodeAffinity, rbnv1.LabelNode, node)
	}
	if !mountedAt(t, dir) {
		t.Fatalf("pv %s: nothing mounted at %s", pv.Name, dir)
	}
	return dir
}

// TestProvisionedVolumeImageJob runs an image-create-shaped Job with its
// work claim on a remote build node: the claim (of rbn's class, sized down
// from 300Gi) is provisioned on the host of the node the scheduler picked,
// as an ext4 file system of the claim's size mounted below the host's
// volume root; the job's data is there on the host while it runs, a write
// beyond the size fails in the container with ENOSPC; the Job completes;
// once the claim is deleted the volume's data, file system and
// PersistentVolume are gone.
func TestProvisionedVolumeImageJob(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	ns := s.Namespace(t)
	s.claim(t, ns, "image-work", ptr.To(hostLocalClass), "64Mi")

	// The build writes its image into the volume, checks that the volume
	// is as big as claimed and no bigger, then waits for the test's
	// go-ahead, which the test writes into the volume on the host.
	script := `set -e
df -k /mnt/image | tail -1 >/mnt/image/df.txt
mkdir -p /mnt/image/build && head -c 8388608 /dev/urandom >/mnt/image/build/rootfs.img
sha256sum /mnt/image/build/rootfs.img | cut -d' ' -f1 >/mnt/image/build/rootfs.sha256
if dd if=/dev/zero of=/mnt/image/too-big bs=1M count=100 2>/mnt/image/enospc.txt; then echo wrote-beyond >>/mnt/image/enospc.txt; fi
rm -f /mnt/image/too-big
echo running >/mnt/image/state
while [ ! -e /mnt/image/go ]; do sleep 0.2; done
echo done >/mnt/image/state`
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "ims-create", Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ims-create"}},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{
						Name: "build-image", Image: framework.TestImage, Command: []string{"sh", "-c", script},
						VolumeMounts: []corev1.VolumeMount{{Name: "image-vol", MountPath: "/mnt/image"}},
					}},
					Volumes: []corev1.Volume{{Name: "image-vol", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "image-work"},
					}}},
				},
			},
		},
	}
	framework.RemoteNodePlacement(&job.Spec.Template.Spec)
	if _, err := s.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pv := s.boundVolume(t, ns, "image-work")
	node := pv.Labels[rbnv1.LabelNode]
	dir := s.checkHostVolume(t, pv, node, s.HostIndex(t, node))
	data := filepath.Join(dir, "data")
	waitFileHas(t, filepath.Join(data, "state"), "running", 2*time.Minute)
	pods, err := s.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=ims-create"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Spec.NodeName != node {
		t.Fatalf("the job's pods: %v (err %v), want one on %s", pods, err, node)
	}

	// The job's data is on the host, inside the volume.
	sum, err := os.ReadFile(filepath.Join(data, "build", "rootfs.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256File(t, filepath.Join(data, "build", "rootfs.img")); got != strings.TrimSpace(string(sum)) {
		t.Fatalf("the image on the host hashes to %s, the job wrote %s", got, sum)
	}
	// The container saw a file system of the claim's size (ext4's own
	// metadata takes a little of it), and could not write beyond it.
	df, _ := os.ReadFile(filepath.Join(data, "df.txt"))
	if f := strings.Fields(string(df)); len(f) < 2 || !within(f[1], 50*1024, 64*1024) {
		t.Fatalf("df in the container: %q, want a total of 50-64 MiB", df)
	}
	enospc, _ := os.ReadFile(filepath.Join(data, "enospc.txt"))
	if !strings.Contains(string(enospc), "No space left on device") || strings.Contains(string(enospc), "wrote-beyond") {
		t.Fatalf("writing 100 MiB into the 64 MiB volume: %q, want ENOSPC", enospc)
	}

	if err := os.WriteFile(filepath.Join(data, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, "job ims-create complete", 2*time.Minute, func() (bool, string) {
		j, err := s.Client.BatchV1().Jobs(ns).Get(ctx, "ims-create", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return j.Status.Succeeded == 1, fmt.Sprintf("succeeded %d, failed %d", j.Status.Succeeded, j.Status.Failed)
	})
	if b, _ := os.ReadFile(filepath.Join(data, "state")); strings.TrimSpace(string(b)) != "done" {
		t.Fatalf("state after the job: %q", b)
	}

	// The image service deletes the job and its claim: the volume goes,
	// from the API and from the host.
	if err := s.Client.BatchV1().Jobs(ns).Delete(ctx, "ims-create", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "image-work", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitVolumeGone(t, pv.Name, 2*time.Minute)
	if mountedAt(t, dir) {
		t.Fatalf("%s still mounted after its volume was deleted", dir)
	}
	for _, p := range []string{dir, dir + ".img", dir + ".img.tmp"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s left on the host after its volume was deleted (%v)", p, err)
		}
	}
}

// sha256File is the hex SHA-256 of the file at p.
func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// within says whether the decimal text n is in [lo, hi].
func within(n string, lo, hi int64) bool {
	var v int64
	if _, err := fmt.Sscan(n, &v); err != nil {
		return false
	}
	return v >= lo && v <= hi
}

// claimPod is a job pod on a remote build node that mounts claim at /data
// and runs script.
func claimPod(ns, name, claim, script string) *corev1.Pod {
	p := framework.JobPod(ns, name, "", nil, []string{"sh", "-c", script})
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
	}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	return p
}

// writtenVolume provisions claim (rbn's class, 32Mi) for a pod named
// writer that writes "kept" into /data/out and ends, and returns the
// claim's volume, its node, host and directory on the host.
func (s *stack) writtenVolume(t *testing.T, ns, claim string) (pv *corev1.PersistentVolume, node string, hostIndex int, dir string) {
	t.Helper()
	s.claim(t, ns, claim, ptr.To(hostLocalClass), "32Mi")
	if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), claimPod(ns, "writer", claim, "echo kept >/data/out"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitPodPhase(t, ns, "writer", corev1.PodSucceeded, 2*time.Minute)
	pv = s.boundVolume(t, ns, claim)
	node = pv.Labels[rbnv1.LabelNode]
	hostIndex = s.HostIndex(t, node)
	return pv, node, hostIndex, s.checkHostVolume(t, pv, node, hostIndex)
}

// TestProvisionedVolumeSharedByTwoPods: two pods share one ReadWriteOnce
// claim, as Kubernetes allows for pods of one node: the second is
// scheduled to the node of the volume (its node affinity), both run at
// once, and what one writes the other reads.
func TestProvisionedVolumeSharedByTwoPods(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	ns := s.Namespace(t)
	s.claim(t, ns, "shared", ptr.To(hostLocalClass), "32Mi")
	writer := claimPod(ns, "writer", "shared", `echo from-writer >/data/note; while [ ! -e /data/read ]; do sleep 0.2; done`)
	if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, writer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitPodPhase(t, ns, "writer", corev1.PodRunning, 2*time.Minute)
	pv := s.boundVolume(t, ns, "shared")
	node := pv.Labels[rbnv1.LabelNode]
	reader := claimPod(ns, "reader", "shared", `while [ ! -e /data/note ]; do sleep 0.2; done; cat /data/note; touch /data/read`)
	if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, reader, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"reader", "writer"} {
		p := s.WaitPodPhase(t, ns, name, corev1.PodSucceeded, 2*time.Minute)
		if p.Spec.NodeName != node {
			t.Fatalf("pod %s ran on %s, want %s, the volume's node", name, p.Spec.NodeName, node)
		}
	}
	if out := s.Kubectl(t, "-n", ns, "logs", "reader"); strings.TrimSpace(out) != "from-writer" {
		t.Fatalf("reader's log: %q, want what the writer wrote", out)
	}
}

// TestProvisionedVolumeNoSpace: a claim bigger than any host's free space
// is never made: each host refuses it before anything is created, saying
// how much is free, and gives the claim back to the scheduler (which tries
// another node); the pod waits, Pending, and nothing is left on the hosts.
// rbn-extender would keep such a pod from every host
// (TestExtenderVolumeSpace); here it does not know the hosts' volume space
// (as before their first reading, or with facts gone stale), so the
// provisioner's own check is what stops it.
func TestProvisionedVolumeNoSpace(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	for _, n := range s.volumeNodes(t) {
		s.override(t, n, `{"volumeFreeBytes": null}`)
		s.waitExtender(t, n, "volume space unknown", func(d server.NodeDebug) bool { return d.Facts.VolumeFreeBytes == nil })
	}
	ns := s.Namespace(t)
	s.claim(t, ns, "huge", ptr.To(hostLocalClass), "1000Ti")
	if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, claimPod(ns, "huge", "huge", "true"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, "claim huge refused for want of space", 2*time.Minute, func() (bool, string) {
		failed := s.provisioningFailures(t, ns, "huge")
		for _, msg := range failed {
			if strings.Contains(msg, "but the host has") && strings.Contains(msg, "asking the scheduler for another node") {
				return true, ""
			}
		}
		return false, fmt.Sprint(failed)
	})
	c, err := s.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "huge", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Status.Phase != corev1.ClaimPending || c.Spec.VolumeName != "" {
		t.Fatalf("claim huge: phase %s, volume %q, want Pending and unbound", c.Status.Phase, c.Spec.VolumeName)
	}
	if p := s.Pod(t, ns, "huge"); p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending {
		t.Fatalf("pod huge: %s on %q, want Pending and unscheduled", p.Status.Phase, p.Spec.NodeName)
	}
	hosts, err := s.BuildHosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		matches, _ := filepath.Glob(filepath.Join(s.State, "hosts", fmt.Sprintf("host%d", h.Index), "volumes", "pvc-"+string(c.UID)+"*"))
		if len(matches) > 0 {
			t.Fatalf("host %d: %v left for a claim that was never provisioned", h.Index, matches)
		}
	}
}

// TestProvisionedVolumeDeletedWhileHostDown: a claim deleted while its
// host's SSH is down: the PersistentVolume is Released and keeps its
// finalizer (nothing can be removed), and once the host is back its data is
// removed and the PersistentVolume goes; nothing is stuck.
func TestProvisionedVolumeDeletedWhileHostDown(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	ns := s.Namespace(t)
	pv, node, hostIndex, dir := s.writtenVolume(t, ns, "work")
	waitFileHas(t, filepath.Join(dir, "data", "out"), "kept", time.Minute)
	if err := s.Client.CoreV1().Pods(ns).Delete(ctx, "writer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fault := framework.RecordFault(t, "SSH dropped when a volume is deleted")
	fault.Jobs(1)
	fault.Orphans(1) // until the volume's data is gone

	restoreSSH := s.cutSSH(t, hostIndex)
	cut := time.Now()
	s.WaitNodeReady(t, node, corev1.ConditionFalse, []string{"SSHConnectionLost", "SSHUnreachable"}, time.Minute)
	if err := s.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "work", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, "a failed delete of "+pv.Name, 2*time.Minute, func() (bool, string) {
		return hasEvent(s.Events(t, "", "PersistentVolume", pv.Name), "VolumeFailedDelete", ""), ""
	})
	got, err := s.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pv %s gone while its host was down: %v", pv.Name, err)
	}
	if got.Status.Phase != corev1.VolumeReleased || !slices.Contains(got.Finalizers, provisionerFinalizer) {
		t.Fatalf("pv %s with its host down: phase %s, finalizers %v, want Released with the provisioner's finalizer", pv.Name, got.Status.Phase, got.Finalizers)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "out")); err != nil {
		t.Fatalf("the volume's data went while its host was down: %v", err)
	}

	restoreSSH()
	s.WaitNodeReady(t, node, corev1.ConditionTrue, nil, 90*time.Second)
	s.waitVolumeGone(t, pv.Name, 3*time.Minute)
	fault.Figure(fmt.Sprintf("volume removed %.1f s after the cut", time.Since(cut).Seconds()))
	if mountedAt(t, dir) {
		t.Fatalf("%s still mounted", dir)
	}
	for _, p := range []string{dir, dir + ".img"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s left on the host (%v)", p, err)
		}
	}
	fault.Orphans(0)
}

// TestStaticVolumes: a claim bound to a static local PersistentVolume of
// an rbn node, inside the node's hostPathAllowlist, mounts that host
// directory; one bound to a volume a build host cannot mount (NFS here, as
// Ceph RBD would be) fails its pod at once with a reason naming the claim
// and its volume, instead of waiting.
func TestStaticVolumes(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	ns := s.Namespace(t)
	hosts, err := s.HostsOfArch(runtime.GOARCH)
	if err != nil || len(hosts) == 0 {
		t.Fatalf("no local build host (%v)", err)
	}
	node := hosts[0].Name
	dir := s.hostPathDir(t, ns)
	if err := os.WriteFile(filepath.Join(dir, "seed"), []byte("static\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	static := func(name string, src corev1.PersistentVolumeSource, affinity *corev1.VolumeNodeAffinity) {
		pvName := ns + "-" + name
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: pvName},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				StorageClassName:              "",
				PersistentVolumeSource:        src,
				NodeAffinity:                  affinity,
				ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: name},
			},
		}
		if _, err := s.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = s.Client.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
		})
		c := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: ptr.To(""),
				VolumeName:       pvName,
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		if _, err := s.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s.boundVolume(t, ns, name)
	}

	t.Run("local", func(t *testing.T) {
		static("local", corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			onNode(node))
		p := claimPod(ns, "local", "local", "cat /data/seed; echo written >/data/out")
		if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := s.WaitPodPhase(t, ns, "local", corev1.PodSucceeded, 2*time.Minute)
		if got.Spec.NodeName != node {
			t.Fatalf("pod ran on %s, want %s, the volume's node", got.Spec.NodeName, node)
		}
		if out := s.Kubectl(t, "-n", ns, "logs", "local"); strings.TrimSpace(out) != "static" {
			t.Fatalf("log %q, want the seed the host holds", out)
		}
		waitFileHas(t, filepath.Join(dir, "out"), "written", time.Minute)
	})

	t.Run("hostPath escaping through a symlink", func(t *testing.T) {
		// Inside the allowlist as written, /etc once resolved on the host.
		link := filepath.Join(dir, "escape")
		if err := os.Symlink("/etc", link); err != nil {
			t.Fatal(err)
		}
		static("escape", corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: link}},
			onNode(node))
		p := claimPod(ns, "escape", "escape", "cat /data/hostname")
		if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s.waitEvent(t, ns, "escape", "FailedMount", "resolves on the host to /etc, outside the host paths this node allows")
		if got := s.Pod(t, ns, "escape"); got.Status.Phase != corev1.PodPending {
			t.Fatalf("pod escape: %s, want Pending with nothing started", framework.DescribeStatus(got))
		}
	})

	t.Run("nfs", func(t *testing.T) {
		static("nfs", corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "192.0.2.1", Path: "/exports/images"}}, nil)
		p := claimPod(ns, "nfs", "nfs", "true")
		if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := s.WaitPodPhase(t, ns, "nfs", corev1.PodFailed, 2*time.Minute)
		if got.Status.Reason != "UnsupportedVolume" || !strings.Contains(got.Status.Message, `claim "nfs"`) ||
			!strings.Contains(got.Status.Message, "a nfs volume") {
			t.Fatalf("pod nfs: reason %q, message %q, want UnsupportedVolume naming the claim and its nfs volume", got.Status.Reason, got.Status.Message)
		}
	})
}

// TestClaimsWithoutClass: the image jobs' claims name no StorageClass. In a
// namespace labelled rbn.dev/host-local-claims=true, manifests/storage's
// admission policy gives such a claim rbn-host-local, and the claim is
// provisioned on the node of its pod; elsewhere, and for a claim naming a
// class, nothing changes. With a cluster default class (which kube-apiserver
// fills in first), the policy's ConfigMap names it and a claim of it counts
// as one that named none.
func TestClaimsWithoutClass(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	remote := s.Namespace(t)
	s.Kubectl(t, "label", "namespace", remote, "rbn.dev/host-local-claims=true")
	other := s.Namespace(t)
	classOf := func(ns, name string) string {
		c, err := s.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ptr.Deref(c.Spec.StorageClassName, "<unset>")
	}

	t.Run("no default class", func(t *testing.T) {
		s.claim(t, remote, "image-work", nil, "32Mi")
		if got := classOf(remote, "image-work"); got != hostLocalClass {
			t.Fatalf("claim without a class in the labelled namespace: class %s, want %s", got, hostLocalClass)
		}
		s.claim(t, other, "image-work", nil, "32Mi")
		if got := classOf(other, "image-work"); got != "<unset>" {
			t.Fatalf("claim without a class elsewhere: class %s, want none", got)
		}
		s.claim(t, remote, "named", ptr.To("fast"), "32Mi")
		if got := classOf(remote, "named"); got != "fast" {
			t.Fatalf("claim naming class fast: class %s", got)
		}
		// The claim that got rbn's class is provisioned for its pod.
		p := claimPod(remote, "job", "image-work", "echo ok >/data/out")
		if _, err := s.Client.CoreV1().Pods(remote).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s.WaitPodPhase(t, remote, "job", corev1.PodSucceeded, 2*time.Minute)
		if pv := s.boundVolume(t, remote, "image-work"); pv.Annotations["pv.kubernetes.io/provisioned-by"] != "rbn.dev/host-local" {
			t.Fatalf("volume %s: provisioned by %q", pv.Name, pv.Annotations["pv.kubernetes.io/provisioned-by"])
		}
	})

	t.Run("a cluster default class", func(t *testing.T) {
		// A default class of this cluster's real storage (Ceph RBD, say),
		// which kube-apiserver fills in before the policy runs.
		const def = "e2e-cluster-default"
		sc := fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: %s
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: example.com/cluster-storage
volumeBindingMode: WaitForFirstConsumer
`, def)
		s.Apply(t, sc)
		t.Cleanup(func() { _, _ = s.KubectlErr("delete", "storageclass", def, "--ignore-not-found") })
		s.Kubectl(t, "-n", "rbn-system", "patch", "configmap", "rbn-host-local-claims", "--type=merge", "-p", `{"data":{"defaultClass":"`+def+`"}}`)
		t.Cleanup(func() {
			_, _ = s.KubectlErr("-n", "rbn-system", "patch", "configmap", "rbn-host-local-claims", "--type=merge", "-p", `{"data":{"defaultClass":""}}`)
		})
		// The policy reads its ConfigMap through the apiserver's informer.
		framework.Eventually(t, "a claim of the default class given rbn's", 30*time.Second, func() (bool, string) {
			name := fmt.Sprintf("probe-%d", time.Now().UnixNano())
			s.claim(t, remote, name, nil, "32Mi")
			got := classOf(remote, name)
			_ = s.Client.CoreV1().PersistentVolumeClaims(remote).Delete(ctx, name, metav1.DeleteOptions{})
			return got == hostLocalClass, got
		})
		s.claim(t, other, "defaulted", nil, "32Mi")
		if got := classOf(other, "defaulted"); got != def {
			t.Fatalf("claim without a class elsewhere: class %s, want the cluster default %s", got, def)
		}
		s.claim(t, remote, "static", ptr.To(""), "32Mi")
		if got := classOf(remote, "static"); got != "" {
			t.Fatalf(`claim naming class "": class %q, want it kept`, got)
		}
	})
}

// TestProvisionedVolumeRetained: with a class of reclaimPolicy Retain, a
// deleted claim leaves its PersistentVolume Released, without the
// provisioner's finalizer, and its data on the host; the PersistentVolume
// deleted by hand leaves the data too, for the sweep (TestVolumeRootWatch)
// once it is ten minutes old.
func TestProvisionedVolumeRetained(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	ns := s.Namespace(t)
	class := "e2e-retain-" + ns
	s.Apply(t, fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: %s}
provisioner: rbn.dev/host-local
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
`, class))
	t.Cleanup(func() { _, _ = s.KubectlErr("delete", "storageclass", class, "--ignore-not-found") })
	s.claim(t, ns, "kept", ptr.To(class), "32Mi")
	if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, claimPod(ns, "writer", "kept", "echo kept >/data/out"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitPodPhase(t, ns, "writer", corev1.PodSucceeded, 2*time.Minute)
	pv := s.boundVolume(t, ns, "kept")
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Fatalf("pv %s: reclaim policy %s, want the class's Retain", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy)
	}
	node := pv.Labels[rbnv1.LabelNode]
	dir := s.checkHostVolume(t, pv, node, s.HostIndex(t, node))
	t.Cleanup(func() {
		_ = exec.Command("umount", dir).Run()
		_ = os.RemoveAll(dir)
		_ = os.Remove(dir + ".img")
	})
	if err := s.Client.CoreV1().Pods(ns).Delete(ctx, "writer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "kept", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, "pv "+pv.Name+" Released", 2*time.Minute, func() (bool, string) {
		got, err := s.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return got.Status.Phase == corev1.VolumeReleased && !slices.Contains(got.Finalizers, provisionerFinalizer),
			fmt.Sprintf("phase %s, finalizers %v", got.Status.Phase, got.Finalizers)
	})
	waitFileHas(t, filepath.Join(dir, "data", "out"), "kept", time.Minute)
	if err := s.Client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitVolumeGone(t, pv.Name, time.Minute)
	waitFileHas(t, filepath.Join(dir, "data", "out"), "kept", time.Minute)
}

// TestProvisionedVolumeAfterReboot: a host's mounts do not survive its
// reboot. A volume's data does: the next pod that uses the claim finds it,
// its file system mounted again by rbn-kubelet before the pod's sandbox.
func TestProvisionedVolumeAfterReboot(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	ns := s.Namespace(t)
	_, node, hostIndex, dir := s.writtenVolume(t, ns, "work")

	s.HostsSh(t, "reboot", strconv.Itoa(hostIndex))
	if mountedAt(t, dir) {
		t.Fatalf("%s still mounted after the host's reboot", dir)
	}
	s.WaitNodeReady(t, node, corev1.ConditionTrue, nil, 2*time.Minute)
	if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, claimPod(ns, "after", "work", "cat /data/out"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitPodPhase(t, ns, "after", corev1.PodSucceeded, 2*time.Minute)
	if out := s.Kubectl(t, "-n", ns, "logs", "after"); strings.TrimSpace(out) != "kept" {
		t.Fatalf("after the reboot the volume holds %q, want what was written before", out)
	}
	if !mountedAt(t, dir) {
		t.Fatalf("%s not mounted again", dir)
	}
}

// TestVolumeRootWatch: rbn-kubelet reads each node's volume root on its
// host: the space there is in the node's facts (rbn-extender filters on it)
// and in rbn's metrics; and volumes that belong to no PersistentVolume (a
// provisioning cut short whose claim went, a PersistentVolume deleted by
// hand) are removed once ten minutes old, with a Warning on the
// RemoteBuildNode, while a live volume and fresh files are kept. The sweep
// runs when the node is served and every ten minutes: a change of the
// RemoteBuildNode's labels serves it anew.
func TestVolumeRootWatch(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	_, node, _, dir := s.writtenVolume(t, ns, "live")
	root := filepath.Dir(dir)

	// The node's facts say how much a new volume may have there.
	framework.Eventually(t, "node "+node+" publishing its volume space", time.Minute, func() (bool, string) {
		n, _ := s.Node(t, node)
		var facts rbnv1.HostFacts
		if err := json.Unmarshal([]byte(n.Annotations[rbnv1.AnnotationHostFacts]), &facts); err != nil {
			return false, err.Error()
		}
		return facts.VolumeFreeBytes > 0, fmt.Sprint("volumeFreeBytes ", facts.VolumeFreeBytes)
	})
	if s.InCluster {
		framework.Eventually(t, "rbn_host_volumes of "+node, time.Minute, func() (bool, string) {
			n := s.kubeletMetricSum(t, "rbn_host_volumes", `node="`+node+`"`)
			return n >= 1, fmt.Sprint(n)
		})
	}

	// An orphan an hour old (a directory and its file system file), and
	// one made a moment ago.
	orphan := filepath.Join(root, "pvc-orphan-"+ns)
	fresh := filepath.Join(root, "pvc-fresh-"+ns)
	for _, d := range []string{orphan, fresh} {
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d); _ = os.Remove(d + ".img") })
	}
	if err := os.WriteFile(orphan+".img", []byte("not a file system"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{filepath.Join(orphan, "data"), orphan, orphan + ".img"} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	patch := fmt.Sprintf(`{"spec":{"labels":{"e2e.rbn.dev/sweep":%q}}}`, ns)
	s.Kubectl(t, "patch", "remotebuildnode", node, "--type=merge", "-p", patch)
	t.Cleanup(func() {
		_, _ = s.KubectlErr("patch", "remotebuildnode", node, "--type=merge", "-p", `{"spec":{"labels":{"e2e.rbn.dev/sweep":null}}}`)
	})
	framework.Eventually(t, "the orphan volume swept", 2*time.Minute, func() (bool, string) {
		if !hasEvent(s.Events(t, "", "RemoteBuildNode", node), "OrphanVolumeRemoved", orphan) {
			return false, "no OrphanVolumeRemoved event naming it"
		}
		return true, ""
	})
	for _, p := range []string{orphan, orphan + ".img"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s left after the sweep (%v)", p, err)
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("the fresh volume directory went: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "data", "out")); err != nil || strings.TrimSpace(string(b)) != "kept" {
		t.Fatalf("the live volume's data after the sweep: %q, %v", b, err)
	}
	if s.InCluster {
		framework.Eventually(t, "rbn_host_volume_orphans_removed_total of "+node, time.Minute, func() (bool, string) {
			n := s.kubeletMetricSum(t, "rbn_host_volume_orphans_removed_total", `node="`+node+`"`)
			return n >= 1, fmt.Sprint(n)
		})
	}
}
