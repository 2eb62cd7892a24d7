//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// TestReadinessGates: a pod with a readiness gate is Ready, and its
// Service's endpoint ready, only once another controller (here the test,
// through the status subresource) sets the gate's condition True; rbn's
// own status writes keep that condition as they go on.
func TestReadinessGates(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	const gate = "example.com/load-balancer-ready"
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: gated, namespace: %[1]s, labels: {app: gated}}
spec:%[2]s
  terminationGracePeriodSeconds: 1
  readinessGates: [{conditionType: %[4]s}]
  containers:
    - name: web
      image: %[3]s
      command: [sh, -c, "mkdir -p /www; touch /www/ready; exec httpd -f -p 8080 -h /www"]
      ports: [{name: http, containerPort: 8080}]
      readinessProbe:
        httpGet: {path: /ready, port: http}
        periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: gated, namespace: %[1]s}
spec:
  selector: {app: gated}
  ports: [{port: 80, targetPort: http}]
`, ns, framework.PodSpec, framework.TestImage, gate))

	cond := func(p *corev1.Pod, t corev1.PodConditionType) corev1.PodCondition {
		for _, c := range p.Status.Conditions {
			if c.Type == t {
				return c
			}
		}
		return corev1.PodCondition{}
	}
	describe := func(p *corev1.Pod) string {
		return fmt.Sprintf("%s conditions %+v", framework.DescribeStatus(p), p.Status.Conditions)
	}
	endpointReady := func(want bool) {
		t.Helper()
		s.waitEndpointReady(t, ns, "gated", "gated", want)
	}
	setGate := func(status corev1.ConditionStatus) {
		t.Helper()
		patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":%q,"reason":"E2E"}]}}`, gate, status)
		if _, err := s.Client.CoreV1().Pods(ns).Patch(context.Background(), "gated", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			t.Fatalf("set the gate's condition %s: %v", status, err)
		}
	}

	// Containers ready, the gate's condition missing: not Ready, in
	// kubelet's words.
	var p *corev1.Pod
	framework.Eventually(t, "containers ready, the pod held by its gate", 2*time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "gated")
		r := cond(p, corev1.PodReady)
		return cond(p, corev1.ContainersReady).Status == corev1.ConditionTrue && r.Status == corev1.ConditionFalse &&
			r.Reason == "ReadinessGatesNotReady" &&
			r.Message == `corresponding condition of pod readiness gate "example.com/load-balancer-ready" does not exist.`, describe(p)
	})
	endpointReady(false)

	setGate(corev1.ConditionTrue)
	framework.Eventually(t, "Ready once the gate's condition is True", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "gated")
		return cond(p, corev1.PodReady).Status == corev1.ConditionTrue, describe(p)
	})
	endpointReady(true)

	// rbn writes the status again (the container's readiness goes and
	// comes back): the gate's condition stays as the controller set it.
	s.Kubectl(t, "-n", ns, "exec", "gated", "--", "rm", "/www/ready")
	framework.Eventually(t, "not Ready while the container is not", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "gated")
		return cond(p, corev1.ContainersReady).Status == corev1.ConditionFalse && cond(p, corev1.PodReady).Status == corev1.ConditionFalse, describe(p)
	})
	if c := cond(p, gate); c.Status != corev1.ConditionTrue || c.Reason != "E2E" {
		t.Fatalf("rbn's status write dropped or changed the gate's condition: %s", describe(p))
	}
	s.Kubectl(t, "-n", ns, "exec", "gated", "--", "touch", "/www/ready")
	framework.Eventually(t, "Ready again with the gate still True", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "gated")
		return cond(p, corev1.PodReady).Status == corev1.ConditionTrue && cond(p, gate).Status == corev1.ConditionTrue, describe(p)
	})

	// The controller takes the gate back: not Ready, the endpoint not ready.
	setGate(corev1.ConditionFalse)
	framework.Eventually(t, "not Ready once the gate's condition is False", time.Minute, func() (bool, string) {
		p = s.Pod(t, ns, "gated")
		r := cond(p, corev1.PodReady)
		return r.Status == corev1.ConditionFalse && r.Reason == "ReadinessGatesNotReady", describe(p)
	})
	endpointReady(false)
}
