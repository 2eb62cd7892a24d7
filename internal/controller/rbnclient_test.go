package controller

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// rbnAPI stands in for the apiserver's remotebuildnodes endpoint: it records
// every request rbnClient makes and answers each with code (200 when 0).
type rbnAPI struct {
	mu   sync.Mutex
	reqs []rbnRequest
	code int
}

type rbnRequest struct {
	method, path, contentType string
	body                      string
}

func newRBNAPI(t *testing.T) (*rbnAPI, *rbnClient) {
	t.Helper()
	api := &rbnAPI{}
	srv := httptest.NewServer(http.HandlerFunc(api.serveHTTP))
	t.Cleanup(srv.Close)
	rc, err := newRBNClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return api, rc
}

func (a *rbnAPI) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.reqs = append(a.reqs, rbnRequest{method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"), body: string(body)})
	code := a.code
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if code == 0 {
		_, _ = w.Write([]byte(`{}`))
		return
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: metav1.StatusReason(http.StatusText(code)),
	})
}

func (a *rbnAPI) setCode(code int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.code = code
}

// requests returns the requests so far and forgets them.
func (a *rbnAPI) requests() []rbnRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.reqs
	a.reqs = nil
	return r
}

const rbnPath = "/apis/rbn.dev/v1alpha1/remotebuildnodes/"

func TestRBNClientUpdateStatus(t *testing.T) {
	api, rc := newRBNAPI(t)
	obj := &rbnv1.RemoteBuildNode{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "7"},
		Status:     rbnv1.RemoteBuildNodeStatus{Phase: rbnv1.PhaseReady},
	}
	if err := rc.updateStatus(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	reqs := api.requests()
	if len(reqs) != 1 || reqs[0].method != http.MethodPut || reqs[0].path != rbnPath+"n1/status" {
		t.Fatalf("requests = %+v, want one PUT of %sn1/status", reqs, rbnPath)
	}
	var sent rbnv1.RemoteBuildNode
	if err := json.Unmarshal([]byte(reqs[0].body), &sent); err != nil {
		t.Fatal(err)
	}
	if sent.Status.Phase != rbnv1.PhaseReady || sent.ResourceVersion != "7" {
		t.Errorf("sent %s", reqs[0].body)
	}

	// writeStatus tells a conflict from other failures.
	api.setCode(http.StatusConflict)
	if err := rc.updateStatus(context.Background(), obj); !apierrors.IsConflict(err) {
		t.Errorf("err = %v, want a Conflict", err)
	}
}

func TestRBNClientSetFinalizers(t *testing.T) {
	api, rc := newRBNAPI(t)
	obj := &rbnv1.RemoteBuildNode{ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "7"}}
	if err := rc.setFinalizers(context.Background(), obj, []string{"a", rbnv1.Finalizer}); err != nil {
		t.Fatal(err)
	}
	reqs := api.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests = %+v, want one", reqs)
	}
	r := reqs[0]
	if r.method != http.MethodPatch || r.path != rbnPath+"n1" || r.contentType != "application/merge-patch+json" {
		t.Errorf("request %s %s (%s), want a merge patch of %sn1", r.method, r.path, r.contentType, rbnPath)
	}
	// The resourceVersion makes the patch fail rather than drop a finalizer
	// someone added meanwhile.
	want := `{"metadata":{"finalizers":["a","rbn.dev/node-cleanup"],"resourceVersion":"7"}}`
	if r.body != want {
		t.Errorf("patch = %s, want %s", r.body, want)
	}
}
