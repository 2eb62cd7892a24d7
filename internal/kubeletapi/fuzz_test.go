package kubeletapi

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// FuzzParseLogOptions parses containerLogs query strings. Properties: no
// panic; what it accepts is what kubelet accepts: tail is -1 exactly when
// tailLines is absent, else at least 0 and equal to opts.Tail;
// limitBytes and sinceSeconds are absent or positive; sinceSeconds and
// sinceTime are never both set; the same query parses the same twice.
func FuzzParseLogOptions(f *testing.F) {
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, _ := url.ParseQuery(rawQuery) // as r.URL.Query: what does not parse is left out
		opts, tail, err := parseLogOptions(q)
		opts2, tail2, err2 := parseLogOptions(q)
		if (err == nil) != (err2 == nil) || tail != tail2 || !opts.SinceTime.Equal(opts2.SinceTime) {
			t.Fatalf("parsed twice, differs: %v/%v %d/%d", err, err2, tail, tail2)
		}
		if err != nil {
			return
		}
		switch {
		case (q.Get("tailLines") == "") != (tail == -1):
			t.Fatalf("tailLines %q gave tail %d", q.Get("tailLines"), tail)
		case tail >= 0 && opts.Tail != tail, tail < -1:
			t.Fatalf("tail %d, opts.Tail %d", tail, opts.Tail)
		case opts.LimitBytes < 0 || opts.SinceSeconds < 0:
			t.Fatalf("negative limitBytes or sinceSeconds accepted: %+v", opts)
		case (q.Get("limitBytes") != "") != (opts.LimitBytes > 0), (q.Get("sinceSeconds") != "") != (opts.SinceSeconds > 0):
			t.Fatalf("limitBytes %q, sinceSeconds %q gave %+v", q.Get("limitBytes"), q.Get("sinceSeconds"), opts)
		case opts.SinceSeconds > 0 && !opts.SinceTime.IsZero():
			t.Fatalf("both sinceSeconds and sinceTime: %+v", opts)
		}
	})
}

// fuzzLog is the fake container log FuzzKubeletRequest serves.
const fuzzLog = "2026-01-02T03:04:05+02:00 first line\nno timestamp\n2026-01-02T01:04:06Z last"

// FuzzKubeletRequest sends requests with fuzzed methods, paths and query
// strings through the whole handler (authentication, routing, the pod
// index, the routes' parsing) of a server whose one node, n1, has a pod
// ns/a and handlers that succeed. Properties: no panic; never a 5xx other
// than 501 (a route rbn-kubelet does not serve): what a caller sends
// wrong is the caller's 4xx; a containerLogs request of the pod is 400
// exactly when its query is invalid, and otherwise 200 with at most
// limitBytes of the log.
func FuzzKubeletRequest(f *testing.F) {
	_, pods := podIndex(f, boundPod("ns", "a", "n1"))
	ok := func(context.Context) ([]*dto.MetricFamily, error) { return nil, nil }
	h := &NodeHandlers{
		ContainerLogs: func(context.Context, string, string, string, vkapi.ContainerLogOpts, int) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(fuzzLog)), nil
		},
		RunInContainer:     func(context.Context, string, string, string, []string, vkapi.AttachIO) error { return nil },
		AttachToContainer:  func(context.Context, string, string, string, vkapi.AttachIO) error { return nil },
		PortForward:        func(context.Context, string, string, int32, io.ReadWriteCloser) error { return nil },
		GetPods:            func(context.Context) ([]*corev1.Pod, error) { return nil, nil },
		GetRunningPods:     func(context.Context) ([]*corev1.Pod, error) { return nil, nil },
		GetStatsSummary:    func(context.Context) (*statsv1alpha1.Summary, error) { return &statsv1alpha1.Summary{}, nil },
		GetMetricsResource: ok, GetMetricsCadvisor: ok, GetMetrics: ok,
	}
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": h}}
	ts := startServer(f, Config{Pods: pods, Handlers: nodes.handlers, Auth: &fakeAuth{node: "*"}}, "n1")
	handler := ts.srv.Handler
	methods := []string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions}

	f.Fuzz(func(t *testing.T, method uint8, nodePort bool, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \t\r\n") {
			return // not a request line a client could send
		}
		port := ts.shared
		if nodePort {
			port = ts.nodePort
		}
		m := methods[int(method)%len(methods)]
		req := httptest.NewRequest(m, "/", nil)
		req.URL, req.RequestURI = u, target
		req.Header.Set("Authorization", "Bearer good")
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		code := rec.Code
		if code >= 500 && code != http.StatusNotImplemented {
			t.Fatalf("%s %s: %d %s", m, target, code, rec.Body)
		}
		if m != http.MethodGet || u.Path != "/containerLogs/ns/a/c" {
			return
		}
		opts, _, perr := parseLogOptions(u.Query())
		switch {
		case perr != nil && code != http.StatusBadRequest:
			t.Fatalf("%s: invalid (%v) but %d", target, perr, code)
		case perr == nil && code != http.StatusOK:
			t.Fatalf("%s: valid but %d %s", target, code, rec.Body)
		case perr == nil && opts.LimitBytes > 0 && rec.Body.Len() > opts.LimitBytes:
			t.Fatalf("%s: %d bytes past limitBytes", target, rec.Body.Len())
		}
		if perr == nil && rec.Body.Len() == 0 {
			t.Fatalf("%s: an empty log", target)
		}
	})
}
