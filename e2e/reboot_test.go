//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider"
)

// A build host reboots under running pods (hack/hosts.sh reboot: their
// processes die without podman recording their end, podman resets their
// state at its next start, the host has a new boot id). The node reports
// the new boot id; a restartPolicy Never build fails with HostRebooted
// (exit code 137): neither reported as succeeded nor run again on its
// half-written volume; a restartPolicy Always pod runs again at once, in a
// sandbox set up again (SandboxChanged), its restart count 1 and its last
// state HostRebooted; and once deleted, nothing of either is left on the
// host.
func TestHostReboot(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	const host = 2
	node := s.Host(t, host)["NAME"]
	before := s.bootID(t, node)
	if before == "" {
		t.Fatalf("node %s reports no bootID", node)
	}
	fault := framework.RecordFault(t, "host rebooted")
	fault.Jobs(2)
	lost := 2 // each pod counts until it ended as expected
	fault.Lost(lost)
	build := framework.JobPod(ns, "build", node, nil, []string{"sh", "-c", "echo half >/work/image.raw; exec sleep 3600"})
	build.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	build.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	service := framework.JobPod(ns, "service", node, nil, []string{"sleep", "3600"})
	service.Spec.RestartPolicy = corev1.RestartPolicyAlways
	var uids []string
	for _, p := range []*corev1.Pod{build, service} {
		created, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, string(created.UID))
	}
	s.WaitPodPhase(t, ns, "build", corev1.PodRunning, 2*time.Minute)
	s.WaitPodPhase(t, ns, "service", corev1.PodRunning, 2*time.Minute)
	serviceIP := s.Pod(t, ns, "service").Status.PodIP

	s.HostsSh(t, "reboot", strconv.Itoa(host))
	rebooted := time.Now()
	framework.Eventually(t, "node "+node+" reports the host's new boot id", 2*time.Minute, func() (bool, string) {
		now := s.bootID(t, node)
		return now != "" && now != before, now
	})
	fault.Figure(fmt.Sprintf("new boot id on the Node %.1f s after the reboot", time.Since(rebooted).Seconds()))
	framework.Eventually(t, "build failed with HostRebooted", 2*time.Minute, func() (bool, string) {
		p := s.Pod(t, ns, "build")
		if p.Status.Phase == corev1.PodSucceeded {
			t.Fatalf("the build interrupted by the reboot is reported as succeeded: %s", framework.DescribeStatus(p))
		}
		term := containerTerminated(p, "main")
		return p.Status.Phase == corev1.PodFailed && term != nil && term.Reason == provider.ReasonHostRebooted && term.ExitCode == podman.LostExitCode,
			framework.DescribeStatus(p)
	})
	fault.Figure(fmt.Sprintf("build failed with HostRebooted %.1f s after the reboot", time.Since(rebooted).Seconds()))
	p := s.Pod(t, ns, "build")
	fault.Duplicated(int(p.Status.ContainerStatuses[0].RestartCount))
	if p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the Never build ran again: %s", framework.DescribeStatus(p))
	}
	lost--
	fault.Lost(lost)
	s.waitEvent(t, ns, "build", provider.ReasonHostRebooted, "the build host rebooted while the container ran")
	framework.Eventually(t, "service running again after the reboot", 2*time.Minute, func() (bool, string) {
		p := s.Pod(t, ns, "service")
		if len(p.Status.ContainerStatuses) != 1 {
			return false, framework.DescribeStatus(p)
		}
		st := p.Status.ContainerStatuses[0]
		last := st.LastTerminationState.Terminated
		return st.State.Running != nil && st.RestartCount == 1 && last != nil && last.Reason == provider.ReasonHostRebooted,
			framework.DescribeStatus(p)
	})
	fault.Figure(fmt.Sprintf("service running again %.1f s after the reboot", time.Since(rebooted).Seconds()))
	lost--
	fault.Lost(lost)
	s.waitEvent(t, ns, "service", "SandboxChanged", "Pod sandbox changed")
	if out, err := s.KubectlErr("-n", ns, "exec", "service", "--", "true"); err != nil {
		t.Errorf("exec in the restarted pod: %v\n%s", err, out)
	}
	t.Logf("service's pod IP %s before the reboot, %s after", serviceIP, s.Pod(t, ns, "service").Status.PodIP)

	s.Kubectl(t, "-n", ns, "delete", "pod", "build", "service", "--wait=true", "--timeout=2m")
	left := make([]int, len(uids))
	for i, uid := range uids {
		framework.Eventually(t, fmt.Sprintf("nothing of pod %s on host %d", uid, host), time.Minute, func() (bool, string) {
			objs := s.HostObjects(t, host, uid)
			left[i] = len(objs)
			fault.Orphans(left[0] + left[1])
			return len(objs) == 0, fmt.Sprint(objs)
		})
	}
}

// bootID is the node's status.nodeInfo.bootID.
func (s *stack) bootID(t *testing.T, node string) string {
	t.Helper()
	n, err := s.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Status.NodeInfo.BootID
}

// containerTerminated is the named container's terminated state, nil when
// it has none.
func containerTerminated(p *corev1.Pod, name string) *corev1.ContainerStateTerminated {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == name {
			return st.State.Terminated
		}
	}
	return nil
}
