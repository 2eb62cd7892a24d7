//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// A new pod's infra container starts while its first container is created.
// When it cannot start (here: the pod's hostPort is taken on the host), the
// pod says why and waits; once it can, the pod runs with the container
// created meanwhile, started once, not created twice.
func TestSandboxStartFailureIsRetried(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	h := s.Host(t, 1)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: taken-port, namespace: %s}
spec:
  nodeName: %s
  restartPolicy: Never
  containers:
    - name: main
      image: %s
      command: [sleep, "3600"]
      ports: [{containerPort: 8080, hostPort: %d}]
`, ns, h["NAME"], framework.TestImage, port))
	framework.Eventually(t, "a FailedCreatePodSandBox event naming the taken port", 60*time.Second, func() (bool, string) {
		evs := s.Events(t, ns, "Pod", "taken-port")
		return hasEvent(evs, "FailedCreatePodSandBox", "address already in use"), fmt.Sprint(len(evs), " events")
	})
	if p := s.Pod(t, ns, "taken-port"); p.Status.Phase != corev1.PodPending {
		t.Fatalf("pod %s while its sandbox cannot start: %s", p.Status.Phase, framework.DescribeStatus(p))
	}

	ln.Close()
	p := s.WaitPodPhase(t, ns, "taken-port", corev1.PodRunning, 60*time.Second)
	var mains []string
	for _, o := range s.HostObjects(t, 1, string(p.UID)) {
		if strings.HasPrefix(o, "ps:") && strings.Contains(o, "-main-") {
			mains = append(mains, o)
		}
	}
	if len(mains) != 1 {
		t.Errorf("containers of main on the host: %v, want one", mains)
	}
	if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].RestartCount != 0 || cs[0].State.Running == nil {
		t.Errorf("container status: %s", framework.DescribeStatus(p))
	}
}
