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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// An image-create-shaped job: init containers sharing an emptyDir, a
// privileged container with SYS_ADMIN, env from a Secret, a ConfigMap at a
// nested path, a memory limit. Each container checks what it must see and
// exits non-zero otherwise, so Complete means every part translated.
func TestImageCreateShapedJobCompletes(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: build-creds, namespace: %[1]s}
stringData: {token: s3cr3t-value}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: recipe, namespace: %[1]s}
data: {config.kiwi: "<image name='demo'/>"}
---
apiVersion: batch/v1
kind: Job
metadata: {name: image-create, namespace: %[1]s}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never%[2]s
      initContainers:
        - name: stage-1
          image: %[3]s
          command: [sh, -c, "echo one > /work/stage1"]
          volumeMounts: [{name: work, mountPath: /work}]
        - name: stage-2
          image: %[3]s
          command: [sh, -c, "test \"$(cat /work/stage1)\" = one && echo two > /work/stage2"]
          volumeMounts: [{name: work, mountPath: /work}]
      containers:
        - name: build
          image: %[3]s
          securityContext:
            privileged: true
            capabilities: {add: [SYS_ADMIN]}
          env:
            - name: TOKEN
              valueFrom: {secretKeyRef: {name: build-creds, key: token}}
          resources:
            limits: {memory: 96Mi}
          command: [sh, -c]
          args:
            - |
              set -e
              test "$TOKEN" = s3cr3t-value
              test "$(cat /work/stage2)" = two
              grep -q "image name='demo'" /etc/kiwi/recipes/conf/config.kiwi
              mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && umount /mnt/t
              limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
              test "$limit" = %[4]d
              echo build ok
          volumeMounts:
            - {name: work, mountPath: /work}
            - {name: recipe, mountPath: /etc/kiwi/recipes/conf, readOnly: true}
      volumes:
        - {name: work, emptyDir: {}}
        - {name: recipe, configMap: {name: recipe}}
`, ns, framework.TemplateSpec, framework.TestImage, 96*1024*1024))
	out := s.Kubectl(t, "-n", ns, "wait", "--for=condition=Complete", "job/image-create", "--timeout=180s")
	t.Log(strings.TrimSpace(out))
	pods, err := s.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=image-create"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("want one job pod, got %v (%v)", len(pods.Items), err)
	}
	p := pods.Items[0]
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		term := cs.State.Terminated
		if term == nil || term.ExitCode != 0 || term.Reason != "Completed" || term.FinishedAt.IsZero() || !strings.HasPrefix(cs.ContainerID, "podman://") || cs.ImageID == "" {
			t.Errorf("container %s status %+v", cs.Name, cs)
		}
	}
	if logs := s.Kubectl(t, "-n", ns, "logs", p.Name, "-c", "build"); !strings.Contains(logs, "build ok") {
		t.Errorf("build logs: %q", logs)
	}
	for _, typ := range []corev1.PodConditionType{corev1.PodInitialized, corev1.PodScheduled} {
		found := false
		for _, c := range p.Status.Conditions {
			found = found || (c.Type == typ && c.Status == corev1.ConditionTrue)
		}
		if !found {
			t.Errorf("condition %s not True: %+v", typ, p.Status.Conditions)
		}
	}
	reasons := map[string]bool{}
	for _, e := range s.Events(t, ns, "Pod", p.Name) {
		reasons[e.Reason] = true
	}
	for _, want := range []string{"Scheduled", "Pulled", "Created", "Started"} {
		if !reasons[want] {
			t.Errorf("no %s event; events: %v", want, reasons)
		}
	}
}

func TestOOMKillIsReported(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: oom, namespace: %s}
spec:
  restartPolicy: Never%s
  containers:
    - name: hog
      image: %s
      command: [sh, -c, "head -c 200m /dev/zero | tail"]
      resources: {limits: {memory: 32Mi}}
`, ns, framework.PodSpec, framework.TestImage))
	p := s.WaitPodPhase(t, ns, "oom", corev1.PodFailed, 90*time.Second)
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term == nil || term.Reason != "OOMKilled" {
		t.Fatalf("want OOMKilled, got %s", framework.DescribeStatus(p))
	}
}

func TestMissingImageBacksOff(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: noimage, namespace: %s}
spec:
  restartPolicy: Never%s
  containers:
    - name: main
      image: 127.0.0.1:1/rbn/does-not-exist:1.0
`, ns, framework.PodSpec))
	seen := map[string]bool{}
	framework.Eventually(t, "ErrImagePull then ImagePullBackOff", 90*time.Second, func() (bool, string) {
		p := s.Pod(t, ns, "noimage")
		if len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil {
			seen[p.Status.ContainerStatuses[0].State.Waiting.Reason] = true
		}
		return seen["ImagePullBackOff"], fmt.Sprint(seen)
	})
	if p := s.Pod(t, ns, "noimage"); p.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s, want Pending while pulling fails", p.Status.Phase)
	}
	failed := false
	for _, e := range s.Events(t, ns, "Pod", "noimage") {
		failed = failed || (e.Reason == "Failed" && strings.Contains(e.Message, "does-not-exist"))
	}
	if !failed {
		t.Errorf("no Failed event naming the image")
	}
}

func TestUnsupportedAndForbiddenVolumesFailThePod(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: nfs, namespace: %[1]s}
spec:
  restartPolicy: Never%[2]s
  containers: [{name: main, image: %[3]s, command: ["true"], volumeMounts: [{name: data, mountPath: /data}]}]
  volumes: [{name: data, nfs: {server: 127.0.0.1, path: /exports}}]
---
apiVersion: v1
kind: Pod
metadata: {name: hostpath, namespace: %[1]s}
spec:
  restartPolicy: Never%[2]s
  containers: [{name: main, image: %[3]s, command: ["true"], volumeMounts: [{name: etc, mountPath: /host-etc}]}]
  volumes: [{name: etc, hostPath: {path: /etc}}]
`, ns, framework.PodSpec, framework.TestImage))
	for name, reason := range map[string]string{"nfs": "UnsupportedVolume", "hostpath": "HostPathNotAllowed"} {
		p := s.WaitPodPhase(t, ns, name, corev1.PodFailed, 60*time.Second)
		if p.Status.Reason != reason || p.Status.Message == "" {
			t.Errorf("%s: reason %q message %q, want %s", name, p.Status.Reason, p.Status.Message, reason)
		}
		found := false
		for _, e := range s.Events(t, ns, "Pod", name) {
			found = found || (e.Reason == reason && e.Type == corev1.EventTypeWarning)
		}
		if !found {
			t.Errorf("%s: no %s warning event", name, reason)
		}
		if objs := s.HostObjects(t, s.HostIndex(t, p.Spec.NodeName), string(p.UID)); len(objs) > 0 {
			t.Errorf("%s: left on host: %v", name, objs)
		}
	}
}

// OnFailure restarts a failing container with a restart count; the second
// run succeeds (a marker in an emptyDir survives the restart).
func TestRestartPolicyOnFailure(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: flaky, namespace: %s}
spec:
  restartPolicy: OnFailure%s
  containers:
    - name: main
      image: %s
      command: [sh, -c, "if [ -e /state/ran ]; then echo second; exit 0; fi; touch /state/ran; echo first; exit 3"]
      volumeMounts: [{name: state, mountPath: /state}]
  volumes: [{name: state, emptyDir: {}}]
`, ns, framework.PodSpec, framework.TestImage))
	p := s.WaitPodPhase(t, ns, "flaky", corev1.PodSucceeded, 90*time.Second)
	cs := p.Status.ContainerStatuses[0]
	if cs.RestartCount != 1 {
		t.Errorf("restartCount %d, want 1", cs.RestartCount)
	}
	last := cs.LastTerminationState.Terminated
	if last == nil || last.ExitCode != 3 || last.Reason != "Error" {
		t.Fatalf("lastState %+v, want exit 3 Error", cs.LastTerminationState)
	}
	// Kubelet's crash back-off: the first restart waits 10 s after the exit.
	if cur := cs.State.Terminated; cur == nil || cur.StartedAt.Sub(last.FinishedAt.Time) < 9*time.Second {
		t.Errorf("restarted %v after the first run ended, want >= 10s back-off", cur.StartedAt.Sub(last.FinishedAt.Time))
	}
	if prev := s.Kubectl(t, "-n", ns, "logs", "flaky", "--previous"); strings.TrimSpace(prev) != "first" {
		t.Errorf("--previous logs %q", prev)
	}
}

// Deleting a running pod stops it within its grace period and leaves
// nothing of it on the host.
func TestDeletedPodLeavesHostClean(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: %[1]s}
stringData: {key: value}
---
apiVersion: v1
kind: Pod
metadata: {name: sleeper, namespace: %[1]s}
spec:
  terminationGracePeriodSeconds: 5%[2]s
  containers:
    - name: main
      image: %[3]s
      command: [sleep, "3600"]
      volumeMounts: [{name: scratch, mountPath: /scratch}, {name: creds, mountPath: /creds}]
  volumes: [{name: scratch, emptyDir: {}}, {name: creds, secret: {secretName: creds}}]
`, ns, framework.PodSpec, framework.TestImage))
	p := s.WaitPodPhase(t, ns, "sleeper", corev1.PodRunning, 60*time.Second)
	host := s.HostIndex(t, p.Spec.NodeName)
	if objs := s.HostObjects(t, host, string(p.UID)); len(objs) == 0 {
		t.Fatalf("nothing of the running pod found on host %d", host)
	}
	start := time.Now()
	s.Kubectl(t, "-n", ns, "delete", "pod", "sleeper", "--wait=true", "--timeout=60s")
	t.Logf("deleted in %s", time.Since(start).Round(time.Millisecond))
	if objs := s.HostObjects(t, host, string(p.UID)); len(objs) > 0 {
		t.Errorf("left on host after delete: %v", objs)
	}
}

// Restarting rbn-kubelet mid-job: the job completes once, its container is
// neither restarted nor duplicated.
func TestKubeletRestartReadoptsRunningPods(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: long, namespace: %s}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never%s
      containers:
        - name: main
          image: %s
          command: [sh, -c, "sleep 12; echo done"]
`, ns, framework.TemplateSpec, framework.TestImage))
	var pod *corev1.Pod
	framework.Eventually(t, "job pod running", 60*time.Second, func() (bool, string) {
		pods, err := s.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=long"})
		if err != nil || len(pods.Items) != 1 {
			return false, fmt.Sprint(err)
		}
		pod = &pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning, framework.DescribeStatus(pod)
	})
	firstID := pod.Status.ContainerStatuses[0].ContainerID

	s.KubeletSh(t, "restart")
	s.Kubectl(t, "-n", ns, "wait", "--for=condition=Complete", "job/long", "--timeout=120s")
	p := s.Pod(t, ns, pod.Name)
	cs := p.Status.ContainerStatuses[0]
	if cs.ContainerID != firstID || cs.RestartCount != 0 {
		t.Errorf("container %s restarts %d, want the original %s with 0 restarts", cs.ContainerID, cs.RestartCount, firstID)
	}
	objs := s.HostObjects(t, s.HostIndex(t, p.Spec.NodeName), string(p.UID))
	containers := 0
	for _, o := range objs {
		if strings.HasPrefix(o, "ps:") && strings.HasSuffix(o, "-main-0") {
			containers++
		}
		if strings.HasPrefix(o, "ps:") && strings.Contains(o, "-main-") && !strings.HasSuffix(o, "-main-0") {
			t.Errorf("duplicate run on host: %s", o)
		}
	}
	if containers != 1 {
		t.Errorf("want exactly one run of main on the host, got %v", objs)
	}
	if logs := s.Kubectl(t, "-n", ns, "logs", "job/long"); strings.TrimSpace(logs) != "done" {
		t.Errorf("logs %q", logs)
	}
}

// Every volume kind a build job uses, checked from inside the containers:
// a Memory emptyDir filled by an init container, subPath mounts, the
// projected service account volume, downwardAPI, secret items with a mode,
// and an allowed hostPath; plus env from status.podIP and status.hostIP,
// which only exist once the pod's sandbox does.
func TestVolumesAsContainersSeeThem(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	hostDir := filepath.Join(s.State, "hostpath", ns)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "cache.txt"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(hostDir) })
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: %[1]s}
stringData: {id_rsa: private, ignored: x}
---
apiVersion: v1
kind: Pod
metadata: {name: volumes, namespace: %[1]s, labels: {team: imaging}}
spec:
  restartPolicy: Never%[2]s
  initContainers:
    - name: prepare
      image: %[3]s
      command: [sh, -c, "echo staged > /mem/recipe && mkdir -p /work/out"]
      volumeMounts: [{name: mem, mountPath: /mem}, {name: work, mountPath: /work}]
  containers:
    - name: check
      image: %[3]s
      env:
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
        - {name: WHERE, value: "$(POD_IP) on $(HOST_IP)"}
      command: [sh, -c]
      args:
        - |
          set -e
          test -n "$POD_IP" && ip addr | grep -q "inet $POD_IP/"
          test "$WHERE" = "$POD_IP on $HOST_IP"
          echo "host ip $HOST_IP"
          test "$(cat /mem/recipe)" = staged
          echo result > /out/image.txt
          test "$(cat /whole/a/b/image.txt)" = result
          test -s /var/run/secrets/kubernetes.io/serviceaccount/token
          test "$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)" = %[1]s
          grep -q BEGIN /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
          grep -q 'team="imaging"' /etc/podinfo/labels
          test "$(cat /etc/podinfo/name)" = volumes
          test "$(cat /keys/ssh/key)" = private
          test ! -e /keys/ignored
          test "$(stat -L -c %%a /keys/ssh/key)" = 400
          test "$(cat /cache/cache.txt)" = from-host
          echo volumes ok
      volumeMounts:
        - {name: mem, mountPath: /mem}
        - {name: work, mountPath: /out, subPath: a/b}
        - {name: work, mountPath: /whole}
        - {name: podinfo, mountPath: /etc/podinfo}
        - {name: keys, mountPath: /keys, readOnly: true}
        - {name: cache, mountPath: /cache}
  volumes:
    - {name: mem, emptyDir: {medium: Memory, sizeLimit: 16Mi}}
    - {name: work, emptyDir: {}}
    - name: podinfo
      downwardAPI:
        items:
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
          - {path: name, fieldRef: {fieldPath: metadata.name}}
    - name: keys
      secret: {secretName: keys, items: [{key: id_rsa, path: ssh/key, mode: 0400}]}
    - {name: cache, hostPath: {path: %[4]s, type: Directory}}
`, ns, framework.PodSpec, framework.TestImage, hostDir))
	p := s.WaitPodPhase(t, ns, "volumes", corev1.PodSucceeded, 90*time.Second)
	logs := s.Kubectl(t, "-n", ns, "logs", p.Name, "-c", "check")
	if !strings.Contains(logs, "volumes ok") {
		t.Errorf("logs %q", logs)
	}
	// status.hostIP is the build host's address, not rbn-kubelet's.
	if want := "host ip " + s.Host(t, s.HostIndex(t, p.Spec.NodeName))["ADDRESS"] + "\n"; !strings.Contains(logs, want) {
		t.Errorf("logs %q lack %q", logs, want)
	}
}

// A subPath mount never follows a symlink out of its volume: an init
// container swaps the subPath directory for a link to the host's root, and
// the next container is refused instead of mounting it (kubelet's answer to
// CVE-2017-1002101).
func TestSubPathSymlinkOutOfVolumeIsRefused(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: escape, namespace: %[1]s}
spec:
  restartPolicy: Never%[2]s
  initContainers:
    - name: plant
      image: %[3]s
      command: [sh, -c, "rm -rf /work/out && ln -s / /work/out"]
      volumeMounts: [{name: work, mountPath: /work}]
  containers:
    - name: main
      image: %[3]s
      command: [cat, /out/etc/shadow]
      volumeMounts: [{name: work, mountPath: /out, subPath: out}]
  volumes: [{name: work, emptyDir: {}}]
`, ns, framework.PodSpec, framework.TestImage))
	var msg string
	framework.Eventually(t, "main waiting with CreateContainerConfigError", 90*time.Second, func() (bool, string) {
		p := s.Pod(t, ns, "escape")
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; cs.Name == "main" && w != nil && w.Reason == "CreateContainerConfigError" {
				msg = w.Message
				return true, ""
			}
		}
		return false, framework.DescribeStatus(p)
	})
	if !strings.Contains(msg, "resolves outside its volume") {
		t.Errorf("message %q does not say why", msg)
	}
	p := s.Pod(t, ns, "escape")
	if state := s.HostContainerState(t, s.HostIndex(t, p.Spec.NodeName), "rbn-"+string(p.UID)+"-main-0"); state != "absent" {
		t.Errorf("the container was created on the host (%s)", state)
	}
}

// A pod that ends while rbn-kubelet is down gets its final status from the
// exited container when rbn-kubelet is back.
func TestPodEndingWhileKubeletDownIsReported(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: short, namespace: %s}
spec:
  restartPolicy: Never%s
  containers:
    - name: main
      image: %s
      command: [sh, -c, "sleep 10; exit 4"]
`, ns, framework.PodSpec, framework.TestImage))
	p := s.WaitPodPhase(t, ns, "short", corev1.PodRunning, 60*time.Second)
	host := s.HostIndex(t, p.Spec.NodeName)
	s.KubeletSh(t, "stop")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			s.KubeletSh(t, "start")
		}
	})
	name := "rbn-" + string(p.UID) + "-main-0"
	framework.Eventually(t, "container exits on the host while rbn-kubelet is down", 60*time.Second, func() (bool, string) {
		st := s.HostContainerState(t, host, name)
		return st == "exited", st
	})
	s.KubeletSh(t, "start")
	restarted = true
	p = s.WaitPodPhase(t, ns, "short", corev1.PodFailed, 60*time.Second)
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 4 {
		t.Errorf("want exit code 4, got %s", framework.DescribeStatus(p))
	}
}

// What belongs to no pod is removed: a pod force-deleted from the API while
// rbn-kubelet is down leaves containers behind, which the sweep removes.
func TestOrphansAreRemoved(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: orphan, namespace: %s}
spec:%s
  containers:
    - {name: main, image: %s, command: [sleep, "3600"], volumeMounts: [{name: scratch, mountPath: /scratch}]}
  volumes: [{name: scratch, emptyDir: {}}]
`, ns, framework.PodSpec, framework.TestImage))
	p := s.WaitPodPhase(t, ns, "orphan", corev1.PodRunning, 60*time.Second)
	host := s.HostIndex(t, p.Spec.NodeName)
	s.KubeletSh(t, "stop")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			s.KubeletSh(t, "start")
		}
	})
	s.Kubectl(t, "-n", ns, "delete", "pod", "orphan", "--force", "--grace-period=0")
	if objs := s.HostObjects(t, host, string(p.UID)); len(objs) == 0 {
		t.Fatal("the force-deleted pod left nothing on the host: the test proves nothing")
	}
	s.KubeletSh(t, "start")
	restarted = true
	framework.Eventually(t, "orphaned podman objects removed", 90*time.Second, func() (bool, string) {
		objs := s.HostObjects(t, host, string(p.UID))
		return len(objs) == 0, fmt.Sprint(objs)
	})
	if !s.InCluster {
		return // the metrics below are read from rbn-kubelet's pods
	}
	// The replicas started after the deletion count what their sweep removed.
	h := s.Host(t, host)
	label := fmt.Sprintf("host=%q", h["ADDRESS"]+":"+h["PORT"])
	if removed := s.kubeletMetricSum(t, "rbn_orphans_removed_total", label); removed == 0 {
		t.Errorf("no replica counts an orphan removed from %s in rbn_orphans_removed_total", label)
	}
}

// Logs of a pod that ended stay readable across an rbn-kubelet restart,
// until the pod is deleted; deleting it then cleans the host.
func TestEndedPodLogsSurviveKubeletRestart(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: done, namespace: %s}
spec:
  restartPolicy: Never%s
  containers: [{name: main, image: %s, command: [sh, -c, "echo finished work"]}]
`, ns, framework.PodSpec, framework.TestImage))
	p := s.WaitPodPhase(t, ns, "done", corev1.PodSucceeded, 60*time.Second)
	s.KubeletSh(t, "restart")
	framework.Eventually(t, "logs of the ended pod after restart", 60*time.Second, func() (bool, string) {
		out, err := s.KubectlErr("-n", ns, "logs", "done")
		if err != nil {
			return false, err.Error()
		}
		return strings.TrimSpace(out) == "finished work", out
	})
	host := s.HostIndex(t, p.Spec.NodeName)
	s.Kubectl(t, "-n", ns, "delete", "pod", "done", "--wait=true", "--timeout=60s")
	framework.Eventually(t, "ended pod removed from host", 90*time.Second, func() (bool, string) {
		objs := s.HostObjects(t, host, string(p.UID))
		return len(objs) == 0, fmt.Sprint(objs)
	})
}
