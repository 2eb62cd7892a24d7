package provider

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	testingclock "k8s.io/utils/clock/testing"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podforward"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/svcrelay"
	"github.com/remote-build-nodes/rbn/internal/testwait"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// The test pod's cluster Service (ns/db, port 80), its address in the pod,
// and its socket directory and socket on the host, spelled out rather than
// computed so that a change of either shows.
const (
	testServiceListen = "127.0.100.1:80"
	testServicesDir   = "/run/rbn/services/" + testUID
	testServiceSocket = testServicesDir + "/forward.sock"
)

var testForwarder = pod.ForwarderName(testUID)

// servicesPod is testPod's pod naming the Service db of its namespace in
// the annotation rbn.dev/cluster-services.
func servicesPod(policy corev1.RestartPolicy) *corev1.Pod {
	pd := testPod(policy, "main")
	pd.Annotations = map[string]string{rbnv1.AnnotationClusterServices: "db"}
	return pd
}

// servicesEnv is what a node needs for its pods' cluster Services, with
// stand-ins for the build host (a fake runtime whose SSH remote forwards
// are real Unix listeners of this machine) and for the Service (an echo
// server the relay's resolver sends db:80 to). One env can serve the
// harnesses of successive rbn-kubelets over the same host (restarted).
type servicesEnv struct {
	rt      *copyRecorder
	clock   *testingclock.FakeClock
	program []byte // rbn-forward-linux-amd64 in forwarderDir
	dir     string // forwarderDir
	relay   *svcrelay.Relay
	sockets *hostSockets
}

func newServicesEnv(t *testing.T) *servicesEnv {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	fake := newFakeRuntime(clk)
	fake.info = &podman.HostInfo{PodmanVersion: "5.4.0", Arch: "amd64"}
	fake.images["registry.test/main:1"] = true
	env := &servicesEnv{rt: &copyRecorder{fakeRuntime: fake}, clock: clk, dir: t.TempDir(), sockets: newHostSockets(t)}
	fake.listenUnix = env.sockets.listen
	env.program = []byte("\x7fELF rbn-forward for amd64, as the test wrote it")
	if err := os.WriteFile(filepath.Join(env.dir, "rbn-forward-linux-amd64"), env.program, 0o644); err != nil {
		t.Fatal(err)
	}
	echo := echoServer(t)
	db := svcrelay.Route{Namespace: "ns", Service: "db", Port: 80}
	relay, err := svcrelay.New(svcrelay.Config{
		Metrics: svcrelay.NewMetrics(nil),
		Resolver: resolverFunc(func(_ context.Context, r svcrelay.Route) (string, error) {
			if r != db {
				return "", &svcrelay.RouteError{Route: r, Reason: svcrelay.ReasonServiceNotFound, Detail: "not the test's Service"}
			}
			return echo, nil
		}),
		Dial: (&net.Dialer{}).DialContext,
	})
	if err != nil {
		t.Fatal(err)
	}
	env.relay = relay
	return env
}

// harness is a worker for pd on a node of env's host whose Pods run (the
// relay's context is the test's), as harnessOn makes one.
func (env *servicesEnv) harness(t *testing.T, pd *corev1.Pod) *harness {
	t.Helper()
	h := podsOn(t, env.rt.fakeRuntime, env.clock)
	// The worker's runtime records the archives copied in (before the
	// worker is made: its parts take the runtime from Pods).
	h.pods.rt = env.rt
	h.pods.cfg.ServiceRelay = env.relay
	h.pods.cfg.Forwarders = NewForwarders(env.dir)
	h.pods.cfg.Services = corev1listers.NewServiceLister(h.objects)
	h.pods.ctx = h.ctx // what Run sets
	if err := h.objects.Add(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}); err != nil {
		t.Fatal(err)
	}
	h.w = newPodWorker(h.pods, pd)
	h.pods.addLocked(h.w)
	// Before the sockets' directory goes: the relay may be listening.
	t.Cleanup(h.w.stopServices)
	return h
}

// copyRecorder is the fake runtime keeping the archives CopyInto received,
// by "container:path".
type copyRecorder struct {
	*fakeRuntime
	mu       sync.Mutex
	archives map[string][]byte
}

func (r *copyRecorder) CopyInto(ctx context.Context, container, p string, archive io.Reader) error {
	data, err := io.ReadAll(archive)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if r.archives == nil {
		r.archives = map[string][]byte{}
	}
	r.archives[container+":"+p] = data
	r.mu.Unlock()
	return r.fakeRuntime.CopyInto(ctx, container, p, bytes.NewReader(data))
}

// tarEntries lists the entries of the archive copied into container at p,
// each "name mode type data".
func (r *copyRecorder) tarEntries(t *testing.T, container, p string) []string {
	t.Helper()
	r.mu.Lock()
	data, ok := r.archives[container+":"+p]
	r.mu.Unlock()
	if !ok {
		t.Fatalf("nothing copied into %s at %s", container, p)
	}
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %o %c %q", h.Name, h.Mode, h.Typeflag, b))
	}
}

// hostSockets makes the fake host's SSH remote forwards: each ListenUnix
// is a Unix listener of its own in a directory short enough for a socket
// path (t.TempDir's can be too long).
type hostSockets struct {
	dir string
	mu  sync.Mutex
	lns []*hostSocket
}

// hostSocket is a listener ListenUnix gave, for the host's path, with
// whether it was closed.
type hostSocket struct {
	net.Listener
	hostPath string
	once     sync.Once
	closed   chan struct{}
}

func (l *hostSocket) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *hostSocket) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

func newHostSockets(t *testing.T) *hostSockets {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return &hostSockets{dir: dir}
}

func (s *hostSockets) listen(hostPath string) (net.Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ln, err := net.Listen("unix", filepath.Join(s.dir, strconv.Itoa(len(s.lns))+".sock"))
	if err != nil {
		return nil, err
	}
	l := &hostSocket{Listener: ln, hostPath: hostPath, closed: make(chan struct{})}
	s.lns = append(s.lns, l)
	return l, nil
}

func (s *hostSockets) all() []*hostSocket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lns)
}

// await waits for the nth listener made (from 1) and returns it.
func (s *hostSockets) await(t *testing.T, n int) *hostSocket {
	t.Helper()
	testwait.Eventually(t, fmt.Sprintf("the relay's listener %d", n), func() bool { return len(s.all()) >= n })
	return s.all()[n-1]
}

// resolverFunc adapts a function to svcrelay.Resolver.
type resolverFunc func(ctx context.Context, r svcrelay.Route) (string, error)

func (f resolverFunc) Resolve(ctx context.Context, r svcrelay.Route) (string, error) {
	return f(ctx, r)
}

// echoServer stands for the Service: a TCP server on 127.0.0.1 that sends
// back what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(testwait.Timeout))
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// echoThrough connects to the socket as the pod's forwarder does for a
// connection to db:80 and checks that what it sends comes back from the
// Service.
func echoThrough(t *testing.T, socket string) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatalf("connect to the relay: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(testwait.Timeout)); err != nil {
		t.Fatal(err)
	}
	if err := podforward.WriteHeader(c, testServiceListen); err != nil {
		t.Fatal(err)
	}
	msg := "hello db through " + socket
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read the Service's answer: %v (read %q)", err, got)
	}
	if string(got) != msg {
		t.Fatalf("the Service answered %q, want %q", got, msg)
	}
}

// callIndex is where call (exactly) is among the runtime's calls, -1 when
// it was not made.
func callIndex(rt *fakeRuntime, call string) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Index(rt.calls, call)
}

func callCount(rt *fakeRuntime, call string) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	n := 0
	for _, c := range rt.calls {
		if c == call {
			n++
		}
	}
	return n
}

// wantInOrder checks that each call was made, the first of each after the
// first of the one before.
func wantInOrder(t *testing.T, rt *fakeRuntime, calls ...string) {
	t.Helper()
	last := -1
	for _, c := range calls {
		i := callIndex(rt, c)
		if i < 0 {
			t.Fatalf("no call %q; all calls: %q", c, rt.called(""))
		}
		if i < last {
			t.Fatalf("call %q before %q; all calls: %q", c, calls, rt.called(""))
		}
		last = i
	}
}

func TestClusterServicesSetUpWithTheSandbox(t *testing.T) {
	env := newServicesEnv(t)
	h := env.harness(t, servicesPod(corev1.RestartPolicyAlways))
	h.sync()
	h.wantPhase(corev1.PodRunning)

	// The socket directory, then the forwarder: created, given the
	// program, started.
	wantInOrder(t, h.rt, "make-path "+testServicesDir+" dir=true",
		"create "+testForwarder, "copy-into "+testForwarder+" /", "start "+testForwarder)
	for _, c := range []string{"create " + testForwarder, "copy-into " + testForwarder + " /", "start " + testForwarder} {
		if n := callCount(h.rt, c); n != 1 {
			t.Errorf("%d calls %q, want 1", n, c)
		}
	}
	h.rt.mu.Lock()
	spec := h.rt.specs[testForwarder]
	h.rt.mu.Unlock()
	if spec == nil {
		t.Fatalf("no forwarder %s created", testForwarder)
	}
	// The fake's infra containers run the image "infra-image".
	want := pod.ForwarderSpec(h.w.plan, testUID, "infra-image", testServicesDir)
	if !reflect.DeepEqual(spec, want) {
		got, _ := json.Marshal(spec)
		w, _ := json.Marshal(want)
		t.Errorf("forwarder spec\n%s\nwant\n%s", got, w)
	}
	if spec.Image != "infra-image" || spec.Pod != h.w.plan.PodName || !slices.Contains(spec.Command, "--listen="+testServiceListen) {
		t.Errorf("forwarder image %q pod %q command %q: want the infra container's image, the pod's podman pod, --listen=%s",
			spec.Image, spec.Pod, spec.Command, testServiceListen)
	}
	wantProgram := []string{fmt.Sprintf("rbn-forward 755 %c %q", tar.TypeReg, env.program)}
	if got := env.rt.tarEntries(t, testForwarder, "/"); !slices.Equal(got, wantProgram) {
		t.Errorf("copied into the forwarder %q, want %q", got, wantProgram)
	}

	// The relay: the stale socket removed, then listened on.
	ln := env.sockets.await(t, 1)
	if ln.hostPath != testServiceSocket {
		t.Errorf("relay listens on %s, want %s", ln.hostPath, testServiceSocket)
	}
	wantInOrder(t, h.rt, "remove-paths "+testServiceSocket, "listen-unix "+testServiceSocket)
	echoThrough(t, ln.Addr().String())
}

func TestClusterServicesRelayListensAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lose makes the relay's listener fail, and back lets it listen
		// again.
		lose func(t *testing.T, h *harness, ln *hostSocket)
		back func(t *testing.T, h *harness, env *servicesEnv)
	}{{
		name: "once the host reconnects",
		lose: func(_ *testing.T, h *harness, ln *hostSocket) {
			h.rt.setReady(false)
			_ = ln.Close() // with the SSH connection
		},
		back: func(_ *testing.T, h *harness, _ *servicesEnv) { h.rt.setReady(true) }, // fires Changed; the clock stays
	}, {
		name: "after Retry.Create when the host stayed up",
		lose: func(_ *testing.T, _ *harness, ln *hostSocket) { _ = ln.Close() },
		back: func(t *testing.T, h *harness, env *servicesEnv) {
			testwait.Eventually(t, "the relay's retry timer", h.clock.HasWaiters)
			h.clock.Step(h.pods.cfg.Retry.Create - time.Millisecond)
			if !h.clock.HasWaiters() || len(env.sockets.all()) != 1 {
				t.Fatalf("the relay listened again before Retry.Create (%s)", h.pods.cfg.Retry.Create)
			}
			h.clock.Step(time.Millisecond)
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			env := newServicesEnv(t)
			h := env.harness(t, servicesPod(corev1.RestartPolicyAlways))
			h.sync()
			first := env.sockets.await(t, 1)
			echoThrough(t, first.Addr().String())

			tc.lose(t, h, first)
			tc.back(t, h, env)
			second := env.sockets.await(t, 2)
			if second.hostPath != testServiceSocket {
				t.Errorf("relay listens again on %s, want %s", second.hostPath, testServiceSocket)
			}
			h.wantCalls("listen-unix "+testServiceSocket, 2)
			h.wantCalls("remove-paths "+testServiceSocket, 2) // what sshd left
			echoThrough(t, second.Addr().String())
		})
	}
}

func TestClusterServicesForwarderKeptAcrossARestart(t *testing.T) {
	// A restarted rbn-kubelet adopts the pod and sets its sandbox up
	// again: the forwarder there is kept when it runs, and made anew when
	// it does not (it may lack its program: see ensureForwarder).
	for _, tc := range []struct {
		name    string
		exited  bool
		creates int // of the forwarder, both rbn-kubelets': each with its copy and start
	}{
		{"running", false, 1},
		{"exited", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newServicesEnv(t)
			pd := servicesPod(corev1.RestartPolicyAlways)
			first := env.harness(t, pd)
			first.sync()
			first.wantPhase(corev1.PodRunning)
			first.w.stopServices() // with its process
			if tc.exited {
				first.rt.exit(testForwarder, 2)
			}

			h := env.harness(t, pd)
			h.sync()
			h.wantPhase(corev1.PodRunning)
			h.wantCalls("create-pod ", 2) // the second found the first's podman pod
			if n := callCount(h.rt, "make-path "+testServicesDir+" dir=true"); n != 2 {
				t.Errorf("socket directory made %d times, want at each set-up (2)", n)
			}
			h.wantCalls("create "+testForwarder, tc.creates)
			h.wantCalls("copy-into "+testForwarder, tc.creates)
			h.wantCalls("start "+testForwarder, tc.creates)
			h.wantCalls("remove "+testForwarder, tc.creates-1)
			if st, err := h.rt.InspectContainer(h.ctx, testForwarder); err != nil || !st.Running {
				t.Errorf("forwarder %+v, %v: want running", st, err)
			}
			echoThrough(t, env.sockets.await(t, 2).Addr().String())
		})
	}
}

func TestClusterServicesNoForwarderForTheHostsArch(t *testing.T) {
	env := newServicesEnv(t)
	env.rt.info = &podman.HostInfo{PodmanVersion: "5.4.0", Arch: "riscv64"}
	h := env.harness(t, servicesPod(corev1.RestartPolicyAlways))
	if r := h.sync(); r.next != 0 {
		t.Errorf("sync = %+v, want nothing pending", r)
	}
	st := h.status()
	if st.Phase != corev1.PodFailed || st.Reason != pod.ReasonInvalidClusterServices || !strings.Contains(st.Message, `architecture "riscv64"`) {
		t.Fatalf("status phase %s reason %q message %q: want Failed, %s, naming riscv64", st.Phase, st.Reason, st.Message, pod.ReasonInvalidClusterServices)
	}
	h.wantEvent(h.events(), "Warning "+pod.ReasonInvalidClusterServices+" cluster services: no rbn-forward")
	h.wantCalls("create "+testForwarder, 0)
	h.wantCalls("create "+ctrName("main", 0), 0)
	// Nothing of the failed pod runs to use the relay.
	if h.w.services != nil {
		t.Error("the failed pod's relay still runs")
	}
	for _, ln := range env.sockets.all() {
		if !ln.isClosed() {
			t.Errorf("the failed pod's listener %s is open", ln.hostPath)
		}
	}
}

func TestClusterServicesStopWithThePod(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy corev1.RestartPolicy
		end    func(h *harness)
		// removed: the socket directory goes (only with the pod).
		removed bool
	}{{
		name:    "deleted",
		policy:  corev1.RestartPolicyAlways,
		end:     func(h *harness) { h.w.terminate(0) },
		removed: true,
	}, {
		name:   "ended",
		policy: corev1.RestartPolicyNever,
		end:    func(h *harness) { h.rt.exit(ctrName("main", 0), 0) },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			env := newServicesEnv(t)
			h := env.harness(t, servicesPod(tc.policy))
			h.sync()
			h.wantPhase(corev1.PodRunning)
			ln := env.sockets.await(t, 1)
			echoThrough(t, ln.Addr().String())

			tc.end(h)
			h.sync()
			if h.w.services != nil {
				t.Error("the relay still runs")
			}
			if !ln.isClosed() {
				t.Fatal("the relay's listener is open")
			}
			if c, err := net.Dial("unix", ln.Addr().String()); err == nil {
				_ = c.Close()
				t.Error("a forwarder's connection reached the stopped relay")
			}
			want := 0
			if tc.removed {
				want = 1
			}
			if n := callCount(h.rt, "remove-paths "+testServicesDir); n != want {
				t.Errorf("socket directory removed %d times, want %d; all calls: %q", n, want, h.rt.called(""))
			}
			// An ended pod keeps its containers (for its logs) but runs
			// nothing: its forwarder is stopped, once. A deleted one's goes
			// with its podman pod.
			stops := callCount(h.rt, "stop "+pod.ForwarderName(h.w.uid())+" 0s")
			if wantStops := 1 - want; stops != wantStops {
				t.Errorf("forwarder stopped %d times, want %d; all calls: %q", stops, wantStops, h.rt.called(""))
			}
			h.sync()
			if n := callCount(h.rt, "stop "+pod.ForwarderName(h.w.uid())+" 0s"); n != stops {
				t.Errorf("a later sync stopped the forwarder again (%d times)", n)
			}
		})
	}
}

func TestClusterServicesNoneForAPodWithout(t *testing.T) {
	// A node with cluster Services, a pod naming none: nothing of them on
	// the host, at its start or its deletion.
	env := newServicesEnv(t)
	h := env.harness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.w.terminate(0)
	if r := h.sync(); !r.finished {
		t.Fatalf("teardown sync = %+v, want finished", r)
	}
	for _, c := range h.rt.called("") {
		if strings.Contains(c, servicesRoot) || strings.Contains(c, testForwarder) || strings.HasPrefix(c, "listen-unix") {
			t.Errorf("call %q for a pod without cluster Services", c)
		}
	}
	if n := len(env.sockets.all()); n != 0 {
		t.Errorf("%d listeners for a pod without cluster Services", n)
	}
}

func TestForwardersReadOncePerArch(t *testing.T) {
	dir := t.TempDir()
	program := []byte("rbn-forward for arm64")
	file := filepath.Join(dir, "rbn-forward-linux-arm64")
	f := NewForwarders(dir)

	// Missing: an error naming the architecture and file, not kept.
	_, err := f.tar("arm64")
	var missing *NoForwarderError
	if !errors.As(err, &missing) || missing.Arch != "arm64" || missing.Path != file || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("tar(arm64) without the file: %v, want a NoForwarderError for arm64 and %s", err, file)
	}
	if err := os.WriteFile(file, program, 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := f.tar("arm64")
	if err != nil {
		t.Fatalf("tar(arm64) once the file is there: %v", err)
	}
	// Read once: the file's later fate does not matter.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	again, err := f.tar("arm64")
	if err != nil || !bytes.Equal(again, first) {
		t.Fatalf("tar(arm64) again: %v, equal %t: want the first read's", err, bytes.Equal(again, first))
	}
	tr := tar.NewReader(bytes.NewReader(first))
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(tr)
	if h.Name != "rbn-forward" || h.Mode != 0o755 || h.Typeflag != tar.TypeReg || !bytes.Equal(data, program) {
		t.Errorf("entry %s mode %o type %c data %q: want rbn-forward, 0755, the program", h.Name, h.Mode, h.Typeflag, data)
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("more than the program in the tar: %v", err)
	}
	// Another architecture reads its own file.
	if _, err := f.tar("amd64"); !errors.As(err, &missing) || missing.Arch != "amd64" {
		t.Errorf("tar(amd64) = %v, want a NoForwarderError for amd64", err)
	}
}
