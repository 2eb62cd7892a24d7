//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// stack is the local stack of package framework, which holds the helpers
// the end-to-end tests share with the benchmarks. A helper only some tests
// need is a method of stack in their file.
type stack struct{ *framework.Stack }

// newStack connects to the stack hack/test.sh brought up and described in
// the environment.
func newStack(t *testing.T) *stack {
	t.Helper()
	env, err := framework.EnvFromOS()
	if err != nil {
		t.Fatalf("%v: run the end-to-end tests with `make test-e2e`, which brings the stack up", err)
	}
	s, err := framework.Connect(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &stack{s}
}

// cutSSH stops build host i's sshd, with every session, and returns the
// function that starts it again; the test's cleanup starts it if the test
// ends first.
func (s *stack) cutSSH(t *testing.T, i int) (restore func()) {
	t.Helper()
	s.HostsSh(t, "stop-sshd", strconv.Itoa(i))
	var once sync.Once
	restore = func() { once.Do(func() { s.HostsSh(t, "start-sshd", strconv.Itoa(i)) }) }
	t.Cleanup(restore)
	return restore
}

// waitEvent waits until the pod has an event of reason whose message
// contains text.
func (s *stack) waitEvent(t *testing.T, ns, pod, reason, text string) {
	t.Helper()
	framework.Eventually(t, fmt.Sprintf("%s: a %s event with %q", pod, reason, text), 2*time.Minute, func() (bool, string) {
		events := s.Events(t, ns, "Pod", pod)
		if hasEvent(events, reason, text) {
			return true, ""
		}
		seen := make([]string, 0, len(events))
		for _, e := range events {
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "\n")
	})
}

// waitEndpointReady waits until the EndpointSlices of Service svc list
// pod's endpoint with the readiness want.
func (s *stack) waitEndpointReady(t *testing.T, ns, svc, pod string, want bool) {
	t.Helper()
	framework.Eventually(t, fmt.Sprintf("%s: the Service's endpoint ready=%t", pod, want), time.Minute, func() (bool, string) {
		slices, err := s.Client.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, sl := range slices.Items {
			for _, ep := range sl.Endpoints {
				ready := ep.Conditions.Ready != nil && *ep.Conditions.Ready
				if ep.TargetRef != nil && ep.TargetRef.Name == pod && ready == want {
					return true, ""
				}
				seen = append(seen, fmt.Sprintf("%v ready=%t", ep.Addresses, ready))
			}
		}
		return false, fmt.Sprint("endpoints: ", seen)
	})
}

// hostPathDir is a directory of the stack's hostPath allowlist for the
// test namespace ns (the build hosts share this machine's file system),
// removed at the end of the test.
func (s *stack) hostPathDir(t *testing.T, ns string) string {
	t.Helper()
	dir := filepath.Join(s.State, "hostpath", ns)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// kubeletMetricSum sums metric name over the rbn-kubelet replicas' own
// metrics (in the cluster), over the series whose labels contain labels.
func (s *stack) kubeletMetricSum(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return metricSum(t, s.kubeletMetrics(t), name, labels...)
}

// kubeletMetrics scrapes the rbn-kubelet replicas' own metrics (in the
// cluster), once each: several sums over one scrape read one moment.
func (s *stack) kubeletMetrics(t *testing.T) []string {
	t.Helper()
	pods, err := s.RBNPods(context.Background(), framework.KubeletApp)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, pd := range pods {
		if pd.Status.PodIP == "" || pd.DeletionTimestamp != nil {
			continue
		}
		text, err := framework.ScrapeMetrics(pd.Status.PodIP, 10265)
		if err != nil {
			t.Fatalf("%s: %v", pd.Name, err)
		}
		texts = append(texts, text)
	}
	return texts
}

// metricSum sums metric name over scraped texts, over the series whose
// labels contain labels.
func metricSum(t *testing.T, texts []string, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	for _, text := range texts {
		n, _, err := framework.MetricSum(text, name, labels...)
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	return sum
}
