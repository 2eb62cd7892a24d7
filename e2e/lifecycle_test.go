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

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// trapTERM is the command of a container that logs its start and its
// SIGTERM to /out/log, and ends on SIGTERM: a SIGKILL leaves no line.
const trapTERM = `[sh, -c, "trap 'echo main got TERM >>/out/log; exit 0' TERM; echo main up >>/out/log; while true; do sleep 0.2; done"]`

// waitFileHas waits until the file at path, written by a pod through a
// hostPath volume, holds text.
func waitFileHas(t *testing.T, path, text string, timeout time.Duration) {
	t.Helper()
	framework.Eventually(t, fmt.Sprintf("%q in %s", text, path), timeout, func() (bool, string) {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), text), string(b)
	})
}

// preStopBeforeTERM says whether the log of a trapTERM container shows
// its preStop hook's line, then its SIGTERM.
func preStopBeforeTERM(log string) bool {
	pre, term := strings.Index(log, "preStop\n"), strings.Index(log, "main got TERM")
	return pre >= 0 && term > pre
}

// Lifecycle hooks on a remote build node, as kubelet runs them: postStart
// after the start; on deletion preStop before the stop signal (an exec
// hook, and an httpGet hook from the host to the pod's IP); a postStart
// hook that fails kills the container and, under restartPolicy Never,
// fails the pod.
func TestLifecycleHooks(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	dir := s.hostPathDir(t, ns)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hooks, namespace: %[1]s}
spec:%[2]s
  # httpd ignores SIGTERM as PID 1: SIGKILL after these.
  terminationGracePeriodSeconds: 5
  volumes: [{name: out, hostPath: {path: %[4]s}}]
  containers:
    - name: main
      image: %[3]s
      volumeMounts: [{name: out, mountPath: /out}]
      command: %[5]s
      lifecycle:
        postStart:
          exec: {command: [sh, -c, "echo postStart >>/out/log"]}
        preStop:
          exec: {command: [sh, -c, "echo preStop >>/out/log"]}
    - name: web
      image: %[3]s
      volumeMounts: [{name: out, mountPath: /out}]
      ports: [{name: http, containerPort: 8080}]
      # httpd's CGI writes what the hook requested.
      command: [sh, -c, "mkdir -p /www/cgi-bin; printf '#!/bin/sh\\necho web preStop $REQUEST_URI >>/out/log\\necho Content-Type: text/plain\\necho\\n' >/www/cgi-bin/drain; chmod +x /www/cgi-bin/drain; exec httpd -f -p 8080 -h /www"]
      lifecycle:
        preStop:
          httpGet: {path: "/cgi-bin/drain?why=delete", port: http}
---
apiVersion: v1
kind: Pod
metadata: {name: bad-hook, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: %[3]s
      command: [sleep, "3600"]
      lifecycle:
        postStart:
          exec: {command: [sh, -c, "echo cannot set up; exit 4"]}
`, ns, framework.PodSpec, framework.TestImage, dir, trapTERM))

	s.WaitPodPhase(t, ns, "hooks", corev1.PodRunning, 2*time.Minute)
	logFile := filepath.Join(dir, "log")
	waitFileHas(t, logFile, "postStart", time.Minute)
	s.Kubectl(t, "-n", ns, "delete", "pod", "hooks", "--wait=true", "--timeout=90s")
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if !preStopBeforeTERM(log) {
		t.Errorf("want the preStop hook before SIGTERM:\n%s", log)
	}
	if !strings.Contains(log, "web preStop /cgi-bin/drain?why=delete") {
		t.Errorf("the httpGet preStop hook did not reach the pod:\n%s", log)
	}

	s.WaitPodPhase(t, ns, "bad-hook", corev1.PodFailed, 2*time.Minute)
	s.waitEvent(t, ns, "bad-hook", "FailedPostStartHook", `command 'sh -c echo cannot set up; exit 4' exited with 4, message: "cannot set up\n"`)
}

// A pod deleted while no rbn-kubelet serves its node (stopped here; a
// restart or a takeover alike) gets its grace period once the node is
// served again: its preStop hook, then SIGTERM, which it traps and ends
// on, well within the 60 s it was deleted with. Before, nothing stopped
// it until virtual-kubelet force-deleted the pod object a grace period
// later and the orphan sweep killed its containers with SIGKILL.
func TestPodDeletedWhileKubeletDownGetsItsGracePeriod(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	dir := s.hostPathDir(t, ns)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: graceful, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  terminationGracePeriodSeconds: 60
  volumes: [{name: out, hostPath: {path: %[4]s}}]
  containers:
    - name: main
      image: %[3]s
      volumeMounts: [{name: out, mountPath: /out}]
      command: %[5]s
      lifecycle:
        preStop:
          exec: {command: [sh, -c, "echo preStop >>/out/log"]}
`, ns, framework.PodSpec, framework.TestImage, dir, trapTERM))
	fault := framework.RecordFault(t, "pod deleted while rbn-kubelet is down")
	fault.Jobs(1)
	fault.Lost(1) // until it got its preStop hook and SIGTERM
	p := s.WaitPodPhase(t, ns, "graceful", corev1.PodRunning, 2*time.Minute)
	logFile := filepath.Join(dir, "log")
	waitFileHas(t, logFile, "main up", time.Minute) // its SIGTERM trap is set
	host := s.HostIndex(t, p.Spec.NodeName)
	name := "rbn-" + string(p.UID) + "-main-0"

	s.KubeletSh(t, "stop")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			s.KubeletSh(t, "start")
		}
	})
	s.Kubectl(t, "-n", ns, "delete", "pod", "graceful", "--wait=false")
	if st := s.HostContainerState(t, host, name); st != "running" {
		t.Fatalf("the container is %s on the host once the pod is deleted with no rbn-kubelet: the test proves nothing", st)
	}
	s.KubeletSh(t, "start")
	restarted = true
	start := time.Now()
	waitFileHas(t, logFile, "main got TERM", 90*time.Second)
	t.Logf("SIGTERM %s after rbn-kubelet's start", time.Since(start).Round(100*time.Millisecond))
	fault.Figure(fmt.Sprintf("SIGTERM %.1f s after rbn-kubelet's start", time.Since(start).Seconds()))
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if log := string(b); !preStopBeforeTERM(log) {
		t.Errorf("want the preStop hook before SIGTERM:\n%s", log)
	} else {
		fault.Lost(0)
	}
	framework.Eventually(t, "the pod removed from the host", 90*time.Second, func() (bool, string) {
		objs := s.HostObjects(t, host, string(p.UID))
		fault.Orphans(len(objs))
		return len(objs) == 0, fmt.Sprint(objs)
	})
	// virtual-kubelet deletes the pod object the deletion's grace period
	// (60 s) after the provider's DeletePod returned.
	framework.Eventually(t, "the pod gone from the API", 2*time.Minute, func() (bool, string) {
		_, err := s.Client.CoreV1().Pods(ns).Get(context.Background(), "graceful", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}
