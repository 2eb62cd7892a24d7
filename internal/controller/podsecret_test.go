package controller

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// The transfers' Secret is read with the token of the pod's service
// account, never with rbn-kubelet's credentials, and the apiserver's
// refusal comes back as it is.
func TestSecretAsPod(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if got := r.Header.Get("Authorization"); got != "Bearer token-of-builder-bound-to-uid-1" {
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(apierrors.NewForbidden(corev1.Resource("secrets"), "s3", nil).Status())
			return
		}
		if r.URL.Path != "/api/v1/namespaces/builds/secrets/s3" {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(apierrors.NewNotFound(corev1.Resource("secrets"), r.URL.Path).Status())
			return
		}
		_ = json.NewEncoder(w).Encode(&corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "builds", Name: "s3"}, Data: map[string][]byte{"k": []byte("v")}})
	}))
	t.Cleanup(srv.Close)
	var asked []string
	tokens := func(_ context.Context, pd *corev1.Pod, audiences []string, exp int64) (string, time.Time, error) {
		asked = append(asked, pd.Name)
		if audiences != nil || exp != podSecretTokenSeconds {
			t.Errorf("token asked for audiences %q, %d s: want the apiserver's, %d s", audiences, exp, podSecretTokenSeconds)
		}
		return "token-of-" + pd.Spec.ServiceAccountName + "-bound-to-" + string(pd.UID), time.Time{}, nil
	}
	// rbn-kubelet's own credentials, which must not be used.
	base := &rest.Config{Host: srv.URL, BearerToken: "rbn-kubelet"}
	read, err := secretAsPod(base, tokens)
	if err != nil {
		t.Fatal(err)
	}
	pd := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "builds", Name: "build", UID: "uid-1"}, Spec: corev1.PodSpec{ServiceAccountName: "builder"}}
	s, err := read(context.Background(), pd, "s3")
	if err != nil || string(s.Data["k"]) != "v" {
		t.Fatalf("read as the pod: %v, %v", s, err)
	}
	other := pd.DeepCopy()
	other.Spec.ServiceAccountName = "default"
	if _, err := read(context.Background(), other, "s3"); !apierrors.IsForbidden(err) {
		t.Fatalf("read as an account the apiserver refuses: %v, want Forbidden", err)
	}
	if len(asked) != 2 {
		t.Errorf("%d tokens asked for two reads, want 2", len(asked))
	}
}
