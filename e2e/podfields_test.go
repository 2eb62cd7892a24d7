//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// terminated is the terminated state of a pod's only container, failing
// the test when there is none.
func terminated(t *testing.T, p *corev1.Pod) (state, last *corev1.ContainerStateTerminated) {
	t.Helper()
	st := p.Status.ContainerStatuses
	if len(st) != 1 || st[0].State.Terminated == nil {
		t.Fatalf("%s: no terminated container: %s", p.Name, framework.DescribeStatus(p))
	}
	return st[0].State.Terminated, st[0].LastTerminationState.Terminated
}

// terminationMessagePath as kubelet reads it: what a container (of any
// user) writes to the file is its terminated state's message; with
// FallbackToLogsOnError the file wins over the logs; a restarted container
// starts with an empty file and does not report its previous run's message.
func TestTerminationMessageFile(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: bye, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  containers:
    - name: main
      image: %[3]s
      command: [sh, -c, "printf bye > /dev/termination-log; exit 3"]
      securityContext: {runAsUser: 1000}
---
apiVersion: v1
kind: Pod
metadata: {name: file-wins, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  containers:
    - name: main
      image: %[3]s
      command: [sh, -c, "echo from the logs; printf 'from the file' > /tmp/result; exit 1"]
      terminationMessagePath: /tmp/result
      terminationMessagePolicy: FallbackToLogsOnError
---
apiVersion: v1
kind: Pod
metadata: {name: restarted, namespace: %[1]s}
spec:%[2]s
  restartPolicy: OnFailure
  volumes: [{name: state, emptyDir: {}}]
  containers:
    - name: main
      image: %[3]s
      command: [sh, -c, "test -e /state/ran && exit 0; touch /state/ran; printf first > /dev/termination-log; exit 1"]
      volumeMounts: [{name: state, mountPath: /state}]
`, ns, framework.PodSpec, framework.TestImage))

	p := s.WaitPodPhase(t, ns, "bye", corev1.PodFailed, 2*time.Minute)
	if st, _ := terminated(t, p); st.ExitCode != 3 || st.Message != "bye" {
		t.Errorf("bye: exit code %d, message %q; want 3 and \"bye\"", st.ExitCode, st.Message)
	}
	p = s.WaitPodPhase(t, ns, "file-wins", corev1.PodFailed, 2*time.Minute)
	if st, _ := terminated(t, p); st.Message != "from the file" {
		t.Errorf("file-wins: message %q, want the file's (not the logs')", st.Message)
	}
	// The crash back-off (10 s) is in between.
	p = s.WaitPodPhase(t, ns, "restarted", corev1.PodSucceeded, 3*time.Minute)
	st, last := terminated(t, p)
	if st.Message != "" {
		t.Errorf("restarted: the second run reports %q, which only the first wrote", st.Message)
	}
	if last == nil || last.Message != "first" {
		t.Errorf("restarted: last state %+v, want the first run's message \"first\"", last)
	}
}

// fsGroup as kubelet applies it: a non-root container has the group, can
// write an emptyDir (on disk and in memory) whose new files belong to the
// group, and can read a secret whose mode gives only owner and group
// access.
func TestFSGroup(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: %[1]s}
stringData: {token: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: fsgroup, namespace: %[1]s}
spec:%[2]s
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000}
  volumes:
    - {name: work, emptyDir: {}}
    - {name: shm, emptyDir: {medium: Memory}}
    - {name: creds, secret: {secretName: creds, defaultMode: 0600}}
  containers:
    - name: main
      image: %[3]s
      command: [sleep, "3600"]
      volumeMounts:
        - {name: work, mountPath: /work}
        - {name: shm, mountPath: /shm}
        - {name: creds, mountPath: /creds}
`, ns, framework.PodSpec, framework.TestImage))
	s.WaitPodPhase(t, ns, "fsgroup", corev1.PodRunning, 2*time.Minute)
	in := func(cmd ...string) string {
		t.Helper()
		return strings.TrimSpace(s.Kubectl(t, append([]string{"-n", ns, "exec", "fsgroup", "-c", "main", "--"}, cmd...)...))
	}
	if got := strings.Fields(in("id", "-G")); !slices.Contains(got, "2000") {
		t.Errorf("groups %v, want the fsGroup 2000 among them", got)
	}
	for _, dir := range []string{"/work", "/shm"} {
		if got := in("sh", "-c", "echo hi > "+dir+"/f && cat "+dir+"/f && stat -c %g "+dir+"/f"); got != "hi\n2000" {
			t.Errorf("%s: writing as user 1000 gave %q, want \"hi\" and a file of group 2000", dir, got)
		}
	}
	if got := in("sh", "-c", "cat /creds/token && echo && stat -L -c '%g %a' /creds/token"); got != "s3cret\n2000 640" {
		t.Errorf("secret read as user 1000: %q, want s3cret from a file of group 2000, mode 640", got)
	}
	// The volume's layout as kubelet's AtomicWriter makes it under an
	// fsGroup: a setgid data directory of the group, ..data and the
	// file's name symlinks into it.
	if got := in("sh", "-c", "stat -c '%u %g %a' /creds/..data/ && readlink /creds/token && readlink /creds/..data"); !regexp.MustCompile(`^0 2000 2755\n\.\.data/token\n\.\.[0-9_]+\.[0-9a-f]+$`).MatchString(got) {
		t.Errorf("secret volume's layout: %q, want a data directory of root and group 2000, mode 2755, and the symlinks to it", got)
	}
}

// Pod-level resources: the limits bound the podman pod's cgroup on the
// host, and a container without limits of its own has the pod's.
func TestPodLevelResources(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: pod-resources, namespace: %[1]s}
spec:%[2]s
  terminationGracePeriodSeconds: 1
  resources:
    limits: {memory: 128Mi, cpu: 500m}
  containers:
    - name: main
      image: %[3]s
      command: [sleep, "3600"]
`, ns, framework.PodSpec, framework.TestImage))
	p := s.WaitPodPhase(t, ns, "pod-resources", corev1.PodRunning, 2*time.Minute)
	const limit = "134217728"
	// Inside: cgroup v1's memory controller, or v2's unified hierarchy.
	got := strings.TrimSpace(s.Kubectl(t, "-n", ns, "exec", "pod-resources", "-c", "main", "--",
		"sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"))
	if got != limit {
		t.Errorf("the container's memory limit is %s, want the pod's %s", got, limit)
	}
	// On the host: the podman pod's cgroup.
	host := s.HostIndex(t, p.Spec.NodeName)
	cg := strings.TrimSpace(s.MustHostPodman(t, host, "pod", "inspect", "--format", "{{.CgroupPath}}", pod.PodName(p.UID)))
	if cg == "" {
		t.Fatalf("podman pod %s has no cgroup", pod.PodName(p.UID))
	}
	memory, cpuQuota := "", ""
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", cg, "memory.limit_in_bytes")); err == nil {
		memory = strings.TrimSpace(string(b))
		if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpu", cg, "cpu.cfs_quota_us")); err == nil {
			cpuQuota = strings.TrimSpace(string(b))
		}
	} else if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cg, "memory.max")); err == nil {
		memory = strings.TrimSpace(string(b))
		if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cg, "cpu.max")); err == nil {
			cpuQuota, _, _ = strings.Cut(strings.TrimSpace(string(b)), " ")
		}
	} else {
		t.Fatalf("cgroup %s of the podman pod not found on the host: %v", cg, err)
	}
	if memory != limit || cpuQuota != "50000" {
		t.Errorf("pod cgroup %s: memory limit %q, cpu quota %q; want %s and 50000", cg, memory, cpuQuota, limit)
	}
}
