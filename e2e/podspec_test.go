//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// PodSpec fields that act on the host, as kubelet runs them (and a
// hostPath symlink out of the node's allowlist, refused):
// activeDeadlineSeconds fails the pod (DeadlineExceeded) and stops its
// container; hostPath types are checked (and the OrCreate ones created) on
// the host; FallbackToLogsOnError puts a failed container's last log lines
// in its termination message.
func TestPodSpecOnTheHost(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	hostDir := s.hostPathDir(t, ns)
	created := filepath.Join(hostDir, "made", "by", "rbn")
	// A symlink in an allowed directory that leads out of the allowlist,
	// and one that stays in it.
	if err := os.Symlink("/etc", filepath.Join(hostDir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(hostDir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "real", "f"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(hostDir, "inside")); err != nil {
		t.Fatal(err)
	}
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: deadline, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  activeDeadlineSeconds: 5
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: %[3]s, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: not-a-dir, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  containers: [{name: main, image: %[3]s, command: ["true"], volumeMounts: [{name: h, mountPath: /h}]}]
  volumes: [{name: h, hostPath: {path: %[4]s/missing, type: Directory}}]
---
apiVersion: v1
kind: Pod
metadata: {name: or-create, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  containers: [{name: main, image: %[3]s, command: [sh, -c, "test -d /h"], volumeMounts: [{name: h, mountPath: /h}]}]
  volumes: [{name: h, hostPath: {path: %[5]s, type: DirectoryOrCreate}}]
---
apiVersion: v1
kind: Pod
metadata: {name: escape, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  containers: [{name: main, image: %[3]s, command: [cat, /h/passwd], volumeMounts: [{name: h, mountPath: /h}]}]
  volumes: [{name: h, hostPath: {path: %[4]s/escape}}]
---
apiVersion: v1
kind: Pod
metadata: {name: inside, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  containers: [{name: main, image: %[3]s, command: [sh, -c, "test $(cat /h/f) = inside"], volumeMounts: [{name: h, mountPath: /h}]}]
  volumes: [{name: h, hostPath: {path: %[4]s/inside}}]
---
apiVersion: v1
kind: Pod
metadata: {name: last-words, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  containers:
    - name: main
      image: %[3]s
      command: [sh, -c, "echo first; echo the build broke >&2; exit 3"]
      terminationMessagePolicy: FallbackToLogsOnError
`, ns, framework.PodSpec, framework.TestImage, hostDir, created))

	p := s.WaitPodPhase(t, ns, "deadline", corev1.PodFailed, 2*time.Minute)
	if p.Status.Reason != "DeadlineExceeded" {
		t.Errorf("deadline: reason %q, message %q, want DeadlineExceeded", p.Status.Reason, p.Status.Message)
	}
	if st := p.Status.ContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil {
		t.Errorf("deadline: its container still runs: %+v", st)
	}

	s.waitEvent(t, ns, "not-a-dir", "FailedMount", "hostPath type check failed")
	if p := s.Pod(t, ns, "not-a-dir"); p.Status.Phase != corev1.PodPending {
		t.Errorf("not-a-dir: phase %s, want Pending while the mount fails", p.Status.Phase)
	}

	// The allowlist holds for the path the bind mount follows, not only
	// for the path as written.
	s.waitEvent(t, ns, "escape", "FailedMount", "resolves on the host to /etc")
	if p := s.Pod(t, ns, "escape"); p.Status.Phase != corev1.PodPending || len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Waiting == nil {
		t.Errorf("escape: %s", framework.DescribeStatus(p))
	}
	s.WaitPodPhase(t, ns, "inside", corev1.PodSucceeded, 2*time.Minute)

	s.WaitPodPhase(t, ns, "or-create", corev1.PodSucceeded, 2*time.Minute)
	if fi, err := os.Stat(created); err != nil || !fi.IsDir() {
		t.Errorf("DirectoryOrCreate did not create %s on the host: %v", created, err)
	}

	p = s.WaitPodPhase(t, ns, "last-words", corev1.PodFailed, 2*time.Minute)
	if st := p.Status.ContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil ||
		!strings.Contains(st[0].State.Terminated.Message, "the build broke") {
		t.Errorf("last-words: termination message from the logs missing: %+v", st)
	}
}

// kubectl debug on a remote pod: a debug container in the target
// container's process namespace, its output in kubectl logs, and an
// interactive one attached with -i: the supported way to look into a
// running build without SSH access to its host.
func TestKubectlDebug(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.runPod(t, ns, "job", fmt.Sprintf(`  containers: [{name: main, image: %s, command: [sleep, "3600"]}]
`, framework.TestImage), corev1.PodRunning)
	s.Kubectl(t, "-n", ns, "debug", "job", "--image="+framework.TestImage, "--image-pull-policy=IfNotPresent",
		"--target=main", "--container=ps", "--", "ps", "-o", "pid,args")
	framework.Eventually(t, "the debug container's output", 2*time.Minute, func() (bool, string) {
		out, err := s.KubectlErr("-n", ns, "logs", "job", "-c", "ps")
		return err == nil && strings.Contains(out, "sleep 3600"), fmt.Sprint(out, err)
	})
	var p *corev1.Pod
	framework.Eventually(t, "the debug container's status", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "job")
		st := p.Status.EphemeralContainerStatuses
		return len(st) == 1 && st[0].Name == "ps" && st[0].State.Terminated != nil && st[0].State.Terminated.ExitCode == 0, framework.DescribeStatus(p)
	})
	// Interactive: kubectl debug -i attaches to the new container's stdin.
	code, out, errOut := s.kubectlExit(t, []byte("echo from the debugger; ps -o args | grep -c '^sleep 3600'; exit 7\n"),
		"-n", ns, "debug", "job", "-i", "--image="+framework.TestImage, "--image-pull-policy=IfNotPresent",
		"--target=main", "--container=shell", "--", "sh")
	if !strings.Contains(out, "from the debugger\n1\n") {
		t.Errorf("kubectl debug -i: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	framework.Eventually(t, "the interactive debug container ended with its exit code", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "job")
		for _, st := range p.Status.EphemeralContainerStatuses {
			if st.Name == "shell" && st.State.Terminated != nil {
				return st.State.Terminated.ExitCode == 7, framework.DescribeStatus(p)
			}
		}
		return false, framework.DescribeStatus(p)
	})
	if p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the debugged pod was disturbed: %s", framework.DescribeStatus(p))
	}
}
