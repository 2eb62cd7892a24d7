package provider

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/egress"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// stageFrom stages one input from an S3 service at endpoint under policy and
// returns the pod's events and the outcome.
func stageFrom(t *testing.T, endpoint string, policy *egress.Policy) ([]string, error) {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := idx.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s3"}, Data: map[string][]byte{
		rbnv1.S3KeyEndpoint: []byte(endpoint), rbnv1.S3KeyAccessKeyID: []byte("a"), rbnv1.S3KeySecretAccessKey: []byte("s"),
	}}); err != nil {
		t.Fatal(err)
	}
	relay, err := s3relay.New(s3relay.Config{Egress: policy})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var events []string
	event := func(_ *corev1.Pod, _, reason, msg string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, reason+": "+msg)
	}
	tr := newPodTransfers(newFakeRuntime(clk), clk, event, secretsFrom(idx), relay, "uid-1")
	plan := &pod.Plan{PodName: "rbn-uid-1", Volumes: []pod.Volume{{K8sName: "work", Kind: pod.VolumeEmptyDir, PodmanName: "rbn-uid-1-work"}},
		Transfers: &rbnv1.Transfers{SecretName: "s3", Inputs: []rbnv1.TransferInput{{Bucket: "b", Key: "k", Volume: "work", Path: "in.bin"}}}}
	pd := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-1"}}
	err = tr.stage(context.Background(), pd, plan, "infra")
	return events, err
}

func TestInputFromDeniedEndpointFailsThePodAtOnce(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer srv.Close()
	deny, err := egress.New(egress.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stageFrom(t, srv.URL, deny)
	var failed *podFailure
	if !errors.As(err, &failed) || failed.reason != pod.ReasonInputTransferFailed {
		t.Fatalf("stage: %v, want an %s failure", err, pod.ReasonInputTransferFailed)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, want := range []string{"s3://b/k", host, "loopback", "egress.allowedCIDRs", "after 1 attempt(s)"} {
		if !strings.Contains(failed.msg, want) {
			t.Errorf("message %q does not say %q", failed.msg, want)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("%d request(s) reached the denied endpoint", hits.Load())
	}
}

func TestDownloadWithoutChecksumSaysLengthOnly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// No checksum header and no ETag: nothing but the length to verify.
		w.Header().Set("Content-Length", "5")
		_, _ = w.Write([]byte("hello"))
	}))
	defer srv.Close()
	allow, err := egress.New(egress.Config{AllowedCIDRs: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	events, err := stageFrom(t, srv.URL, allow)
	if err != nil {
		t.Fatalf("stage: %v", err)
	}
	var downloaded string
	for _, e := range events {
		if strings.HasPrefix(e, "Downloaded: ") {
			downloaded = e
		}
	}
	if !strings.Contains(downloaded, "verified by length only (no checksum)") {
		t.Errorf("Downloaded event %q does not say the content was verified by length only; events %q", downloaded, events)
	}
}

// The build host lost in the middle of a download (its SSH connection
// cut): the transfer waits for the host instead of using up its attempts,
// and starts over once podman answers again; that attempt does not count.
func TestDownloadWaitsForALostHost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = w.Write([]byte("hello"))
	}))
	defer srv.Close()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := idx.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s3"}, Data: map[string][]byte{
		rbnv1.S3KeyEndpoint: []byte(srv.URL), rbnv1.S3KeyAccessKeyID: []byte("a"), rbnv1.S3KeySecretAccessKey: []byte("s"),
	}}); err != nil {
		t.Fatal(err)
	}
	allow, err := egress.New(egress.Config{AllowedCIDRs: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	// One attempt: only an attempt that does not count can be retried.
	relay, err := s3relay.New(s3relay.Config{Egress: allow, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt := newFakeRuntime(clk)
	// The copy into the host breaks with its connection: the host is gone.
	rt.faults = map[string][]error{"copy-into": {errors.New("ssh: connection lost")}}
	var mu sync.Mutex
	var events []string
	waiting := make(chan struct{})
	event := func(_ *corev1.Pod, _, reason, msg string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, reason+": "+msg)
		if reason == "WaitingForHost" {
			close(waiting)
		}
	}
	rt.setReady(false)
	go func() {
		<-waiting
		rt.setReady(true) // reconnected
	}()
	tr := newPodTransfers(rt, clk, event, secretsFrom(idx), relay, "uid-1")
	plan := &pod.Plan{PodName: "rbn-uid-1", Volumes: []pod.Volume{{K8sName: "work", Kind: pod.VolumeEmptyDir, PodmanName: "rbn-uid-1-work"}},
		Transfers: &rbnv1.Transfers{SecretName: "s3", Inputs: []rbnv1.TransferInput{{Bucket: "b", Key: "k", Volume: "work", Path: "in.bin"}}}}
	pd := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-1"}}
	if err := tr.stage(context.Background(), pd, plan, "infra"); err != nil {
		t.Fatalf("stage: %v; events %q", err, events)
	}
	mu.Lock()
	defer mu.Unlock()
	var reasons []string
	for _, e := range events {
		reasons = append(reasons, strings.SplitN(e, ":", 2)[0])
	}
	if want := "Downloading WaitingForHost HostBack Downloaded"; strings.Join(reasons, " ") != want {
		t.Errorf("events %q, want the reasons %s", events, want)
	}
	if got := len(rt.called("copy-into ")); got != 1 {
		t.Errorf("%d copies reached the host, want the one after it came back", got)
	}
}
