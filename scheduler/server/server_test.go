package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
	utilptr "k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/scheduler"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeSource serves fixed views, claims (by namespace/name) and classes.
type fakeSource struct {
	ready   bool
	views   map[string]scheduler.NodeView
	claims  map[string]*corev1.PersistentVolumeClaim
	classes map[string]string
}

func (f *fakeSource) Claim(namespace, name string) (*corev1.PersistentVolumeClaim, bool) {
	c, ok := f.claims[namespace+"/"+name]
	return c, ok
}

func (f *fakeSource) Provisioner(class string) (string, bool) {
	p, ok := f.classes[class]
	return p, ok
}

func (f *fakeSource) Ready() bool { return f.ready }
func (f *fakeSource) Views(names []string, dst []scheduler.NodeView) []scheduler.NodeView {
	for _, n := range names {
		v, ok := f.views[n]
		if !ok {
			v = scheduler.NodeView{Name: n}
		}
		dst = append(dst, v)
	}
	return dst
}
func (f *fakeSource) View(name string) (scheduler.NodeView, bool) {
	v, ok := f.views[name]
	return v, ok
}

func rbnNode(name string, labels, annotations map[string]string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{rbnv1.LabelRemoteBuildNode: "true"}, Annotations: annotations}}
	for k, v := range labels {
		n.Labels[k] = v
	}
	return n
}

func source() *fakeSource {
	f := &fakeSource{
		ready: true,
		views: map[string]scheduler.NodeView{},
		claims: map[string]*corev1.PersistentVolumeClaim{"ns/work": {
			ObjectMeta: metav1.ObjectMeta{Name: "work", Namespace: "ns"},
			Spec: corev1.PersistentVolumeClaimSpec{
				StorageClassName: utilptr.To("rbn-host-local"),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
			},
		}},
		classes: map[string]string{"rbn-host-local": rbnv1.ProvisionerHostLocal},
	}
	for _, n := range []*corev1.Node{
		rbnNode("low-disk", nil, map[string]string{rbnv1.AnnotationHostFactsOverride: `{"storageFreeBytes": 1073741824}`}),
		rbnNode("draining", map[string]string{rbnv1.LabelDraining: "true"}, nil),
		rbnNode("has-image", nil, map[string]string{rbnv1.AnnotationHostFactsOverride: `{"images": ["localhost/rbn/only-here:1.0"]}`}),
		rbnNode("busy", nil, map[string]string{rbnv1.AnnotationHostFactsOverride: `{"images": ["localhost/rbn/other:1.0"]}`}),
		rbnNode("low-volumes", nil, map[string]string{rbnv1.AnnotationHostFactsOverride: `{"volumeFreeBytes": 1048576}`}),
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	} {
		f.views[n.Name] = scheduler.NodeView{Info: scheduler.NewNodeInfo(n), Name: n.Name}
	}
	v := f.views["busy"]
	v.BoundPods = 9
	f.views["busy"] = v
	return f
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: "ns"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:      "c",
			Image:     "localhost/rbn/only-here:1.0",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("2Gi")}},
		}}},
	}
}

func newHandler(t testing.TB, src Source) http.Handler {
	t.Helper()
	h, err := New(Config{Source: src, Policy: scheduler.Policy{MaxFactsAge: 2 * time.Minute, LoadTolerance: 2}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func post(t testing.TB, h http.Handler, path string, body any) *httptest.ResponseRecorder {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(b)))
	return rec
}

func TestFilterNodeNames(t *testing.T) {
	h := newHandler(t, source())
	names := []string{"low-disk", "draining", "has-image", "busy", "plain", "unknown"}
	rec := post(t, h, "/filter", extenderv1.ExtenderArgs{Pod: testPod(), NodeNames: &names})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	// The scheduler decodes Go field names.
	for _, field := range []string{`"NodeNames"`, `"FailedAndUnresolvableNodes"`} {
		if !strings.Contains(rec.Body.String(), field) {
			t.Errorf("response lacks %s: %s", field, rec.Body)
		}
	}
	var res extenderv1.ExtenderFilterResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(*res.NodeNames, ","); got != "has-image,busy,plain,unknown" {
		t.Errorf("passed %s", got)
	}
	if !strings.Contains(res.FailedAndUnresolvableNodes["low-disk"], "podman storage has 1.0GiB free, the pod needs 2.0GiB") ||
		!strings.Contains(res.FailedAndUnresolvableNodes["draining"], "draining") || res.Error != "" {
		t.Errorf("result %+v", res)
	}
}

// TestFilterClaims: the pod's unbound claims of rbn.dev/host-local are
// looked up in the Source and weighed against each host's volume space.
func TestFilterClaims(t *testing.T) {
	h := newHandler(t, source())
	names := []string{"low-volumes", "has-image", "plain"}
	withClaim := func(claim string) *corev1.Pod {
		p := testPod()
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
		}}}
		return p
	}
	for _, tc := range []struct {
		name, claim, passed, reason string
	}{
		{name: "a 2Gi claim", claim: "work", passed: "has-image,plain",
			reason: "rbn: build host has 1.0MiB free for volumes, the pod's unbound claims of rbn.dev/host-local ask for 2.0GiB"},
		{name: "a claim not in the cache counts nothing", claim: "unknown", passed: "low-volumes,has-image,plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := post(t, h, "/filter", extenderv1.ExtenderArgs{Pod: withClaim(tc.claim), NodeNames: &names})
			var res extenderv1.ExtenderFilterResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(*res.NodeNames, ","); got != tc.passed {
				t.Errorf("passed %s, want %s", got, tc.passed)
			}
			if got := res.FailedAndUnresolvableNodes["low-volumes"]; got != tc.reason {
				t.Errorf("low-volumes: reason %q, want %q", got, tc.reason)
			}
		})
	}
}

func TestFilterNodeList(t *testing.T) {
	h := newHandler(t, source())
	list := &corev1.NodeList{Items: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "draining"}}, {ObjectMeta: metav1.ObjectMeta{Name: "busy"}}}}
	rec := post(t, h, "/filter", extenderv1.ExtenderArgs{Pod: testPod(), Nodes: list})
	var res extenderv1.ExtenderFilterResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Nodes == nil || len(res.Nodes.Items) != 1 || res.Nodes.Items[0].Name != "busy" || res.NodeNames != nil {
		t.Errorf("result %+v", res)
	}
}

func TestPrioritize(t *testing.T) {
	h := newHandler(t, source())
	names := []string{"has-image", "busy", "plain"}
	rec := post(t, h, "/prioritize", extenderv1.ExtenderArgs{Pod: testPod(), NodeNames: &names})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"Host":"has-image","Score":9`) {
		t.Errorf("body %s", rec.Body)
	}
	var list extenderv1.HostPriorityList
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	want := extenderv1.HostPriorityList{{Host: "has-image", Score: 9}, {Host: "busy", Score: 0}, {Host: "plain", Score: 9}}
	if len(list) != 3 || list[0] != want[0] || list[1] != want[1] || list[2] != want[2] {
		t.Errorf("scores %+v, want %+v", list, want)
	}
}

func TestNotReadyAndBadRequests(t *testing.T) {
	src := source()
	src.ready = false
	h := newHandler(t, src)
	names := []string{"busy"}
	rec := post(t, h, "/filter", extenderv1.ExtenderArgs{Pod: testPod(), NodeNames: &names})
	var res extenderv1.ExtenderFilterResult
	_ = json.Unmarshal(rec.Body.Bytes(), &res)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(res.Error, "not synced") {
		t.Errorf("filter before sync: %d %s", rec.Code, rec.Body)
	}
	if rec := post(t, h, "/prioritize", extenderv1.ExtenderArgs{Pod: testPod(), NodeNames: &names}); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("prioritize before sync: %d", rec.Code)
	}
	for path, want := range map[string]int{"/readyz": 503, "/healthz": 200} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}

	src.ready = true
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/filter", strings.NewReader("{")))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("bad JSON: %d", rec.Code)
	}
	if rec := post(t, h, "/filter", extenderv1.ExtenderArgs{NodeNames: &names}); rec.Code != http.StatusBadRequest {
		t.Errorf("no pod: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/filter", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /filter: %d", rec.Code)
	}
}

func TestDebugNode(t *testing.T) {
	h := newHandler(t, source())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/nodes/draining", nil))
	var d NodeDebug
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if !d.Draining || !strings.Contains(d.FilterReason, "draining") || d.Facts.Healthy != nil {
		t.Errorf("debug %+v", d)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/nodes/low-disk", nil))
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if d.Facts.StorageFreeBytes == nil || *d.Facts.StorageFreeBytes != 1<<30 || len(d.Overridden) != 1 || d.Facts.VolumeFreeBytes != nil {
		t.Errorf("debug %+v", d)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/nodes/low-volumes", nil))
	d = NodeDebug{}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	// A pod that declares nothing has no claims: no filter reason.
	if d.Facts.VolumeFreeBytes == nil || *d.Facts.VolumeFreeBytes != 1<<20 || d.FilterReason != "" ||
		!strings.Contains(rec.Body.String(), `"volumeFreeBytes":1048576`) {
		t.Errorf("debug %s", rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/nodes/nope", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown node: %d", rec.Code)
	}
}

// TestDecodeKeepsWhatDecisionsRead: the narrow decoding of the pod gives the
// decisions the same needs as the whole pod.
func TestDecodeKeepsWhatDecisionsRead(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	rich := benchPod()
	rich.Spec.InitContainers[0].RestartPolicy = &always
	rich.Spec.Overhead = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("100Mi")}
	withPodLevel := benchPod()
	withPodLevel.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("7Gi")}}
	withClaims := benchPod()
	withClaims.Spec.Volumes = append(withClaims.Spec.Volumes,
		corev1.Volume{Name: "image-vol", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "image-work", ReadOnly: true}}},
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: utilptr.To("rbn-host-local")},
		}}}},
		corev1.Volume{Name: "again", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "image-work"}}},
	)
	for name, p := range map[string]*corev1.Pod{"bench pod": benchPod(), "sidecar and overhead": rich, "pod-level resources": withPodLevel, "test pod": testPod(), "claims": withClaims} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(extenderv1.ExtenderArgs{Pod: p})
			if err != nil {
				t.Fatal(err)
			}
			a, err := decodeArgs(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			got, want := scheduler.NeedsOf(a.Pod.pod()), scheduler.NeedsOf(p)
			if got.EphemeralBytes != want.EphemeralBytes || got.NativeArch != want.NativeArch || strings.Join(got.Images, ",") != strings.Join(want.Images, ",") {
				t.Errorf("needs from the decoded pod %+v, from the pod %+v", got, want)
			}
			if got, want := scheduler.ClaimNames(a.Pod.pod()), scheduler.ClaimNames(p); !slices.Equal(got, want) {
				t.Errorf("claims of the decoded pod %v, of the pod %v", got, want)
			}
			if a.Pod.Metadata.Name != p.Name || a.Pod.Metadata.Namespace != p.Namespace {
				t.Errorf("name %s/%s", a.Pod.Metadata.Namespace, a.Pod.Metadata.Name)
			}
		})
	}
}

// Each call is counted by verb and status, timed, and a filter's
// candidates counted by result.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := source()
	h, err := New(Config{Source: src, Policy: scheduler.Policy{MaxFactsAge: 2 * time.Minute, LoadTolerance: 2}, Now: func() time.Time { return now }, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"low-disk", "draining", "has-image", "busy", "plain", "unknown"}
	post(t, h, "/filter", extenderv1.ExtenderArgs{Pod: testPod(), NodeNames: &names})
	post(t, h, "/prioritize", extenderv1.ExtenderArgs{Pod: testPod(), NodeNames: &names})
	src.ready = false
	post(t, h, "/filter", extenderv1.ExtenderArgs{Pod: testPod(), NodeNames: &names})
	want := `
# HELP rbn_extender_filtered_nodes_total Candidate nodes of filter calls, by result (passed, failed: the extender ruled the node out for the pod).
# TYPE rbn_extender_filtered_nodes_total counter
rbn_extender_filtered_nodes_total{result="failed"} 2
rbn_extender_filtered_nodes_total{result="passed"} 4
# HELP rbn_extender_requests_total Calls of kube-scheduler to rbn-extender, by verb (filter, prioritize) and HTTP status code.
# TYPE rbn_extender_requests_total counter
rbn_extender_requests_total{code="200",verb="filter"} 1
rbn_extender_requests_total{code="200",verb="prioritize"} 1
rbn_extender_requests_total{code="503",verb="filter"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "rbn_extender_filtered_nodes_total", "rbn_extender_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "rbn_extender_request_duration_seconds"); n != 2 {
		t.Errorf("%d latency histograms, want one per verb", n)
	}
}
