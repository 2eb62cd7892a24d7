//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// The eviction policy of docs/operations.md ("When a node is NotReady:
// eviction"): rbn leaves eviction to Kubernetes, and a pod's toleration of
// the NotReady taints says how long it waits for a lost build node. With the
// host's SSH cut, its node goes NotReady (Ready=False, taint
// node.kubernetes.io/not-ready:NoExecute): the pod that tolerates that for
// 5 s is evicted by the controller manager, the one that tolerates it for an
// hour rides the outage out. Once the host is back, the evicted pod's
// containers are stopped and removed and its object goes, and the other pod
// goes on in the container it had, to its success.
func TestNotReadyEviction(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	const hostIndex = 3
	node := s.Host(t, hostIndex)["NAME"]
	s.WaitNodeReady(t, node, corev1.ConditionTrue, nil, time.Minute)
	ns := s.Namespace(t)
	dir := s.hostPathDir(t, ns)

	// Each pod says it runs, then waits for the test's go-ahead on the
	// shared hostPath directory (the build hosts share this machine's file
	// system).
	pod := func(name string, tolerate int64) *corev1.Pod {
		script := fmt.Sprintf(`echo up >/out/%[1]s.up; while [ ! -e /out/go ]; do sleep 0.2; done; echo done >/out/%[1]s.done`, name)
		p := framework.JobPod(ns, name, node, nil, []string{"sh", "-c", script})
		p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](5)
		p.Spec.Volumes = []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
		p.Spec.Tolerations = append(p.Spec.Tolerations,
			corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(tolerate)},
			corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(tolerate)})
		created, err := s.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return created
	}
	fault := framework.RecordFault(t, "SSH dropped with jobs running")
	fault.Jobs(2)
	lost := 2 // each pod counts until it ended as expected
	fault.Lost(lost)
	short := pod("short", 5)
	long := pod("long", 3600)
	for _, p := range []*corev1.Pod{short, long} {
		s.WaitPodPhase(t, ns, p.Name, corev1.PodRunning, 2*time.Minute)
		waitFileHas(t, filepath.Join(dir, p.Name+".up"), "up", time.Minute)
	}
	longContainer := "rbn-" + string(long.UID) + "-main-0"
	if st := s.HostContainerState(t, hostIndex, longContainer); st != "running" {
		t.Fatalf("container %s of pod long is %s on the host, want running", longContainer, st)
	}

	restoreSSH := s.cutSSH(t, hostIndex)
	cut := time.Now()
	s.WaitNodeReady(t, node, corev1.ConditionFalse, []string{"SSHConnectionLost", "SSHUnreachable"}, time.Minute)
	t.Logf("node %s NotReady %s after the cut", node, time.Since(cut).Round(100*time.Millisecond))
	fault.Figure(fmt.Sprintf("NotReady %.1f s after the cut", time.Since(cut).Seconds()))

	// The controller manager taints the node and evicts the pod whose
	// toleration ran out, and only that one.
	framework.Eventually(t, "pod short evicted by the controller manager", 2*time.Minute, func() (bool, string) {
		p := s.Pod(t, ns, short.Name)
		if p.DeletionTimestamp == nil {
			return false, framework.DescribeStatus(p)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
				return true, ""
			}
		}
		return false, "deleted without a DisruptionTarget condition: " + framework.DescribeStatus(p)
	})
	t.Logf("pod short evicted %s after the cut", time.Since(cut).Round(100*time.Millisecond))
	fault.Figure(fmt.Sprintf("the pod tolerating 5 s evicted %.1f s after the cut", time.Since(cut).Seconds()))
	n, _ := s.Node(t, node)
	if !hasTaint(n, corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute) {
		t.Fatalf("node %s: taints %v, want %s:NoExecute", node, n.Spec.Taints, corev1.TaintNodeNotReady)
	}
	if p := s.Pod(t, ns, long.Name); p.DeletionTimestamp != nil {
		t.Fatalf("pod long, which tolerates the NotReady node for an hour, was deleted too: %s", framework.DescribeStatus(p))
	}

	restoreSSH()
	s.WaitNodeReady(t, node, corev1.ConditionTrue, nil, 90*time.Second)
	t.Logf("node %s Ready again %s after the cut", node, time.Since(cut).Round(100*time.Millisecond))
	fault.Figure(fmt.Sprintf("SSH back after %.1f s", time.Since(cut).Seconds()))

	// The evicted pod: stopped and removed from the host, its object gone.
	framework.Eventually(t, "pod short removed from the host", 2*time.Minute, func() (bool, string) {
		objs := s.HostObjects(t, hostIndex, string(short.UID))
		fault.Orphans(len(objs))
		return len(objs) == 0, fmt.Sprint(objs)
	})
	framework.Eventually(t, "pod short gone from the API", 2*time.Minute, func() (bool, string) {
		_, err := s.Client.CoreV1().Pods(ns).Get(ctx, short.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	lost--
	fault.Lost(lost)

	// The other one carries on in the same container and succeeds.
	if st := s.HostContainerState(t, hostIndex, longContainer); st != "running" {
		t.Fatalf("container %s of pod long is %s on the host after the outage, want still running", longContainer, st)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := s.WaitPodPhase(t, ns, long.Name, corev1.PodSucceeded, 2*time.Minute)
	if cs := p.Status.ContainerStatuses; len(cs) == 1 {
		fault.Duplicated(int(cs[0].RestartCount))
	}
	if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].RestartCount != 0 {
		t.Fatalf("pod long: container statuses %+v, want one, never restarted", cs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, long.Name+".done")); err != nil || !strings.Contains(string(b), "done") {
		t.Fatalf("pod long's output: %q, %v", b, err)
	}
	lost--
	fault.Lost(lost)
}

// hasTaint says whether n has a taint of key and effect.
func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	for _, taint := range n.Spec.Taints {
		if taint.Key == key && taint.Effect == effect {
			return true
		}
	}
	return false
}
