//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// registryProxy stands in front of the test registry at its FAULT_REGISTRY
// address (hack/registry.sh lists it as plain HTTP for rbn-kubelet and the
// hosts). Until release, it stalls every blob larger than stallBlobsOver
// once it has passed stallAfter bytes of it: the response started, then
// nothing, as a registry (or its blob store) that hangs mid-transfer.
type registryProxy struct {
	addr     string // host:port, the image references' registry
	stalls   atomic.Int64
	released chan struct{}
	once     sync.Once
}

const (
	stallBlobsOver = 64 << 10
	stallAfter     = 32 << 10
)

func newRegistryProxy(t *testing.T, reg map[string]string) *registryProxy {
	t.Helper()
	addr := reg["FAULT_REGISTRY"]
	if addr == "" {
		t.Fatal("registry.env has no FAULT_REGISTRY: start the stack's registry again (hack/registry.sh down, then up)")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rp := &registryProxy{addr: addr, released: make(chan struct{})}
	upstream := &url.URL{Scheme: "http", Host: reg["REGISTRY"]}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	proxy.FlushInterval = -1 // what arrives goes out at once: the stall is mid-body
	proxy.ModifyResponse = func(res *http.Response) error {
		if res.Request.Method == http.MethodGet && strings.Contains(res.Request.URL.Path, "/blobs/") &&
			res.StatusCode == http.StatusOK && res.ContentLength > stallBlobsOver {
			res.Body = &stallingBody{rc: res.Body, p: rp, req: res.Request, left: stallAfter}
		}
		return nil
	}
	srv := &http.Server{Handler: proxy}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { rp.release(); _ = srv.Close(); wg.Wait() })
	return rp
}

// release ends the stalls, those under way included: the registry answers
// in full again.
func (rp *registryProxy) release() { rp.once.Do(func() { close(rp.released) }) }

func (rp *registryProxy) isReleased() bool {
	select {
	case <-rp.released:
		return true
	default:
		return false
	}
}

// stallingBody passes left bytes, then blocks until the proxy is released
// or the client goes.
type stallingBody struct {
	rc   io.ReadCloser
	p    *registryProxy
	req  *http.Request
	left int64
	hung bool
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if b.left <= 0 && !b.p.isReleased() {
		if !b.hung {
			b.hung = true
			b.p.stalls.Add(1)
		}
		select {
		case <-b.p.released:
		case <-b.req.Context().Done():
			return 0, b.req.Context().Err()
		}
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *stallingBody) Close() error { return b.rc.Close() }

// proxiedImage is the test registry's IMAGE as pulled through the proxy.
func proxiedImage(reg map[string]string) string { return reg["FAULT_REGISTRY"] + "/rbn/busybox:1.0" }

// proxiedPullPod starts a pod on the isolated host (imagePull:
// ThroughKubelet) whose image comes from the registry through rp, with none
// of its layers on the host beforehand, so that the relay fetches them.
func (s *stack) proxiedPullPod(t *testing.T, rp *registryProxy, reg map[string]string, host int, ns, name string) (image string) {
	t.Helper()
	image = proxiedImage(reg)
	// Every image holding the layer goes, or the host's podman skips the blob.
	_, _ = s.HostPodman(host, "rmi", "--force", "--ignore", reg["IMAGE_EXTRA"], reg["IMAGE"], image)
	s.Kubectl(t, "-n", ns, "create", "secret", "docker-registry", name,
		"--docker-server="+rp.addr, "--docker-username="+reg["USER"], "--docker-password="+reg["PASSWORD"])
	// Always: rbn's list of the host's images may still hold the image a
	// test before pulled, which the rmi above removed behind its back.
	s.imagePod(t, ns, name, s.Host(t, host)["NAME"], image, name, `      imagePullPolicy: Always
      command: [sh, -c, "cat /etc/rbn-test-image"]`)
	framework.Eventually(t, "the registry stalling mid-blob under the pull", 2*time.Minute, func() (bool, string) {
		return rp.stalls.Load() > 0, framework.DescribeStatus(s.Pod(t, ns, name))
	})
	return image
}

// A registry that stops sending in the middle of a blob: rbn-kubelet's
// relay cancels the pull once podman.imagePullProgressDeadline (1 min)
// passes with no byte, the pod says why (ErrImagePull, ImagePullBackOff,
// naming the registry and the blob), and the pull is tried again with
// back-off, which succeeds once the registry answers.
func TestImageRelayRegistryStallsMidBlob(t *testing.T) {
	s := newStack(t)
	reg := s.registry(t)
	i := s.isolatedHost(t)
	s.WaitNodeReady(t, s.Host(t, i)["NAME"], corev1.ConditionTrue, nil, 90*time.Second)
	rp := newRegistryProxy(t, reg)
	ns := s.Namespace(t)
	fault := framework.RecordFault(t, "registry stalling mid-blob")
	fault.Jobs(1)
	fault.Lost(1) // until the job succeeded
	image := s.proxiedPullPod(t, rp, reg, i, ns, "stalled")
	stalled := time.Now()

	var msg string
	framework.Eventually(t, "the pull cancelled and backing off", 3*time.Minute, func() (bool, string) {
		p := s.Pod(t, ns, "stalled")
		if len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil {
			w := p.Status.ContainerStatuses[0].State.Waiting
			msg = w.Reason + ": " + w.Message
			return w.Reason == "ImagePullBackOff" || w.Reason == "ErrImagePull", msg
		}
		return false, framework.DescribeStatus(p)
	})
	fault.Figure(fmt.Sprintf("pull cancelled %.1f s after the registry stalled (deadline 60 s)", time.Since(stalled).Seconds()))
	if !strings.Contains(msg, "sent nothing of blob sha256:") || !strings.Contains(msg, rp.addr) || !strings.Contains(msg, image) {
		t.Errorf("waiting %q: want the image, the registry and the stalled blob", msg)
	}
	if !hasEvent(s.Events(t, ns, "Pod", "stalled"), "Failed", "sent nothing of blob") {
		t.Errorf("no Failed event saying the registry stalled")
	}

	rp.release()
	released := time.Now()
	s.WaitPodPhase(t, ns, "stalled", corev1.PodSucceeded, 3*time.Minute)
	if !t.Failed() {
		fault.Lost(0)
	}
	fault.Figure(fmt.Sprintf("job succeeded %.1f s after the registry answered again (pull back-off 10 s)", time.Since(released).Seconds()))
	if n := rp.stalls.Load(); n != 1 {
		t.Errorf("%d stalled blob requests, want 1: the relay asked the stalled registry again", n)
	}
}

// The host's SSH connection cut in the middle of a relayed pull: the pull
// is not counted against the image (no back-off); it waits for the host,
// then starts over, and the job succeeds once.
func TestImageRelaySSHCutMidPull(t *testing.T) {
	s := newStack(t)
	reg := s.registry(t)
	i := s.isolatedHost(t)
	node := s.Host(t, i)["NAME"]
	s.WaitNodeReady(t, node, corev1.ConditionTrue, nil, 90*time.Second)
	rp := newRegistryProxy(t, reg)
	ns := s.Namespace(t)
	fault := framework.RecordFault(t, "SSH dropped during a relayed pull")
	fault.Jobs(1)
	fault.Lost(1) // until the job succeeded
	s.proxiedPullPod(t, rp, reg, i, ns, "cut")

	restoreSSH := s.cutSSH(t, i)
	cut := time.Now()
	s.waitEvent(t, ns, "cut", "WaitingForHost", "stopped answering while pulling image")
	fault.Figure(fmt.Sprintf("pull given up for the host %.1f s after the cut", time.Since(cut).Seconds()))
	rp.release()
	restoreSSH()
	fault.Figure(fmt.Sprintf("SSH cut for %.1f s", time.Since(cut).Seconds()))
	s.waitEvent(t, ns, "cut", "HostBack", "the pull of image")
	p := s.WaitPodPhase(t, ns, "cut", corev1.PodSucceeded, 3*time.Minute)
	if !t.Failed() {
		fault.Lost(0)
	}
	fault.Figure(fmt.Sprintf("job succeeded %.1f s after the cut", time.Since(cut).Seconds()))
	for _, e := range s.Events(t, ns, "Pod", "cut") {
		if e.Reason == "BackOff" || e.Reason == "Failed" {
			t.Errorf("event %s %q: the host's loss counted against the image", e.Reason, e.Message)
		}
	}
	if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].RestartCount != 0 {
		t.Errorf("container statuses %+v, want one run", cs)
	} else {
		fault.Duplicated(0)
	}
}
