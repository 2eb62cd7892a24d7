package controller

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/provider"
)

func TestClassifyStart(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		reason    string
		transient bool
	}{
		{"spec problem", specError(ReasonSecretInvalid, errors.New("parse private key")), ReasonSecretInvalid, false},
		{"wrapped spec problem", fmt.Errorf("start: %w", specError(ReasonInvalidSpec, errors.New("x"))), ReasonInvalidSpec, false},
		{"port", transientError(ReasonKubeletPortUnavailable, errors.New("no free port")), ReasonKubeletPortUnavailable, true},
		{"apiserver", transientError(ReasonAPIServerUnavailable, errors.New("timeout")), ReasonAPIServerUnavailable, true},
		// Unclassified: retried, never read as a spec problem.
		{"unclassified", errors.New("surprise"), ReasonStartFailed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, transient := classifyStart(tc.err)
			if reason != tc.reason || transient != tc.transient {
				t.Errorf("classifyStart = %s, transient %v; want %s, %v", reason, transient, tc.reason, tc.transient)
			}
		})
	}
}

// sshMaterialFor is a private key and a known_hosts trusting a host key for addr.
func sshMaterialFor(t *testing.T, addr string) (key, knownHostsLine []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), []byte(knownhosts.Line([]string{addr}, sshPub) + "\n")
}

// startRuntime's failures come classified: bad SSH material is a Secret
// problem; a port it cannot get is transient.
func TestStartRuntimeClassifiesFailures(t *testing.T) {
	client := fake.NewClientset()
	spec := rbnv1.Default(&rbnv1.RemoteBuildNodeSpec{Address: "127.0.0.1", Port: 1, User: "build",
		SSHSecretRef: rbnv1.SecretReference{Name: "ssh", Namespace: "rbn"}})
	key, kh := sshMaterialFor(t, "127.0.0.1:1")
	noPorts := newFakePorts(10251, 10251)
	noPorts.err = errors.New("no free port")
	deps := func() runtimeDeps {
		return runtimeDeps{
			client: client, shared: informers.NewSharedInformerFactory(client, 0), restCfg: &rest.Config{Host: "https://127.0.0.1:1"},
			recorder: func(string) record.EventRecorder { return record.NewFakeRecorder(10) },
			cfg:      &config.KubeletConfiguration{}, ports: noPorts,
			hosts: provider.NewHostPool(sshconn.NewPool()),
		}
	}
	for _, tc := range []struct {
		name      string
		key       []byte
		reason    string
		transient bool
	}{
		{"unparsable private key", []byte("not a key"), ReasonSecretInvalid, false},
		{"no kubelet port", key, ReasonKubeletPortUnavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := deps()
			rt, err := startRuntime(context.Background(), d, "n1", "h", spec, tc.key, kh, func() {})
			if err == nil {
				rt.stop()
				t.Fatal("started")
			}
			var se *StartError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, not a *StartError", err)
			}
			if reason, transient := classifyStart(err); reason != tc.reason || transient != tc.transient {
				t.Errorf("%v: %s transient %v, want %s %v", err, reason, transient, tc.reason, tc.transient)
			}
		})
	}
}

// A runtime that failed, or could not start for a transient reason, is
// reported NotReady with a Warning event, and started again only after a
// back-off that grows with each failure, unless its spec changes.
func TestRetryLaterBacksOff(t *testing.T) {
	api, rc := newRBNAPI(t)
	rec := record.NewFakeRecorder(10)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer q.ShutDown()
	c := &Controller{rbn: rc, broadcast: recordingBroadcaster{rec: rec}, queue: q,
		restarts: workqueue.NewTypedItemExponentialFailureRateLimiter[string](restartBackoffBase, restartBackoffMax),
		retry:    map[string]retryState{}, runtimes: map[string]*nodeRuntime{},
		clock: func() time.Time { return now }}
	rbn := &rbnv1.RemoteBuildNode{ObjectMeta: metav1.ObjectMeta{Name: "n1", Generation: 2}}
	failure := &PartError{Part: "node controller", Err: errors.New("lease: forbidden")}

	if err := c.retryLater(context.Background(), rbn, "h1", ReasonRuntimeFailed, failure, false); err != nil {
		t.Fatal(err)
	}
	reqs := api.requests()
	if len(reqs) != 1 || reqs[0].method != http.MethodPut {
		t.Fatalf("requests %+v, want one status update", reqs)
	}
	var sent rbnv1.RemoteBuildNode
	if err := json.Unmarshal([]byte(reqs[0].body), &sent); err != nil {
		t.Fatal(err)
	}
	if st := sent.Status; st.Phase != rbnv1.PhaseNotReady || st.LastError == nil || st.LastError.Reason != ReasonRuntimeFailed ||
		!strings.Contains(st.LastError.Message, "node controller") || len(st.Conditions) != 1 || st.Conditions[0].Reason != ReasonRuntimeFailed {
		t.Errorf("status %+v, want NotReady for %s", st, ReasonRuntimeFailed)
	}
	if evs := events(rec); len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning "+ReasonRuntimeFailed+" ") {
		t.Errorf("events %q, want one Warning %s", evs, ReasonRuntimeFailed)
	}

	// Waits for the back-off (1s), not more.
	if !c.waitingRetry("n1", "h1") {
		t.Error("started again at once")
	}
	now = now.Add(restartBackoffBase)
	if c.waitingRetry("n1", "h1") {
		t.Error("still waiting once the back-off passed")
	}
	// The same failure again: the back-off doubles, the event repeats.
	if err := c.retryLater(context.Background(), rbn, "h1", ReasonRuntimeFailed, failure, false); err != nil {
		t.Fatal(err)
	}
	if evs := events(rec); len(evs) != 1 {
		t.Errorf("events %q, want the failure again", evs)
	}
	now = now.Add(restartBackoffBase)
	if !c.waitingRetry("n1", "h1") {
		t.Error("second back-off no longer than the first")
	}
	// A spec or Secret change starts at once, its back-off afresh.
	if c.waitingRetry("n1", "h2") {
		t.Error("a changed spec waits for the back-off of the old one")
	}
	fail := func(reset bool) {
		t.Helper()
		if err := c.retryLater(context.Background(), rbn, "h2", ReasonRuntimeFailed, failure, reset); err != nil {
			t.Fatal(err)
		}
	}
	fail(false)
	now = now.Add(restartBackoffBase)
	if c.waitingRetry("n1", "h2") {
		t.Error("the back-off of a changed spec did not start afresh")
	}
	// A runtime that ran long enough starts its back-off afresh too.
	fail(false) // 2s
	fail(true)  // 1s again
	now = now.Add(restartBackoffBase)
	if c.waitingRetry("n1", "h2") {
		t.Error("back-off not reset after a stable runtime")
	}
}
