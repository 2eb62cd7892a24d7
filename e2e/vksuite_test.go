//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// What the virtual-kubelet project's own e2e suite (test/e2e/basic.go)
// asks of a provider's node, through the apiserver's node proxy, at once
// and without retrying, once a pod with three containers is Ready:
// /stats/summary names the node and has the pod with a figure for each of
// its containers (TestGetStatsSummary); /metrics/resource has the pod's
// and each container's CPU (TestGetMetricsResource); /runningpods/ lists
// it (TestPodLifecycle*), /pods too, with only the node's pods
// (TestGetPods). Once the pod is deleted /runningpods/ lists it no more
// (the suite gives a provider a second: here, until it is gone from the
// apiserver). A host's stats reading is shared for up to 10 s but read
// anew once a container started (a request waits up to 5 s for it), so
// the first three hold at once.
func TestVirtualKubeletSuiteExpectations(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	containers := []string{"foo", "bar", "baz"}
	spec := "  containers:\n"
	for _, c := range containers {
		spec += fmt.Sprintf("    - {name: %s, image: %s, command: [sleep, '3600']}\n", c, framework.TestImage)
	}
	p := s.runPod(t, ns, "nginx", spec, corev1.PodRunning)
	s.Kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/nginx", "--timeout=60s")
	node := p.Spec.NodeName
	get := func(path string) string { return s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy"+path) }

	sum := &statsv1alpha1.Summary{}
	if raw := get("/stats/summary"); json.Unmarshal([]byte(raw), sum) != nil {
		t.Fatalf("/stats/summary: %s", raw)
	}
	if sum.Node.NodeName != node {
		t.Errorf("/stats/summary of %s is for node %q", node, sum.Node.NodeName)
	}
	i := slices.IndexFunc(sum.Pods, func(ps statsv1alpha1.PodStats) bool { return ps.PodRef.UID == string(p.UID) })
	if i < 0 {
		t.Errorf("/stats/summary of %s right after nginx was Ready: no nginx among %d pods", node, len(sum.Pods))
	} else if got := len(sum.Pods[i].Containers); got != len(containers) {
		t.Errorf("/stats/summary: %d container figures for nginx, want %d: %+v", got, len(containers), sum.Pods[i].Containers)
	}

	resource := get("/metrics/resource")
	count := func(family string) int {
		n, err := framework.MetricCount(resource, family, `namespace="`+ns+`"`, `pod="nginx"`)
		if err != nil {
			t.Fatalf("/metrics/resource: %v", err)
		}
		return n
	}
	if got := count("pod_cpu_usage_seconds_total"); got != 1 {
		t.Errorf("/metrics/resource: %d pod_cpu_usage_seconds_total of nginx, want 1", got)
	}
	if got := count("container_cpu_usage_seconds_total"); got != len(containers) {
		t.Errorf("/metrics/resource: %d container_cpu_usage_seconds_total of nginx, want %d", got, len(containers))
	}

	podList := func(path string) []corev1.Pod {
		t.Helper()
		list := &corev1.PodList{}
		if raw := get(path); json.Unmarshal([]byte(raw), list) != nil {
			t.Fatalf("%s: %s", path, raw)
		}
		return list.Items
	}
	has := func(pods []corev1.Pod) bool {
		return slices.ContainsFunc(pods, func(q corev1.Pod) bool { return q.UID == p.UID })
	}
	if !has(podList("/runningpods/")) {
		t.Errorf("/runningpods/ of %s lacks nginx", node)
	}
	pods := podList("/pods")
	if !has(pods) {
		t.Errorf("/pods of %s lacks nginx", node)
	}
	for _, q := range pods {
		if q.Spec.NodeName != node {
			t.Errorf("/pods of %s lists %s/%s of node %q", node, q.Namespace, q.Name, q.Spec.NodeName)
		}
	}

	s.Kubectl(t, "-n", ns, "delete", "pod", "nginx", "--wait=true", "--timeout=60s")
	framework.Eventually(t, "nginx gone from /runningpods/", 10*time.Second, func() (bool, string) {
		return !has(podList("/runningpods/")), "still listed"
	})
}
