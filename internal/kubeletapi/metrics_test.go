package kubeletapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/utils/ptr"
)

// subresourceAuth lets "alice" through on the subresources it allows, of
// any node, and records what it was asked.
type subresourceAuth struct {
	mu    sync.Mutex
	allow map[string]bool
	asked []string // subresources, in order
}

func (a *subresourceAuth) AuthenticateRequest(r *http.Request) (*authenticator.Response, bool, error) {
	if r.Header.Get("Authorization") != "Bearer good" {
		return nil, false, nil
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: "alice"}}, true, nil
}

func (a *subresourceAuth) Authorize(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, attrs.GetSubresource())
	if a.allow[attrs.GetSubresource()] && attrs.GetName() == "n1" {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func (a *subresourceAuth) reset(allow ...string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	asked := a.asked
	a.asked, a.allow = nil, map[string]bool{}
	for _, s := range allow {
		a.allow[s] = true
	}
	return asked
}

func gauge(name string, v float64) []*dto.MetricFamily {
	return []*dto.MetricFamily{{Name: ptr.To(name), Help: ptr.To("h"), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: ptr.To(v)}}}}}
}

// /metrics, /metrics/cadvisor, /metrics/probes and /runningpods/ are node routes: served on
// the node's own port from its handlers, to callers allowed the
// subresource kubelet checks (nodes/metrics; nodes/pods, else nodes/proxy),
// and nowhere else.
func TestNodeMetricsAndRunningPodsRoutes(t *testing.T) {
	h := &NodeHandlers{
		GetMetricsCadvisor: func(context.Context) ([]*dto.MetricFamily, error) { return gauge("machine_cpu_cores", 4), nil },
		GetMetrics:         func(context.Context) ([]*dto.MetricFamily, error) { return gauge("kubelet_running_pods", 2), nil },
		GetMetricsProbes: func(context.Context) ([]*dto.MetricFamily, error) {
			return []*dto.MetricFamily{{Name: ptr.To("prober_probe_total"), Help: ptr.To("h"), Type: dto.MetricType_COUNTER.Enum(),
				Metric: []*dto.Metric{{Label: []*dto.LabelPair{{Name: ptr.To("probe_type"), Value: ptr.To("Readiness")}},
					Counter: &dto.Counter{Value: ptr.To(7.0)}}}}}, nil
		},
		GetRunningPods: func(context.Context) ([]*corev1.Pod, error) {
			return []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", UID: "uid-a"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "build", Image: "alpine:3"}}}}}, nil
		},
		GetPods: func(context.Context) ([]*corev1.Pod, error) { return nil, errors.New("/pods must not be asked") },
	}
	auth := &subresourceAuth{}
	_, pods := podIndex(t)
	ts := startServer(t, Config{Pods: pods, Handlers: (&servedNodes{m: map[string]*NodeHandlers{"n1": h}}).handlers, Auth: auth}, "n1")

	for _, tc := range []struct {
		path  string
		allow []string // subresources the caller has
		code  int
		body  string   // contained in the answer
		asked []string // subresources asked, in order
	}{
		{path: "/metrics/cadvisor", allow: []string{"metrics"}, code: 200, body: "machine_cpu_cores 4\n", asked: []string{"metrics"}},
		{path: "/metrics", allow: []string{"metrics"}, code: 200, body: "# TYPE kubelet_running_pods gauge\nkubelet_running_pods 2\n", asked: []string{"metrics"}},
		{path: "/metrics/cadvisor", allow: []string{"proxy", "stats"}, code: 403, body: "alice", asked: []string{"metrics"}},
		{path: "/metrics", allow: []string{"proxy"}, code: 403, asked: []string{"metrics"}},
		{path: "/runningpods/", allow: []string{"pods"}, code: 200, body: `"kind":"PodList"`, asked: []string{"pods"}},
		{path: "/runningpods/", allow: []string{"proxy"}, code: 200, body: `"name":"build","image":"alpine:3"`, asked: []string{"pods", "proxy"}},
		{path: "/runningpods/", allow: []string{"metrics"}, code: 403, asked: []string{"pods", "proxy"}},
		{path: "/metrics/probes", allow: []string{"metrics"}, code: 200, body: "# TYPE prober_probe_total counter\nprober_probe_total{probe_type=\"Readiness\"} 7\n", asked: []string{"metrics"}},
		{path: "/metrics/probes", allow: []string{"proxy"}, code: 403, asked: []string{"metrics"}},
	} {
		t.Run(tc.path+"/"+strings.Join(tc.allow, ","), func(t *testing.T) {
			auth.reset(tc.allow...)
			code, body := ts.get(t, ts.nodePort, "GET", tc.path, "good")
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Errorf("answer %d %q, want %d containing %q", code, body, tc.code, tc.body)
			}
			if asked := auth.reset(); !slices.Equal(asked, tc.asked) {
				t.Errorf("authorized as %v, want %v", asked, tc.asked)
			}
		})
	}

	auth.reset("metrics", "pods")
	for _, path := range []string{"/metrics", "/metrics/cadvisor", "/metrics/probes", "/runningpods/"} {
		if code, _ := ts.get(t, ts.nodePort, "GET", path, ""); code != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s: %d, want 401", path, code)
		}
		if code, body := ts.get(t, ts.shared, "GET", path, "good"); code != http.StatusNotFound || !strings.Contains(body, "own kubelet port") {
			t.Errorf("GET %s on the shared port: %d %q, want 404", path, code, body)
		}
	}

	// kubelet's shape: a v1 PodList of the runtime's pods.
	_, body := ts.get(t, ts.nodePort, "GET", "/runningpods/", "good")
	var list corev1.PodList
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if list.Kind != "PodList" || list.APIVersion != "v1" || len(list.Items) != 1 || list.Items[0].UID != "uid-a" ||
		len(list.Items[0].Spec.Containers) != 1 || list.Items[0].Spec.Containers[0].Image != "alpine:3" {
		t.Errorf("running pods %s", body)
	}
}

// A node without the handlers, or whose handlers fail, answers an error,
// never an empty scrape.
func TestNodeMetricsErrors(t *testing.T) {
	h := &NodeHandlers{
		GetMetricsCadvisor: func(context.Context) ([]*dto.MetricFamily, error) { return nil, errors.New("podman: connection lost") },
	}
	_, pods := podIndex(t)
	ts := startServer(t, Config{Pods: pods, Handlers: (&servedNodes{m: map[string]*NodeHandlers{"n1": h}}).handlers,
		Auth: &fakeAuth{node: "n1"}}, "n1")
	for _, path := range []string{"/metrics/cadvisor", "/metrics", "/metrics/probes", "/runningpods/"} {
		if code, body := ts.get(t, ts.nodePort, "GET", path, "good"); code < 500 {
			t.Errorf("GET %s: %d %q, want an error", path, code, body)
		}
	}
}
