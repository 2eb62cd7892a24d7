package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
	utilexec "k8s.io/utils/exec"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podobjects"
	"github.com/remote-build-nodes/rbn/internal/testnet"
	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// A request-then-EOF client (kubectl port-forward closes its side when
// the local client does) still gets the whole answer of the pod.
func TestSpliceClientHalfCloseGetsAnswer(t *testing.T) {
	client, clientSide := testnet.TCPPair(t) // client <-> rbn
	podSide, server := testnet.TCPPair(t)    // rbn <-> pod
	done := make(chan error, 1)
	go func() {
		done <- splice(clientSide, podSide, time.Second)
		clientSide.Close() // as the kubelet API closes the stream
	}()

	answer := bytes.Repeat([]byte("pong "), 100_000)
	go func() { // the pod: read the request to EOF, answer, close
		req, _ := io.ReadAll(server)
		if string(req) != "ping" {
			answer = []byte("bad request " + string(req))
		}
		_, _ = server.Write(answer)
		server.Close()
	}()
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("splice: %v", err)
	}
	if !bytes.Equal(got, answer) {
		t.Errorf("client got %d bytes, want %d", len(got), len(answer))
	}
}

// The pod closing its end finishes the forward even while the client
// keeps its side open.
func TestSplicePodCloseEnds(t *testing.T) {
	_, clientSide := testnet.TCPPair(t)
	podSide, server := testnet.TCPPair(t)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- splice(clientSide, podSide, 100*time.Millisecond) }()
	server.Close()
	select {
	case <-done:
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("splice did not end when the pod closed")
	}
}

// A stream request for a pod bound to this node that has no worker yet
// (the node's runtime just started and adopts its pods) waits for its
// adoption instead of answering "not on this node"; a pod not bound here
// is not found at once; one never adopted fails after adoptWait.
func TestStreamRequestWaitsForAdoption(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	bound := map[string]bool{"ns/p": true, "ns/never": true}
	pods := newPods(PodsConfig{
		NodeName: "node-a", Spec: &rbnv1.RemoteBuildNodeSpec{Address: "192.0.2.10"}, Recorder: record.NewFakeRecorder(10),
		Objects:        podobjects.Listers{Secrets: corev1listers.NewSecretLister(idx), ConfigMaps: corev1listers.NewConfigMapLister(idx)},
		TransferSecret: secretsFrom(idx), Clock: clk,
		Bound: func(namespace, name string) bool { return bound[namespace+"/"+name] },
	}, newFakeRuntime(clk))

	if _, err := pods.worker(t.Context(), "ns", "elsewhere"); !errdefs.IsNotFound(err) {
		t.Errorf("a pod not bound here: %v, want not found at once", err)
	}

	got := make(chan error, 1)
	go func() {
		w, err := pods.worker(t.Context(), "ns", "p")
		if err == nil && w.uid() != testUID {
			err = fmt.Errorf("worker of pod %s", w.uid())
		}
		got <- err
	}()
	testwait.Eventually(t, "the request waiting for the adoption", clk.HasWaiters)
	select {
	case err := <-got:
		t.Fatalf("the request did not wait for the pod's adoption: %v", err)
	default:
	}
	if err := pods.CreatePod(t.Context(), testPod(corev1.RestartPolicyNever, "main")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("after the adoption: %v", err)
	}
	clk.Step(adoptWait) // the satisfied request's timer fires into nothing
	if clk.HasWaiters() {
		t.Fatal("a timer left waiting")
	}

	go func() {
		_, err := pods.worker(t.Context(), "ns", "never")
		got <- err
	}()
	testwait.Eventually(t, "the request waiting for the adoption", clk.HasWaiters)
	clk.Step(adoptWait)
	if err := <-got; err == nil || errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "has not adopted it") {
		t.Errorf("a bound pod never adopted: %v, want the adoption timeout", err)
	}
}

// pipeStream is a client stream that, like a SPDY stream of
// virtual-kubelet's, cannot take the client's next bytes until they are
// read: send returns once splice or the drain read them.
type pipeStream struct {
	*io.PipeReader
	io.Writer
}

func newPipeStream() (s pipeStream, send *io.PipeWriter) {
	r, w := io.Pipe()
	return pipeStream{PipeReader: r, Writer: io.Discard}, w
}

func (pipeStream) Close() error { return nil }

// sent fails the test unless b is read from the stream within a bound.
func sent(t *testing.T, send io.Writer, b string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := send.Write([]byte(b)); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sending %q: %v", b, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing read %q from the client's stream: it is left unread", b)
	}
}

// After the pod's side broke, splice ends and the client's stream is still
// read to its end: a SPDY frame worker delivering the client's next bytes
// must never wait on it.
func TestSpliceReadsTheClientToItsEndAfterThePodBroke(t *testing.T) {
	stream, send := newPipeStream()
	podSide, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- splice(stream, podSide, 10*time.Millisecond) }()
	sent(t, send, "first")
	if _, err := io.ReadFull(server, make([]byte, len("first"))); err != nil {
		t.Fatal(err)
	}
	server.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("splice did not end when the pod's side broke")
	}
	podSide.Close()
	for _, b := range []string{"after the pod broke", "and more"} {
		sent(t, send, b)
	}
	send.Close()
}

// A forward that fails before it reaches the pod (here: the pod is not on
// this node) still reads the client's stream to its end.
func TestPortForwardFailureReadsTheClientToItsEnd(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pods := newPods(PodsConfig{
		NodeName: "node-a", Spec: &rbnv1.RemoteBuildNodeSpec{Address: "192.0.2.10"}, Recorder: record.NewFakeRecorder(10),
		Objects:        podobjects.Listers{Secrets: corev1listers.NewSecretLister(idx), ConfigMaps: corev1listers.NewConfigMapLister(idx)},
		TransferSecret: secretsFrom(idx), Clock: clk,
		Bound: func(string, string) bool { return false },
	}, newFakeRuntime(clk))
	stream, send := newPipeStream()
	if err := pods.PortForward(t.Context(), "ns", "elsewhere", 22, stream); !errdefs.IsNotFound(err) {
		t.Fatalf("forward to a pod not on this node: %v, want not found", err)
	}
	sent(t, send, "SSH-2.0-OpenSSH_9.2\r\n")
	send.Close()
}

// noIO is an exec's client that sends and reads nothing.
type noIO struct{}

func (noIO) Stdin() io.Reader              { return nil }
func (noIO) Stdout() io.WriteCloser        { return nil }
func (noIO) Stderr() io.WriteCloser        { return nil }
func (noIO) TTY() bool                     { return false }
func (noIO) Resize() <-chan vkapi.TermSize { return nil }

// ttyIO is a terminal client that sends sizes and nothing else.
type ttyIO struct {
	noIO
	resize chan vkapi.TermSize
}

func (ttyIO) TTY() bool                       { return true }
func (c ttyIO) Resize() <-chan vkapi.TermSize { return c.resize }

func (h *harness) exec(cmd ...string) error {
	h.t.Helper()
	return h.w.p.Exec(context.Background(), h.w.current().Namespace, h.w.current().Name, "main", cmd, noIO{})
}

// TestExecUsesTheStatusContainer: kubectl exec runs in the container the
// pod's status reports running, without a container list or inspection;
// when podman refuses it (the status is behind the host), the host is
// asked: the command runs in the container running now, or fails saying
// none runs, having run nowhere else.
func TestExecUsesTheStatusContainer(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	first := h.rt.byName(ctrName("main", 0)).ID
	looks := h.rt.looks
	if err := h.exec("true"); err != nil {
		t.Fatal(err)
	}
	h.wantCalls("exec "+first+" true", 1)
	if h.rt.looks != looks {
		t.Errorf("%d container lists or inspections for an exec the status could place", h.rt.looks-looks)
	}
	h.rt.execCode = 3
	var exit utilexec.CodeExitError
	if err := h.exec("false"); !errors.As(err, &exit) || exit.Code != 3 {
		t.Errorf("exit 3: %v", err)
	}
	h.rt.execCode = 0

	// The container ended and was started again; the status still names
	// the first run.
	h.rt.exit(ctrName("main", 0), 1)
	h.sync()
	h.clock.Step(10 * time.Second) // the back-off
	h.sync()
	second := h.rt.byName(ctrName("main", 1))
	if second == nil || !second.Running {
		t.Fatalf("no second run: %q", h.rt.calls)
	}
	h.w.mu.Lock()
	h.w.pod.Status.ContainerStatuses[0].ContainerID = containerIDPrefix + first
	h.w.mu.Unlock()
	if err := h.exec("echo", "once"); err != nil {
		t.Fatal(err)
	}
	if got := h.rt.called("exec "); !slices.Equal(got[len(got)-2:], []string{"exec " + first + " echo once", "exec " + second.ID + " echo once"}) {
		t.Errorf("exec calls %q, want the first run refused, then the second", got)
	}

	// A terminal's session: the refused start took the client's first
	// (and only) size; the session in the running container starts at it.
	h.w.mu.Lock()
	h.w.pod.Status.ContainerStatuses[0].ContainerID = containerIDPrefix + first
	h.w.mu.Unlock()
	sizes := make(chan vkapi.TermSize, 1)
	sizes <- vkapi.TermSize{Width: 132, Height: 43}
	close(sizes) // no other size comes
	if err := h.w.p.Exec(context.Background(), h.w.current().Namespace, h.w.current().Name, "main", []string{"sh"}, ttyIO{resize: sizes}); err != nil {
		t.Fatal(err)
	}
	if got := h.rt.called("exec "); !slices.Equal(got[len(got)-2:], []string{"exec " + first + " sh at 132x43", "exec " + second.ID + " sh at 132x43"}) {
		t.Errorf("exec calls %q, want the second run's session at the client's size", got)
	}

	// Nothing runs now.
	h.rt.exit(ctrName("main", 1), 1)
	n := len(h.rt.called("exec "))
	err := h.exec("true")
	if !errdefs.IsInvalidInput(err) || !strings.Contains(err.Error(), "is not running") {
		t.Errorf("exec with no container running: %v", err)
	}
	if got := h.rt.called("exec ")[n:]; len(got) != 1 {
		t.Errorf("exec calls %q, want the one podman refused", got)
	}
}
