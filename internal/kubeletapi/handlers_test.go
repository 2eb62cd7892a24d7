package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// nodeLogs are the handlers of a node whose container logs name the node,
// the pod and the container, or fail with failures[pod].
func nodeLogs(node string, failures map[string]error) *NodeHandlers {
	return &NodeHandlers{
		ContainerLogs: func(_ context.Context, ns, pod, container string, _ vkapi.ContainerLogOpts, _ int) (io.ReadCloser, error) {
			if err := failures[pod]; err != nil {
				return nil, err
			}
			return io.NopCloser(strings.NewReader(fmt.Sprintf("%s %s/%s %s", node, ns, pod, container))), nil
		},
	}
}

// servedNodes serves the nodes of m, counting the lookups.
type servedNodes struct {
	m map[string]*NodeHandlers

	mu     sync.Mutex
	lookup []string
}

func (s *servedNodes) handlers(node string) (*NodeHandlers, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookup = append(s.lookup, node)
	h, ok := s.m[node]
	return h, ok
}

func (s *servedNodes) lookups() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lookup
	s.lookup = nil
	return l
}

// A pod route reaches the node the pod index binds the pod to, and only
// that node's handlers are asked.
func TestPodRouteNodeComesFromPodIndex(t *testing.T) {
	idx, pods := podIndex(t,
		boundPod("ns", "a", "n1"), boundPod("ns", "b", "n2"),
		boundPod("ns", "elsewhere", "real-node"), boundPod("ns", "pending", ""))
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": nodeLogs("n1", nil), "n2": nodeLogs("n2", nil)}}
	auth := &fakeAuth{node: "*"}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: auth}, "n1")

	for _, tc := range []struct {
		port       int32
		pod        string
		code       int
		body       string // contained in the answer
		authorized string // the node the caller was authorized against; "" none
		lookedUp   string // the only node whose handlers were looked up; "" none
	}{
		{port: ts.shared, pod: "a", code: 200, body: "n1 ns/a c", authorized: "n1", lookedUp: "n1"},
		{port: ts.shared, pod: "b", code: 200, body: "n2 ns/b c", authorized: "n2", lookedUp: "n2"},
		{port: ts.nodePort, pod: "a", code: 200, body: "n1 ns/a c", authorized: "n1", lookedUp: "n1"},
		{port: ts.nodePort, pod: "b", code: 404, body: "not on node n1", authorized: "n1", lookedUp: "n2"},
		{port: ts.shared, pod: "elsewhere", code: 404, body: "not on any node served here", lookedUp: "real-node"},
		{port: ts.shared, pod: "pending", code: 404, body: "not on any node served here"},
		{port: ts.shared, pod: "unknown", code: 404, body: "not on any node served here"},
	} {
		t.Run(fmt.Sprintf("%d/%s", tc.port, tc.pod), func(t *testing.T) {
			auth.mu.Lock()
			auth.asked = nil
			auth.mu.Unlock()
			code, body := ts.get(t, tc.port, "GET", "/containerLogs/ns/"+tc.pod+"/c", "good")
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Errorf("answer %d %q, want %d containing %q", code, body, tc.code, tc.body)
			}
			got := ""
			if a := auth.last(); a != nil {
				got = a.GetName()
			}
			if got != tc.authorized {
				t.Errorf("authorized against %q, want %q", got, tc.authorized)
			}
			want := []string(nil)
			if tc.lookedUp != "" {
				want = []string{tc.lookedUp}
			}
			if l := nodes.lookups(); fmt.Sprint(l) != fmt.Sprint(want) {
				t.Errorf("looked up the handlers of %q, want %q", l, want)
			}
		})
	}

	// The index moves: so does the route.
	if err := idx.Update(boundPod("ns", "a", "n2")); err != nil {
		t.Fatal(err)
	}
	if code, body := ts.get(t, ts.shared, "GET", "/containerLogs/ns/a/c", "good"); code != 200 || body != "n2 ns/a c" {
		t.Errorf("after the index moved ns/a to n2: %d %q", code, body)
	}
}

// Errors of the handlers, wrapped or not, become the answers kubelet gives,
// on this package's routes and on virtual-kubelet's.
func TestHandlerErrorsMapToHTTPStatus(t *testing.T) {
	failures := map[string]error{
		"gone":      errdefs.NotFound("container c is gone"),
		"gone-deep": fmt.Errorf("open log: %w", fmt.Errorf("podman: %w", errdefs.NotFound("container c is gone"))),
		"waiting":   fmt.Errorf("open log: %w", errdefs.InvalidInput("container c is waiting to start")),
		"broken":    fmt.Errorf("open log: %w", errors.New("ssh: connection lost")),
	}
	h := nodeLogs("n1", failures)
	h.GetPods = func(context.Context) ([]*corev1.Pod, error) {
		return nil, fmt.Errorf("list: %w", errdefs.NotFound("no pods yet"))
	}
	h.GetStatsSummary = func(context.Context) (*statsv1alpha1.Summary, error) {
		return nil, fmt.Errorf("stats: %w", errdefs.InvalidInput("bad query"))
	}
	var indexed []*corev1.Pod
	for pod := range failures {
		indexed = append(indexed, boundPod("ns", pod, "n1"))
	}
	_, pods := podIndex(t, indexed...)
	ts := startServer(t, Config{Pods: pods, Handlers: (&servedNodes{m: map[string]*NodeHandlers{"n1": h}}).handlers,
		Auth: &fakeAuth{node: "n1"}}, "n1")
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/containerLogs/ns/gone/c", http.StatusNotFound},
		{"/containerLogs/ns/gone-deep/c", http.StatusNotFound},
		{"/containerLogs/ns/waiting/c", http.StatusBadRequest},
		{"/containerLogs/ns/broken/c", http.StatusInternalServerError},
		{"/pods", http.StatusNotFound},
		{"/stats/summary", http.StatusBadRequest},
		{"/metrics/resource", http.StatusInternalServerError}, // no handler: virtual-kubelet answers 500
	} {
		if code, body := ts.get(t, ts.nodePort, "GET", tc.path, "good"); code != tc.code {
			t.Errorf("GET %s: %d %q, want %d", tc.path, code, body, tc.code)
		}
	}
}

func TestAPIErrorAndHTTPStatus(t *testing.T) {
	exit := errors.New("command terminated with exit code 2")
	for _, tc := range []struct {
		name              string
		err               error
		code              int
		notFound, invalid bool // what errdefs sees on apiError's result
		unchanged         bool
	}{
		{name: "not found", err: errdefs.NotFound("x"), code: 404, notFound: true, unchanged: true},
		{name: "wrapped not found", err: fmt.Errorf("a: %w", errdefs.NotFound("x")), code: 404, notFound: true},
		{name: "invalid input", err: errdefs.InvalidInput("x"), code: 400, invalid: true, unchanged: true},
		{name: "wrapped invalid input", err: fmt.Errorf("a: %w", errdefs.InvalidInput("x")), code: 400, invalid: true},
		{name: "not implemented", err: errNotImplemented("exec"), code: 501, unchanged: true},
		{name: "other (an exit error)", err: exit, code: 500, unchanged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := httpStatus(tc.err); got != tc.code {
				t.Errorf("httpStatus = %d, want %d", got, tc.code)
			}
			got := apiError(tc.err)
			if errdefs.IsNotFound(got) != tc.notFound || errdefs.IsInvalidInput(got) != tc.invalid {
				t.Errorf("apiError(%v): errdefs sees not found %v, invalid input %v", tc.err, errdefs.IsNotFound(got), errdefs.IsInvalidInput(got))
			}
			if got.Error() != tc.err.Error() {
				t.Errorf("apiError changed the message: %q", got)
			}
			if tc.unchanged && got != tc.err {
				t.Errorf("apiError(%v) = %#v, want it unchanged", tc.err, got)
			}
		})
	}
	if apiError(nil) != nil {
		t.Error("apiError(nil) is not nil")
	}
}
