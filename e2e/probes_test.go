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

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// Probes as kubelet runs them, on remote build nodes: exec, httpGet and
// tcpSocket handlers; liveness restarts, readiness driving the pod's Ready
// condition and its Service's endpoints, startup holding the other two.
func TestProbes(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: liveness, namespace: %[1]s}
spec:%[2]s
  terminationGracePeriodSeconds: 30
  containers:
    - name: main
      image: %[3]s
      command: [sh, -c, "touch /tmp/healthy; exec sleep 3600"]
      livenessProbe:
        exec: {command: [cat, /tmp/healthy]}
        periodSeconds: 1
        failureThreshold: 2
        # Not the pod's 30 s: sleep ignores SIGTERM as PID 1.
        terminationGracePeriodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: readiness, namespace: %[1]s, labels: {app: readiness}}
spec:%[2]s
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: %[3]s
      command: [sh, -c, "mkdir -p /www; exec httpd -f -p 8080 -h /www"]
      ports: [{name: http, containerPort: 8080}]
      readinessProbe:
        httpGet: {path: /ready, port: http}
        periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: readiness, namespace: %[1]s}
spec:
  selector: {app: readiness}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: startup, namespace: %[1]s}
spec:%[2]s
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: %[3]s
      # Listens only once /tmp/go exists.
      command: [sh, -c, "until [ -e /tmp/go ]; do sleep 0.2; done; mkdir -p /www; exec httpd -f -p 9000 -h /www"]
      startupProbe:
        tcpSocket: {port: 9000}
        periodSeconds: 1
        failureThreshold: 600
      # Would restart the container at once if it ran before the startup probe succeeded.
      livenessProbe:
        tcpSocket: {port: 9000}
        periodSeconds: 1
        failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: never-starts, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: %[3]s
      command: [sleep, "3600"]
      startupProbe:
        exec: {command: [sh, -c, "echo not yet; exit 1"]}
        periodSeconds: 1
        failureThreshold: 2
`, ns, framework.PodSpec, framework.TestImage))

	container := func(p *corev1.Pod) corev1.ContainerStatus {
		if len(p.Status.ContainerStatuses) != 1 {
			return corev1.ContainerStatus{}
		}
		return p.Status.ContainerStatuses[0]
	}
	podReady := func(p *corev1.Pod) corev1.ConditionStatus {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status
			}
		}
		return ""
	}
	waitEvent := func(pod, reason, text string) {
		t.Helper()
		s.waitEvent(t, ns, pod, reason, text)
	}
	execIn := func(pod string, cmd ...string) {
		t.Helper()
		s.Kubectl(t, append([]string{"-n", ns, "exec", pod, "--"}, cmd...)...)
	}

	// Liveness: healthy, then killed and restarted once its file is gone.
	p := s.WaitPodPhase(t, ns, "liveness", corev1.PodRunning, 2*time.Minute)
	if st := container(p); st.RestartCount != 0 {
		t.Fatalf("liveness: restarted while healthy: %s", framework.DescribeStatus(p))
	}
	execIn("liveness", "rm", "/tmp/healthy")
	waitEvent("liveness", "Unhealthy", "Liveness probe failed: cat: can't open '/tmp/healthy'")
	waitEvent("liveness", "Killing", "Container main failed liveness probe, will be restarted")
	framework.Eventually(t, "liveness: running again after one restart", 2*time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "liveness")
		st := container(p)
		return st.RestartCount == 1 && st.State.Running != nil && st.Ready, framework.DescribeStatus(p)
	})
	if last := container(p).LastTerminationState.Terminated; last == nil || last.Reason == "OOMKilled" || last.ExitCode == 0 {
		t.Errorf("liveness: last state %+v, want the run killed (exit 137 or 143), not OOMKilled", last)
	}

	// Readiness: running but not ready, and no ready endpoint, until
	// /ready answers 200; not ready again once it does not.
	p = s.WaitPodPhase(t, ns, "readiness", corev1.PodRunning, 2*time.Minute)
	waitEvent("readiness", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404")
	p = s.Pod(t, ns, "readiness")
	if st := container(p); st.Ready || podReady(p) != corev1.ConditionFalse {
		t.Fatalf("readiness: ready before its probe succeeded: %s", framework.DescribeStatus(p))
	}
	endpointReady := func(want bool) {
		t.Helper()
		s.waitEndpointReady(t, ns, "readiness", "readiness", want)
	}
	endpointReady(false)
	execIn("readiness", "touch", "/www/ready")
	framework.Eventually(t, "readiness: Ready once /ready answers", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "readiness")
		return container(p).Ready && podReady(p) == corev1.ConditionTrue, framework.DescribeStatus(p)
	})
	endpointReady(true)
	execIn("readiness", "rm", "/www/ready")
	framework.Eventually(t, "readiness: not Ready once /ready fails again", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "readiness")
		return !container(p).Ready && podReady(p) == corev1.ConditionFalse, framework.DescribeStatus(p)
	})
	endpointReady(false)
	if st := container(p); st.RestartCount != 0 {
		t.Errorf("readiness: a readiness failure restarted the container: %s", framework.DescribeStatus(p))
	}

	// Startup: not started, and its liveness probe held, until the port
	// opens; then started and ready, never restarted.
	p = s.WaitPodPhase(t, ns, "startup", corev1.PodRunning, 2*time.Minute)
	waitEvent("startup", "Unhealthy", "Startup probe failed: ")
	p = s.Pod(t, ns, "startup")
	if st := container(p); st.Started == nil || *st.Started || st.Ready {
		t.Fatalf("startup: started or ready before its startup probe succeeded: %s", framework.DescribeStatus(p))
	}
	execIn("startup", "touch", "/tmp/go")
	framework.Eventually(t, "startup: started and ready once the port opens", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "startup")
		st := container(p)
		return st.Started != nil && *st.Started && st.Ready, framework.DescribeStatus(p)
	})
	if st := container(p); st.RestartCount != 0 {
		t.Errorf("startup: restarted, so its liveness probe ran before the startup probe succeeded: %s", framework.DescribeStatus(p))
	}
	for _, e := range s.Events(t, ns, "Pod", "startup") {
		if e.Reason == "Unhealthy" && strings.HasPrefix(e.Message, "Liveness") {
			t.Errorf("startup: the liveness probe ran before the startup probe succeeded: %s", e.Message)
		}
	}

	// A startup probe that never succeeds kills the container; under
	// restartPolicy Never the pod fails.
	waitEvent("never-starts", "Unhealthy", "Startup probe failed: not yet")
	waitEvent("never-starts", "Killing", "Container main failed startup probe")
	p = s.WaitPodPhase(t, ns, "never-starts", corev1.PodFailed, 2*time.Minute)
	for _, e := range s.Events(t, ns, "Pod", "never-starts") {
		if strings.Contains(e.Message, "will be restarted") {
			t.Errorf("never-starts: %q under restartPolicy Never", e.Message)
		}
	}
}

// A grpc probe: the gRPC health checking protocol, from the build host to
// the pod's IP, against a real gRPC server (e2e/testdata/grpchealth, built
// here and streamed into the pod).
func TestProbeGRPC(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	bin := filepath.Join(t.TempDir(), "grpchealth")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := framework.Command(ctx, "go", "build", "-o", bin, "./testdata/grpchealth")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build grpchealth: %v\n%s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	p := s.runPod(t, ns, "grpc", fmt.Sprintf(`  containers:
    - name: server
      image: %[1]s
      command: [sh, -c, "until [ -x /tmp/grpchealth ]; do sleep 0.2; done; exec /tmp/grpchealth"]
      readinessProbe:
        grpc: {port: 9090}
        periodSeconds: 1
    - name: down
      image: %[1]s
      command: [sleep, "3600"]
      readinessProbe:
        grpc: {port: 9090, service: down}
        periodSeconds: 1
`, framework.TestImage), corev1.PodRunning)
	// Written whole, then made executable: the server never starts from half a file.
	if code, out, errOut := s.kubectlExit(t, binary, "-n", ns, "exec", "-i", "grpc", "-c", "server", "--",
		"sh", "-c", "cat >/tmp/g.part && chmod +x /tmp/g.part && mv /tmp/g.part /tmp/grpchealth"); code != 0 {
		t.Fatalf("copying the server into the pod: exit %d: %s %s", code, out, errOut)
	}
	framework.Eventually(t, "grpc: the server ready, the \"down\" service not", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "grpc")
		ready := map[string]bool{}
		for _, st := range p.Status.ContainerStatuses {
			ready[st.Name] = st.Ready
		}
		return ready["server"] && !ready["down"], framework.DescribeStatus(p)
	})
	s.waitEvent(t, ns, "grpc", "Unhealthy", `Readiness probe failed: service unhealthy (responded with "NOT_SERVING")`)
}
