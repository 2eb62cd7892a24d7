//go:build bench

// TestBench measures rbn on the local stack against a floor measured in the
// same run (the same work done directly through the podman bindings over an
// SSH connection of the same kind) and writes docs/benchmarks.md.
// hack/bench.sh (make bench) brings a stack up, sets the environment, runs it
// and tears the stack down. It never fails on speed: only on a broken stack.
//
// Build tag bench, not e2e: this file imports the podman bindings, which
// build only with the tags of hack/goenv.sh, and a -tags flag replaces those
// (go test -tags e2e would not build it). Run and vet it with
//
//	go test|vet -tags bench,remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper ./e2e/

package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

const (
	// benchImage is on every local build host (hack/hosts.sh).
	benchImage = "localhost/rbn/busybox:1.0"
	// benchLabel marks everything the benchmark creates: pods, podman
	// containers of the floor, RemoteBuildNodes of the scale test.
	benchLabel     = "rbn.dev/bench"
	benchNameLabel = "rbn.dev/bench-name"
	// remoteNodeLabel and remoteNodeTaint are what every rbn node carries.
	remoteNodeLabel = "rbn.dev/remote-build-node"
	kubeletName     = "rbn-kubelet"
)

// ---------------------------------------------------------------------------------------------
// Configuration.

type benchConfig struct {
	out     string // the report (docs/benchmarks.md)
	command string // the command line that produced it, for the report
	// runs is the number of measured pod start/status runs, after warmup
	// runs that are discarded (the first pod on a host builds podman's pause image).
	runs, warmup        int
	burstPods, rounds   int
	scaleNodes, perNode int
	idle                time.Duration // each idle measurement window
	scaleBudget         time.Duration // no new wave of scale pods after it
	sections            map[string]bool
}

func benchConfigFromEnv(t *testing.T) benchConfig {
	t.Helper()
	c := benchConfig{
		out:         os.Getenv("RBN_BENCH_OUT"),
		command:     os.Getenv("RBN_BENCH_COMMAND"),
		runs:        benchEnvInt(t, "RBN_BENCH_RUNS", 20),
		warmup:      benchEnvInt(t, "RBN_BENCH_WARMUP", 2),
		burstPods:   benchEnvInt(t, "RBN_BENCH_BURST_PODS", 100),
		rounds:      benchEnvInt(t, "RBN_BENCH_BURST_ROUNDS", 3),
		scaleNodes:  benchEnvInt(t, "RBN_BENCH_SCALE_NODES", 50),
		perNode:     benchEnvInt(t, "RBN_BENCH_SCALE_PODS_PER_NODE", 20),
		idle:        time.Duration(benchEnvInt(t, "RBN_BENCH_IDLE_SECONDS", 60)) * time.Second,
		scaleBudget: time.Duration(benchEnvInt(t, "RBN_BENCH_SCALE_BUDGET_SECONDS", 180)) * time.Second,
		sections:    map[string]bool{},
	}
	if c.command == "" {
		c.command = "go test -tags bench,... -run '^TestBench$' ./e2e/ (command line not given: set RBN_BENCH_COMMAND)"
	}
	secs := os.Getenv("RBN_BENCH_SECTIONS")
	if secs == "" {
		secs = "latency,burst,scale"
	}
	for _, s := range strings.Split(secs, ",") {
		c.sections[strings.TrimSpace(s)] = true
	}
	return c
}

func benchEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// ---------------------------------------------------------------------------------------------
// The benchmark and its report.

type bench struct {
	cfg    benchConfig
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	state  string
	root   string
	hosts  []benchHost
	floors []*floorConn // one per host, same order
	clkTck float64
	logf   func(format string, args ...any)
	rep    benchReport
}

type benchReport struct {
	started, finished time.Time
	machine           machineInfo
	hosts             []hostFacts
	latency           *latencyResult
	latencyErr        error
	burst             *burstResult
	burstErr          error
	scale             *scaleResult
	scaleErr          error
	scaleNodes        []string // every node of the scale test, for idle samples
}

func TestBench(t *testing.T) {
	cfg := benchConfigFromEnv(t)
	if cfg.out == "" {
		t.Skip("RBN_BENCH_OUT is not set: run the benchmarks with `make bench`")
	}
	b := newBench(t, cfg)
	ctx := context.Background()
	b.rep.started = time.Now()
	b.rep.machine = b.machine(ctx, t)
	for _, f := range b.floors {
		info, err := f.pm.Info(ctx)
		if err != nil {
			t.Fatalf("podman info on %s: %v", f.host.name, err)
		}
		b.rep.hosts = append(b.rep.hosts, hostFacts{name: f.host.name, info: info})
	}
	defer func() {
		b.rep.finished = time.Now()
		b.rep.machine.loadEnd = readLoadavg()
		b.rep.machine.othersEnd = b.otherStacks()
		if s := b.rep.scale; s != nil {
			peak := 0.0
			for _, x := range s.samples {
				if f := strings.Fields(x.load); len(f) > 0 {
					if v, err := strconv.ParseFloat(f[0], 64); err == nil {
						peak = max(peak, v)
					}
				}
			}
			b.rep.machine.loadPeak = fmt.Sprintf("%.1f", peak)
		}
		if err := os.WriteFile(cfg.out, []byte(b.render()), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
		t.Logf("report written to %s", cfg.out)
	}()

	if cfg.sections["latency"] {
		b.quiesce(ctx)
		start := time.Now()
		b.rep.latency, b.rep.latencyErr = b.measureLatency(ctx)
		if b.rep.latency != nil {
			b.rep.latency.throttle = b.kubeletThrottling(start, time.Now())
		}
		if b.rep.latencyErr != nil {
			t.Errorf("pod start/status latency: %v", b.rep.latencyErr)
		}
	}
	if cfg.sections["burst"] {
		b.quiesce(ctx)
		b.rep.burst, b.rep.burstErr = b.measureBurst(ctx)
		if b.rep.burstErr != nil {
			t.Errorf("burst: %v", b.rep.burstErr)
		}
	}
	if cfg.sections["scale"] {
		b.rep.scale, b.rep.scaleErr = b.measureScale(ctx)
		if b.rep.scaleErr != nil {
			t.Errorf("scale: %v", b.rep.scaleErr)
		}
	}
}

func newBench(t *testing.T, cfg benchConfig) *bench {
	t.Helper()
	b := &bench{cfg: cfg, logf: t.Logf}
	for _, k := range []string{"RBN_E2E_KUBECONFIG", "RBN_E2E_STATE", "RBN_E2E_ROOT"} {
		if os.Getenv(k) == "" {
			t.Fatalf("%s is not set: run the benchmarks with `make bench`", k)
		}
	}
	b.state, b.root = os.Getenv("RBN_E2E_STATE"), os.Getenv("RBN_E2E_ROOT")
	rc, err := clientcmd.BuildConfigFromFlags("", os.Getenv("RBN_E2E_KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	// The burst creates its pods at once: client-go's default 5 QPS would
	// measure the client's rate limiter.
	rc.QPS, rc.Burst = 500, 1000
	rc.UserAgent = "rbn-bench"
	if b.kube, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	if b.dyn, err = dynamic.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	if b.hosts, err = readBenchHosts(b.state); err != nil {
		t.Fatal(err)
	}
	if len(b.hosts) == 0 {
		t.Fatalf("no build hosts under %s/hosts", b.state)
	}
	b.clkTck = 100
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			b.clkTck = float64(n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, h := range b.hosts {
		f, err := dialFloor(ctx, h)
		if err != nil {
			t.Fatalf("floor connection to %s: %v", h.name, err)
		}
		b.floors = append(b.floors, f)
	}
	t.Cleanup(func() {
		for _, f := range b.floors {
			f.close()
		}
	})
	return b
}

// ---------------------------------------------------------------------------------------------
// Build hosts and the floor: the bindings over our own SSH connection.

type benchHost struct {
	index                                   int
	name, address, user, socket, known, key string
	port                                    int
}

// readBenchHosts reads every host.env hack/hosts.sh wrote, by index.
func readBenchHosts(state string) ([]benchHost, error) {
	dirs, err := filepath.Glob(filepath.Join(state, "hosts", "host*", "host.env"))
	if err != nil {
		return nil, err
	}
	var hosts []benchHost
	for _, f := range dirs {
		env, err := readEnvFile(f)
		if err != nil {
			return nil, err
		}
		idx, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(f)), "host"))
		if err != nil {
			continue
		}
		port, err := strconv.Atoi(env["PORT"])
		if err != nil {
			return nil, fmt.Errorf("%s: PORT: %w", f, err)
		}
		hosts = append(hosts, benchHost{
			index: idx, name: env["NAME"], address: env["ADDRESS"], port: port, user: env["USER"],
			socket: env["PODMAN_SOCKET"], known: env["KNOWN_HOSTS"], key: env["PRIVATE_KEY"],
		})
	}
	slices.SortFunc(hosts, func(a, b benchHost) int { return a.index - b.index })
	return hosts, nil
}

func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	return env, sc.Err()
}

// floorConn is what rbn-kubelet holds per host, built the same way
// (provider.NewHost): an sshconn client with its interactive session (no
// Nagle stall) and a podman client dialing the socket through it.
type floorConn struct {
	host   benchHost
	ssh    *sshconn.Client
	pm     *podman.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func dialFloor(ctx context.Context, h benchHost) (*floorConn, error) {
	key, err := os.ReadFile(h.key)
	if err != nil {
		return nil, err
	}
	known, err := os.ReadFile(h.known)
	if err != nil {
		return nil, err
	}
	sc, err := sshconn.New(sshconn.Config{
		Host: h.address, Port: h.port, User: h.user, PrivateKey: key, KnownHosts: known, Interactive: true,
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	f := &floorConn{host: h, ssh: sc, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(f.done); sc.Run(runCtx) }()
	for {
		changed := sc.Changed()
		st := sc.State()
		if st.Connected {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			f.close()
			return nil, fmt.Errorf("ssh %s: not connected (%v): %w", sc.Addr(), st.Err, ctx.Err())
		}
	}
	f.pm, err = podman.New(podman.Config{
		Name: "bench-" + h.name,
		Dial: func(ctx context.Context) (net.Conn, error) { return sc.Dial(ctx, "unix", h.socket) },
	})
	if err != nil {
		f.close()
		return nil, err
	}
	if err := f.pm.Connect(ctx); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

func (f *floorConn) close() {
	if f.pm != nil {
		_ = f.pm.Close()
	}
	f.cancel()
	<-f.done
}

func (b *bench) floorOf(node string) *floorConn {
	for _, f := range b.floors {
		if f.host.name == node {
			return f
		}
	}
	return nil
}

// floorContainer is the bare container of the floor: the pod's image and
// command, nothing rbn adds.
func floorContainer(name, podID string, labels map[string]string, command []string) *specgen.SpecGenerator {
	s := specgen.NewSpecGenerator(benchImage, false)
	s.Name = name
	s.Pod = podID
	s.Labels = labels
	s.Command = command
	s.RestartPolicy = "no"
	return s
}

// floorStart creates and starts a container (in a podman pod of its own when
// inPod, as rbn runs every container: infra container, shared ipc/net/uts)
// and returns once an inspection says it runs.
func floorStart(ctx context.Context, f *floorConn, name string, inPod bool, labels map[string]string, command []string) error {
	podID := ""
	if inPod {
		ps := specgen.NewPodSpecGenerator()
		ps.Name = name + "-pod"
		ps.Labels = labels
		ps.NoInfra = false
		ps.SharedNamespaces = []string{"ipc", "net", "uts"}
		id, err := f.pm.CreatePod(ctx, ps)
		if err != nil {
			return err
		}
		if err := f.pm.StartPod(ctx, ps.Name); err != nil {
			return err
		}
		podID = id
	}
	if _, err := f.pm.CreateContainer(ctx, floorContainer(name, podID, labels, command)); err != nil {
		return err
	}
	if err := f.pm.StartContainer(ctx, name); err != nil {
		return err
	}
	st, err := f.pm.InspectContainer(ctx, name)
	if err != nil {
		return err
	}
	if !st.Running && !st.Exited() {
		return fmt.Errorf("container %s is %s after start", name, st.Status)
	}
	return nil
}

func floorRemove(f *floorConn, name string, inPod bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if inPod {
		_ = f.pm.RemovePod(ctx, name+"-pod", 0)
		return
	}
	_ = f.pm.RemoveContainer(ctx, name, true)
}

// ---------------------------------------------------------------------------------------------
// Watching pods: the time each phase is first delivered by the apiserver.

type podTimes struct {
	created, scheduled, running, succeeded, failed, deleted time.Time
	node                                                    string
	uid                                                     types.UID
	last                                                    *corev1.Pod
}

func (p *podTimes) done() bool { return !p.succeeded.IsZero() || !p.failed.IsZero() }

// podTracker records, for every pod matching a selector, when the watch
// delivered each phase (client-go RetryWatcher: a broken watch resumes from
// the last resource version, so no event is lost).
type podTracker struct {
	mu      sync.Mutex
	pods    map[string]*podTimes
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

type podWatcher struct {
	kube      kubernetes.Interface
	ns, label string
}

func (w podWatcher) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	o.LabelSelector = w.label
	return w.kube.CoreV1().Pods(w.ns).Watch(ctx, o)
}

func trackPods(ctx context.Context, kube kubernetes.Interface, ns, selector string) (*podTracker, error) {
	list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	rw, err := watchtools.NewRetryWatcherWithContext(wctx, list.ResourceVersion, podWatcher{kube, ns, selector})
	if err != nil {
		cancel()
		return nil, err
	}
	tr := &podTracker{pods: map[string]*podTimes{}, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		defer rw.Stop()
		for ev := range rw.ResultChan() {
			now := time.Now()
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			tr.observe(ev.Type, p, now)
		}
	}()
	return tr, nil
}

func (tr *podTracker) observe(typ watch.EventType, p *corev1.Pod, now time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	pt := tr.pods[p.Name]
	if pt == nil {
		pt = &podTimes{}
		tr.pods[p.Name] = pt
	}
	pt.uid, pt.last = p.UID, p
	if p.Spec.NodeName != "" && pt.scheduled.IsZero() {
		pt.scheduled, pt.node = now, p.Spec.NodeName
	}
	switch p.Status.Phase {
	case corev1.PodRunning:
		if pt.running.IsZero() {
			pt.running = now
		}
	case corev1.PodSucceeded:
		if pt.succeeded.IsZero() {
			pt.succeeded = now
		}
	case corev1.PodFailed:
		if pt.failed.IsZero() {
			pt.failed = now
		}
	}
	if typ == watch.Deleted && pt.deleted.IsZero() {
		pt.deleted = now
	}
	close(tr.changed)
	tr.changed = make(chan struct{})
}

func (tr *podTracker) setCreated(name string, t time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	pt := tr.pods[name]
	if pt == nil {
		pt = &podTimes{}
		tr.pods[name] = pt
	}
	pt.created = t
}

func (tr *podTracker) get(name string) podTimes {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if pt := tr.pods[name]; pt != nil {
		return *pt
	}
	return podTimes{}
}

func (tr *podTracker) snapshot() map[string]podTimes {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[string]podTimes, len(tr.pods))
	for k, v := range tr.pods {
		out[k] = *v
	}
	return out
}

// wait returns once cond holds for the tracked pods, or fails after timeout
// saying what was awaited and what cond last reported.
func (tr *podTracker) wait(ctx context.Context, what string, timeout time.Duration, cond func(map[string]*podTimes) (bool, string)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		tr.mu.Lock()
		ok, state := cond(tr.pods)
		changed := tr.changed
		tr.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("timed out after %s waiting for %s; last seen: %s", timeout, what, state)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (tr *podTracker) stop() {
	tr.cancel()
	<-tr.done
}

// ---------------------------------------------------------------------------------------------
// Pods and namespaces.

// benchPod is a job-shaped pod (restartPolicy Never) with the scheduling
// boilerplate of a remote build node pod, placed on node through the
// scheduler (a required node affinity on the node's name: every local node
// has the same kubernetes.io/hostname).
func benchPod(ns, name, node string, labels map[string]string, command []string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			NodeSelector:                  map[string]string{remoteNodeLabel: "true"},
			Tolerations:                   []corev1.Toleration{{Key: remoteNodeLabel, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Containers:                    []corev1.Container{{Name: "main", Image: benchImage, Command: command}},
		},
	}
	if node != "" {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
			}}},
		}}
	}
	return p
}

func (b *bench) newNamespace(ctx context.Context, prefix string) (string, error) {
	ns, err := b.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: map[string]string{benchLabel: "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	// Pods are refused until the namespace's default ServiceAccount exists.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.kube.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return ns.Name, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("default service account in %s: %w", ns.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *bench) deleteNamespace(ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = b.kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
}

// deletePods deletes the namespace's pods matching selector with grace
// period 0 and waits until rbn has removed them from the hosts. The pod
// objects go at once (grace 0, or a pod that has ended: the apiserver does
// not wait for the kubelet then), so the hosts are what tells the end.
func (b *bench) deletePods(ctx context.Context, ns, selector string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := b.kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)},
		metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, err
	}
	err = b.waitHostsClean(ctx, map[string]string{pod.LabelPodNamespace: ns}, timeout)
	return time.Since(start), err
}

// waitHostsClean waits until no host has a podman pod or container carrying
// every one of labels.
func (b *bench) waitHostsClean(ctx context.Context, labels map[string]string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := 0
		for _, f := range b.floors {
			ps, err := f.pm.ListPods(ctx, labels)
			if err != nil {
				return err
			}
			cs, err := f.pm.ListContainers(ctx, labels)
			if err != nil {
				return err
			}
			left += len(ps) + len(cs)
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for the hosts to hold nothing labelled %v: %d podman pods and containers left", timeout, labels, left)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ---------------------------------------------------------------------------------------------
// 1 and 5: pod start latency and status latency, one pod at a time on one node.

type latencyResult struct {
	node string
	// Per measured run. rbn: create -> Running (watch), its parts, and
	// container exit (podman's FinishedAt) -> Succeeded (watch).
	rbnStart, rbnScheduled, rbnToContainerStarted, rbnStartedToRunning, rbnStatus []time.Duration
	throttle                                                                      throttleStat
	// From the host's podman events (see podStages).
	stageFirst, stageSandbox, stageVolumes, stageContainer []time.Duration
	// Floor: create+start until running, bare and in a podman pod, and
	// exit -> "died" event delivered over the same SSH link.
	floorStart, floorPodStart, floorStatus, floorPodStatus []time.Duration
}

func (b *bench) measureLatency(ctx context.Context) (*latencyResult, error) {
	host := b.hosts[0]
	f := b.floors[0]
	res := &latencyResult{node: host.name}
	ns, err := b.newNamespace(ctx, "bench-latency")
	if err != nil {
		return nil, err
	}
	defer b.deleteNamespace(ns)
	tr, err := trackPods(ctx, b.kube, ns, benchLabel+"=latency")
	if err != nil {
		return nil, err
	}
	defer tr.stop()
	command := []string{"sleep", "2"}
	total := b.cfg.warmup + b.cfg.runs
	for i := 0; i < total; i++ {
		measured := i >= b.cfg.warmup
		// Rotate the order so that neither side always runs first after a pause.
		steps := []func() error{
			func() error {
				r, err := b.rbnLatencyRun(ctx, tr, ns, host.name, i, command)
				if err == nil && measured {
					res.rbnStart = append(res.rbnStart, r.start)
					res.rbnScheduled = append(res.rbnScheduled, r.scheduled)
					res.rbnToContainerStarted = append(res.rbnToContainerStarted, r.containerStarted)
					res.rbnStartedToRunning = append(res.rbnStartedToRunning, r.startedToRunning)
					res.rbnStatus = append(res.rbnStatus, r.status)
					if r.stages.ok {
						res.stageFirst = append(res.stageFirst, r.stages.toFirst)
						res.stageSandbox = append(res.stageSandbox, r.stages.sandbox)
						res.stageVolumes = append(res.stageVolumes, r.stages.volumes)
						res.stageContainer = append(res.stageContainer, r.stages.container)
					}
				}
				return err
			},
			func() error {
				start, status, err := floorLatencyRun(ctx, f, fmt.Sprintf("bench-floor-%02d", i), false, command)
				if err == nil && measured {
					res.floorStart = append(res.floorStart, start)
					res.floorStatus = append(res.floorStatus, status)
				}
				return err
			},
			func() error {
				start, status, err := floorLatencyRun(ctx, f, fmt.Sprintf("bench-floorpod-%02d", i), true, command)
				if err == nil && measured {
					res.floorPodStart = append(res.floorPodStart, start)
					res.floorPodStatus = append(res.floorPodStatus, status)
				}
				return err
			},
		}
		for k := range steps {
			if err := steps[(k+i)%len(steps)](); err != nil {
				return res, fmt.Errorf("run %d: %w", i, err)
			}
		}
		if measured {
			b.logf("latency run %d: rbn start %s status %s; floor start %s (in pod %s) status %s", i-b.cfg.warmup,
				ms(res.rbnStart[len(res.rbnStart)-1]), ms(res.rbnStatus[len(res.rbnStatus)-1]),
				ms(res.floorStart[len(res.floorStart)-1]), ms(res.floorPodStart[len(res.floorPodStart)-1]),
				ms(res.floorStatus[len(res.floorStatus)-1]))
		}
	}
	return res, nil
}

type rbnRun struct {
	start, scheduled, containerStarted, startedToRunning, status time.Duration
	stages                                                       podStages
}

// podStages splits scheduled -> container started by the host's own podman
// events: the first podman object of the pod, the podman pod started (infra
// container running), the file volumes filled (the loader container gone),
// the pod's container started. Zero when the events are not readable.
type podStages struct {
	toFirst, sandbox, volumes, container time.Duration
	ok                                   bool
}

// hostEvent is one line of a local host's podman events log (hack/hosts.sh
// configures events_logger = "file" under the host's tmp dir).
type hostEvent struct {
	Name, Status, Type string
	Time               time.Time
	Attributes         map[string]string
}

func readHostEvents(h benchHost) ([]hostEvent, error) {
	f, err := os.Open(filepath.Join(filepath.Dir(h.socket), "tmp", "events", "events.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []hostEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var e hostEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

func stagesOf(events []hostEvent, uid string, scheduled time.Time) podStages {
	var first, podStart, loaderGone, mainStart time.Time
	for _, e := range events {
		if !strings.Contains(e.Name, uid) && e.Attributes[pod.LabelPodUID] != uid {
			continue
		}
		if first.IsZero() {
			first = e.Time
		}
		switch {
		case e.Type == "pod" && e.Status == "start" && podStart.IsZero():
			podStart = e.Time
		case e.Type == "container" && strings.HasSuffix(e.Name, "-loader") && e.Status == "remove" && loaderGone.IsZero():
			loaderGone = e.Time
		case e.Type == "container" && strings.Contains(e.Name, "-main-") && e.Status == "start" && mainStart.IsZero():
			mainStart = e.Time
		}
	}
	if first.IsZero() || podStart.IsZero() || mainStart.IsZero() {
		return podStages{}
	}
	st := podStages{toFirst: first.Sub(scheduled), sandbox: podStart.Sub(first), ok: true}
	volumesDone := podStart
	if !loaderGone.IsZero() {
		st.volumes, volumesDone = loaderGone.Sub(podStart), loaderGone
	}
	st.container = mainStart.Sub(volumesDone)
	return st
}

func (b *bench) rbnLatencyRun(ctx context.Context, tr *podTracker, ns, node string, i int, command []string) (rbnRun, error) {
	name := fmt.Sprintf("start-%02d", i)
	p := benchPod(ns, name, node, map[string]string{benchLabel: "latency"}, command)
	t0 := time.Now()
	tr.setCreated(name, t0)
	if _, err := b.kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return rbnRun{}, err
	}
	// Every run starts on a clean host: wait until rbn removed this pod's podman objects.
	defer func() {
		_ = b.kube.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if uid := tr.get(name).uid; uid != "" {
			_ = b.waitHostsClean(context.Background(), map[string]string{pod.LabelPodUID: string(uid)}, 2*time.Minute)
		}
	}()
	err := tr.wait(ctx, "pod "+name+" to end", 2*time.Minute, func(pods map[string]*podTimes) (bool, string) {
		pt := pods[name]
		if pt == nil || pt.last == nil {
			return false, "not seen"
		}
		return pt.done(), string(pt.last.Status.Phase)
	})
	if err != nil {
		return rbnRun{}, err
	}
	pt := tr.get(name)
	if !pt.failed.IsZero() || pt.running.IsZero() {
		return rbnRun{}, fmt.Errorf("pod %s: failed or never seen Running: %+v", name, pt.last.Status)
	}
	// The container's own start and exit times, from podman (the pod
	// status's times have second precision).
	f := b.floorOf(pt.node)
	if f == nil {
		return rbnRun{}, fmt.Errorf("pod %s ran on %s, not a local host", name, pt.node)
	}
	cs, err := f.pm.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(pt.uid), pod.LabelContainer: "main"})
	if err != nil || len(cs) != 1 {
		return rbnRun{}, fmt.Errorf("pod %s's container on %s: %d found, %v", name, pt.node, len(cs), err)
	}
	st, err := f.pm.InspectContainer(ctx, cs[0].ID)
	if err != nil {
		return rbnRun{}, err
	}
	run := rbnRun{
		start:            pt.running.Sub(t0),
		scheduled:        pt.scheduled.Sub(t0),
		containerStarted: st.StartedAt.Sub(t0),
		startedToRunning: pt.running.Sub(st.StartedAt),
		status:           pt.succeeded.Sub(st.FinishedAt),
	}
	if events, err := readHostEvents(f.host); err == nil {
		run.stages = stagesOf(events, string(pt.uid), pt.scheduled)
	}
	return run, nil
}

// floorLatencyRun starts a container directly, then waits for podman's
// "died" event of it on an event stream opened beforehand, as rbn does.
func floorLatencyRun(ctx context.Context, f *floorConn, name string, inPod bool, command []string) (start, status time.Duration, err error) {
	labels := map[string]string{benchLabel: "latency", benchNameLabel: name}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := f.pm.Events(ectx, map[string]string{benchNameLabel: name})
	if err != nil {
		return 0, 0, err
	}
	defer floorRemove(f, name, inPod)
	t0 := time.Now()
	if err := floorStart(ctx, f, name, inPod, labels, command); err != nil {
		return 0, 0, err
	}
	start = time.Since(t0)
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	var died time.Time
	for died.IsZero() {
		select {
		case ev, ok := <-events:
			if !ok {
				return 0, 0, fmt.Errorf("event stream of %s closed", f.host.name)
			}
			if ev.Action == "died" && ev.Name == name {
				died = time.Now()
			}
		case <-timeout.C:
			return 0, 0, fmt.Errorf("no died event for %s", name)
		}
	}
	st, err := f.pm.InspectContainer(ctx, name)
	if err != nil {
		return 0, 0, err
	}
	return start, died.Sub(st.FinishedAt), nil
}

// ---------------------------------------------------------------------------------------------
// 2: burst.

type burstRound struct {
	// rbn: from the first create until every pod was seen Running (a pod
	// whose Running was never delivered counts at its Succeeded) / Succeeded.
	allRunning, allSucceeded time.Duration
	perPodStart              []time.Duration
	missedRunning, failed    int
	cpuSeconds               float64
	rssBeforeKB, hwmKB       int64
	deleteAll                time.Duration
	perNode                  map[string]int
	throttle                 throttleStat
	// Per-pod medians from the hosts' events (see podStages): scheduled ->
	// first podman object, podman pod, file volumes, container.
	stages [4]time.Duration
	// floor: every container started (inspected running) / "died" delivered.
	floorAllRunning, floorAllExited time.Duration
	floorClientCPU                  float64 // this process, for scale
	// floor in pods: each container in a podman pod of its own.
	floorPodAllRunning, floorPodAllExited time.Duration
}

type burstResult struct {
	pods   int
	rounds []burstRound
}

func (b *bench) measureBurst(ctx context.Context) (*burstResult, error) {
	res := &burstResult{pods: b.cfg.burstPods}
	for r := 0; r < b.cfg.rounds; r++ {
		var round burstRound
		steps := []func() error{
			func() error { return b.rbnBurst(ctx, r, &round) },
			func() (err error) {
				round.floorAllRunning, round.floorAllExited, round.floorClientCPU, err = b.floorBurst(ctx, r, false)
				return err
			},
			func() (err error) {
				round.floorPodAllRunning, round.floorPodAllExited, _, err = b.floorBurst(ctx, r, true)
				return err
			},
		}
		for k := range steps {
			if err := steps[(k+r)%len(steps)](); err != nil {
				return res, fmt.Errorf("round %d: %w", r, err)
			}
		}
		b.logf("burst round %d: rbn all Running %s, all Succeeded %s, CPU %.2fs, peak RSS %d MiB, throttling %s; floor all running %s, all exited %s; in pods %s, %s",
			r, ms(round.allRunning), ms(round.allSucceeded), round.cpuSeconds, round.hwmKB/1024, round.throttle,
			ms(round.floorAllRunning), ms(round.floorAllExited), ms(round.floorPodAllRunning), ms(round.floorPodAllExited))
		res.rounds = append(res.rounds, round)
	}
	return res, nil
}

func (b *bench) rbnBurst(ctx context.Context, r int, out *burstRound) error {
	// VmHWM is the process's lifetime peak: a fresh process makes it the burst's.
	if err := b.restartKubelet(ctx); err != nil {
		return err
	}
	pid, err := b.kubeletPID()
	if err != nil {
		return err
	}
	ns, err := b.newNamespace(ctx, "bench-burst")
	if err != nil {
		return err
	}
	defer b.deleteNamespace(ns)
	sel := benchLabel + "=burst"
	tr, err := trackPods(ctx, b.kube, ns, sel)
	if err != nil {
		return err
	}
	defer tr.stop()
	if st, err := procStatus(pid); err == nil {
		out.rssBeforeKB = st["VmRSS"]
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	errs := make(chan error, b.cfg.burstPods)
	var wg sync.WaitGroup
	for i := 0; i < b.cfg.burstPods; i++ {
		name := fmt.Sprintf("burst-%03d", i)
		node := b.hosts[i%len(b.hosts)].name
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.setCreated(name, time.Now())
			_, err := b.kube.CoreV1().Pods(ns).Create(ctx, benchPod(ns, name, node, map[string]string{benchLabel: "burst"}, []string{"sleep", "2"}), metav1.CreateOptions{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
	}
	err = tr.wait(ctx, "every burst pod to end", 10*time.Minute, func(pods map[string]*podTimes) (bool, string) {
		n := 0
		for _, p := range pods {
			if p.done() {
				n++
			}
		}
		return n == b.cfg.burstPods, fmt.Sprintf("%d of %d ended", n, b.cfg.burstPods)
	})
	cpu1, cerr := procCPU(pid)
	st, serr := procStatus(pid)
	if err != nil {
		return err
	}
	if cerr != nil || serr != nil {
		return fmt.Errorf("rbn-kubelet pid %d: %v %v", pid, cerr, serr)
	}
	out.cpuSeconds = (cpu1 - cpu0) / b.clkTck
	out.throttle = b.kubeletThrottling(t0, time.Now())
	out.hwmKB = st["VmHWM"]
	out.perNode = map[string]int{}
	events := map[string][]hostEvent{}
	for _, h := range b.hosts {
		if e, err := readHostEvents(h); err == nil {
			events[h.name] = e
		}
	}
	var first, sandbox, volumes, container []time.Duration
	for _, p := range tr.snapshot() {
		out.perNode[p.node]++
		if st := stagesOf(events[p.node], string(p.uid), p.scheduled); st.ok {
			first, sandbox = append(first, st.toFirst), append(sandbox, st.sandbox)
			volumes, container = append(volumes, st.volumes), append(container, st.container)
		}
		running := p.running
		if running.IsZero() {
			out.missedRunning++
			running = p.succeeded
		}
		if !p.failed.IsZero() {
			out.failed++
			continue
		}
		out.allRunning = max(out.allRunning, running.Sub(t0))
		out.allSucceeded = max(out.allSucceeded, p.succeeded.Sub(t0))
		out.perPodStart = append(out.perPodStart, running.Sub(p.created))
	}
	out.stages = [4]time.Duration{median(first), median(sandbox), median(volumes), median(container)}
	out.deleteAll, err = b.deletePods(ctx, ns, sel, 5*time.Minute)
	return err
}

// floorBurst starts the burst's containers directly, bare or each in a
// podman pod of its own (rbn's shape, minus rbn), and returns when every
// one was inspected running and when every one's "died" was delivered.
func (b *bench) floorBurst(ctx context.Context, r int, inPod bool) (allRunning, allExited time.Duration, clientCPU float64, err error) {
	run := fmt.Sprintf("burst-%d", r)
	if inPod {
		run += "-pod"
	}
	labels := map[string]string{benchLabel: run}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	type stamp struct {
		name string
		at   time.Time
	}
	died := make(chan stamp, b.cfg.burstPods)
	for _, f := range b.floors {
		events, err := f.pm.Events(ectx, labels)
		if err != nil {
			return 0, 0, 0, err
		}
		go func() {
			for ev := range events {
				if ev.Action == "died" {
					died <- stamp{ev.Name, time.Now()}
				}
			}
		}()
	}
	defer func() {
		var wg sync.WaitGroup
		for _, f := range b.floors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				ps, _ := f.pm.ListPods(rctx, labels)
				for _, p := range ps {
					_ = f.pm.RemovePod(rctx, p.ID, 0)
				}
				cs, _ := f.pm.ListContainers(rctx, labels)
				for _, c := range cs {
					_ = f.pm.RemoveContainer(rctx, c.ID, true)
				}
			}()
		}
		wg.Wait()
	}()
	self := os.Getpid()
	cpu0, err := procCPU(self)
	if err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		started  = map[string]bool{}
		firstErr error
	)
	for i := 0; i < b.cfg.burstPods; i++ {
		f := b.floors[i%len(b.floors)]
		name := fmt.Sprintf("bench-%s-%03d", run, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := floorStart(ctx, f, name, inPod, labels, []string{"sleep", "2"})
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				return
			}
			started[name] = true
			allRunning = max(allRunning, now.Sub(t0))
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, 0, firstErr
	}
	timeout := time.NewTimer(5 * time.Minute)
	defer timeout.Stop()
	seen := map[string]bool{}
	for len(seen) < len(started) {
		select {
		case s := <-died:
			if started[s.name] && !seen[s.name] {
				seen[s.name] = true
				allExited = max(allExited, s.at.Sub(t0))
			}
		case <-timeout.C:
			return 0, 0, 0, fmt.Errorf("floor burst: %d of %d containers seen exiting", len(seen), len(started))
		}
	}
	cpu1, err := procCPU(self)
	if err != nil {
		return 0, 0, 0, err
	}
	return allRunning, allExited, (cpu1 - cpu0) / b.clkTck, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// ---------------------------------------------------------------------------------------------
// 4: scale.

type idleSample struct {
	label       string
	nodes, pods int
	window      time.Duration
	cpuSeconds  float64 // rbn-kubelet, over the window
	cpuSubMed   float64 // median of per-sub-window CPU fractions (cores)
	rssKB       int64   // median of samples
	hwmKB       int64
	sshConns    int // established TCP connections of rbn-kubelet to the hosts' SSH ports
	sshPeers    int // distinct host addresses among them
	reqs        float64
	reqPerSec   float64
	reqSubMed   float64 // median of per-sub-window rates
	reqByKind   []kindCount
	memAvailKB  int64
	podmanCPU   float64 // the hosts' podman services, with the children they reaped, over the window
	ctrRSSKB    int64   // VmRSS of the hosts' conmons and the container processes under them
	conmons     int
	settled     time.Duration // waited for the stack to go quiet first
	throttle    throttleStat
	readyNodes  int // of the scale test's nodes, Ready at the end of the window
	servedNodes int
	load        string
}

type waveStat struct {
	pods int
	took time.Duration
}

type kindCount struct {
	kind string
	n    float64
}

type scaleResult struct {
	nodes, perNode, hostCount int
	nodesReadyAfter           time.Duration
	nodesNote                 string
	throttle                  throttleStat // while the pods started
	podsWanted, podsRunning   int
	podsRunningAfter          time.Duration
	stopped                   string
	waves                     []waveStat
	samples                   []idleSample
	deleteAll, deleteNodes    time.Duration
	cleanupErr                string
	waitingReasons            map[string]int
	perHostPods               int
	memAvailBeforeKB          int64
}

func (b *bench) measureScale(ctx context.Context) (*scaleResult, error) {
	res := &scaleResult{nodes: b.cfg.scaleNodes, perNode: b.cfg.perNode, hostCount: len(b.hosts)}
	res.podsWanted = res.nodes * res.perNode
	res.perHostPods = (res.podsWanted + len(b.hosts) - 1) / len(b.hosts)
	res.memAvailBeforeKB = meminfo()["MemAvailable"]

	base, err := b.idle(ctx, fmt.Sprintf("%d nodes, no pods (baseline)", len(b.hosts)), len(b.hosts), 0, b.cfg.idle/2)
	if err != nil {
		return res, err
	}
	res.samples = append(res.samples, base)

	// Register the extra RemoteBuildNodes, round robin over the hosts, with
	// each host's own Secret.
	var extra []string
	for j := len(b.hosts) + 1; j <= b.cfg.scaleNodes; j++ {
		h := b.hosts[(j-1)%len(b.hosts)]
		name := fmt.Sprintf("bench-node-%02d", j)
		extra = append(extra, name)
		obj := &rbnv1.RemoteBuildNode{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbnv1.SchemeGroupVersion.String(), Kind: "RemoteBuildNode"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{benchLabel: "scale"}},
			Spec: rbnv1.RemoteBuildNodeSpec{
				Address: h.address, Port: int32(h.port), User: h.user, PodmanSocket: h.socket,
				SSHSecretRef: rbnv1.SecretReference{Name: h.name + "-ssh", Namespace: "rbn-system"},
				Labels:       map[string]string{benchLabel: "scale"},
			},
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return res, err
		}
		delete(u, "status")
		if _, err := b.dyn.Resource(rbnGVR).Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{}); err != nil {
			return res, fmt.Errorf("create RemoteBuildNode %s: %w", name, err)
		}
	}
	defer func() {
		start := time.Now()
		if err := b.deleteRBNs(extra); err != nil {
			res.cleanupErr += err.Error() + "; "
		}
		res.deleteNodes = time.Since(start)
	}()
	nodes := append(b.hostNames(), extra...)
	b.rep.scaleNodes = slices.Clone(nodes)
	t0 := time.Now()
	if err := b.waitNodesReady(ctx, nodes, 5*time.Minute); err != nil {
		// Carry on with the nodes that are Ready: how many are not, and
		// why, is itself the finding.
		ready := b.readyNodes(ctx, nodes)
		res.nodesNote = fmt.Sprintf("only %d of %d nodes were Ready after 5 minutes; RemoteBuildNode last errors: %v",
			len(ready), len(nodes), b.rbnLastErrors(ctx, nodes))
		b.logf("scale: %s", res.nodesNote)
		if len(ready) == 0 {
			return res, err
		}
		nodes = ready
	}
	res.nodesReadyAfter = time.Since(t0)

	empty, err := b.idle(ctx, fmt.Sprintf("%d nodes, no pods", len(nodes)), len(nodes), 0, b.cfg.idle/2)
	if err != nil {
		return res, err
	}
	res.samples = append(res.samples, empty)

	ns, err := b.newNamespace(ctx, "bench-scale")
	if err != nil {
		return res, err
	}
	defer b.deleteNamespace(ns)
	sel := benchLabel + "=scale"
	tr, err := trackPods(ctx, b.kube, ns, sel)
	if err != nil {
		return res, err
	}
	defer tr.stop()
	defer func() {
		d, err := b.deletePods(context.Background(), ns, sel, 20*time.Minute)
		res.deleteAll = d
		if err != nil {
			res.cleanupErr += err.Error() + "; "
		}
	}()
	// Waves of one pod per node, each waited for until Running, so that the
	// idle measurement finds nothing still starting. No new wave after the
	// time budget; a wave that makes no progress for 3 minutes (the machine
	// does not cope) is cut short and its pods that do not run are deleted.
	t0 = time.Now()
	for wave := 0; wave < b.cfg.perNode; wave++ {
		if since := time.Since(t0); since > b.cfg.scaleBudget {
			res.stopped = fmt.Sprintf("no wave started after the %s budget (RBN_BENCH_SCALE_BUDGET_SECONDS): %d of %d waves", b.cfg.scaleBudget, wave, b.cfg.perNode)
			break
		}
		ws := time.Now()
		var names []string
		for _, n := range nodes {
			names = append(names, fmt.Sprintf("scale-w%02d-%s", wave, n))
		}
		if err := b.createMany(ctx, len(nodes), 25, func(i int) *corev1.Pod {
			tr.setCreated(names[i], time.Now())
			return benchPod(ns, names[i], nodes[i], map[string]string{benchLabel: "scale"}, []string{"sleep", "3600"})
		}); err != nil {
			return res, err
		}
		stalled := b.waitRunning(ctx, tr, names, 3*time.Minute)
		running := 0
		for _, n := range names {
			if p := tr.get(n); !p.running.IsZero() && p.failed.IsZero() {
				running++
			}
		}
		res.waves = append(res.waves, waveStat{pods: running, took: time.Since(ws)})
		res.podsRunning += running
		res.podsRunningAfter = time.Since(t0)
		b.logf("scale wave %d: %d/%d Running in %s (total %d)", wave, running, len(names), time.Since(ws).Round(time.Millisecond), res.podsRunning)
		if stalled {
			res.stopped = fmt.Sprintf("wave %d made no progress for 3 minutes: %d of its %d pods Running", wave, running, len(names))
			res.waitingReasons = map[string]int{}
			var drop []string
			for _, n := range names {
				p := tr.get(n)
				if p.running.IsZero() || !p.failed.IsZero() {
					drop = append(drop, n)
					if p.last != nil {
						res.waitingReasons[podReason(p.last)]++
					}
				}
			}
			for _, n := range drop {
				_ = b.kube.CoreV1().Pods(ns).Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			}
			break
		}
	}
	res.throttle = b.kubeletThrottling(t0, time.Now())
	s, err := b.idle(ctx, fmt.Sprintf("%d nodes, %d pods", len(nodes), res.podsRunning), len(nodes), res.podsRunning, b.cfg.idle)
	if err != nil {
		return res, err
	}
	res.samples = append(res.samples, s)
	return res, nil
}

var rbnGVR = rbnv1.SchemeGroupVersion.WithResource("remotebuildnodes")

// waitRunning waits until every named pod is Running (or has ended); it
// reports true when it gave up because none started for stall.
func (b *bench) waitRunning(ctx context.Context, tr *podTracker, names []string, stall time.Duration) bool {
	last, lastProgress := -1, time.Now()
	for {
		n := 0
		for _, name := range names {
			if p := tr.get(name); !p.running.IsZero() || p.done() {
				n++
			}
		}
		if n == len(names) {
			return false
		}
		if n > last {
			last, lastProgress = n, time.Now()
		}
		if time.Since(lastProgress) > stall || ctx.Err() != nil {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func podReason(p *corev1.Pod) string {
	if p.Spec.NodeName == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return "Unschedulable: " + c.Reason
			}
		}
		return "Pending: not scheduled"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			return "Waiting: " + w.Reason
		}
	}
	return string(p.Status.Phase)
}

func (b *bench) createMany(ctx context.Context, n, workers int, mk func(i int) *corev1.Pod) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := mk(i)
				if _, err := b.kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("create pod %s: %w", p.Name, err)
					return
				}
			}
		}()
	}
	var err error
loop:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case err = <-errs:
			break loop
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// readyNodes returns those of names whose Node is Ready now.
func (b *bench) readyNodes(ctx context.Context, names []string) []string {
	list, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: remoteNodeLabel + "=true"})
	if err != nil {
		return nil
	}
	ready := map[string]bool{}
	for _, n := range list.Items {
		ready[n.Name] = nodeReady(&n)
	}
	var out []string
	for _, n := range names {
		if ready[n] {
			out = append(out, n)
		}
	}
	return out
}

// rbnLastErrors counts the RemoteBuildNodes' status.lastError reasons.
func (b *bench) rbnLastErrors(ctx context.Context, names []string) map[string]int {
	out := map[string]int{}
	for _, n := range names {
		u, err := b.dyn.Resource(rbnGVR).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			out["get failed"]++
			continue
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		reason, _, _ := unstructured.NestedString(u.Object, "status", "lastError", "reason")
		out[phase+"/"+reason]++
	}
	return out
}

func (b *bench) waitNodesReady(ctx context.Context, names []string, timeout time.Duration) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	deadline := time.Now().Add(timeout)
	for {
		list, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: remoteNodeLabel + "=true"})
		ready := 0
		if err == nil {
			for _, n := range list.Items {
				if want[n.Name] && nodeReady(&n) {
					ready++
				}
			}
		}
		if ready == len(names) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %d nodes Ready: %d are (%v)", timeout, len(names), ready, err)
		}
		time.Sleep(time.Second)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// deleteRBNs deletes RemoteBuildNodes and waits until they and their Nodes are gone.
func (b *bench) deleteRBNs(names []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, n := range names {
		if err := b.dyn.Resource(rbnGVR).Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	for _, n := range names {
		for {
			_, err1 := b.dyn.Resource(rbnGVR).Get(ctx, n, metav1.GetOptions{})
			_, err2 := b.kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("RemoteBuildNode %s and its Node not gone: %w", n, ctx.Err())
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

// idle lets the stack settle, then samples rbn-kubelet and the apiserver
// over window in six sub-windows while the benchmark itself is quiet.
func (b *bench) idle(ctx context.Context, label string, nodes, pods int, window time.Duration) (idleSample, error) {
	s := idleSample{label: label, nodes: nodes, pods: pods, window: window}
	s.settled = b.quiesce(ctx)
	pid, err := b.kubeletPID()
	if err != nil {
		return s, err
	}
	const parts = 6
	sub := window / parts
	var cpus, reqRates []float64
	var rss []float64
	var conns, peers []float64
	cpuPrev, err := procCPU(pid)
	if err != nil {
		return s, err
	}
	reqPrev, err := b.apiserverRequests(ctx)
	if err != nil {
		return s, err
	}
	podmanStart := b.hostsPodmanCPU()
	reqStart, cpuStart, windowStart := reqPrev, cpuPrev, time.Now()
	for i := 0; i < parts; i++ {
		time.Sleep(sub)
		cpu, err := procCPU(pid)
		if err != nil {
			return s, err
		}
		req, err := b.apiserverRequests(ctx)
		if err != nil {
			return s, err
		}
		cpus = append(cpus, (cpu-cpuPrev)/b.clkTck/sub.Seconds())
		reqRates = append(reqRates, (sumResource(req)-sumResource(reqPrev))/sub.Seconds())
		cpuPrev, reqPrev = cpu, req
		if st, err := procStatus(pid); err == nil {
			rss = append(rss, float64(st["VmRSS"]))
			s.hwmKB = st["VmHWM"]
		}
		c, p, err := b.sshConnections(pid)
		if err != nil {
			return s, err
		}
		conns, peers = append(conns, float64(c)), append(peers, float64(p))
	}
	s.cpuSeconds = (cpuPrev - cpuStart) / b.clkTck
	s.podmanCPU = (b.hostsPodmanCPU() - podmanStart) / b.clkTck
	s.ctrRSSKB, s.conmons = b.containerRSS()
	s.throttle = b.kubeletThrottling(windowStart, time.Now())
	s.cpuSubMed = medianF(cpus)
	s.rssKB = int64(medianF(rss))
	s.sshConns, s.sshPeers = int(medianF(conns)), int(medianF(peers))
	s.reqs = sumResource(reqPrev) - sumResource(reqStart)
	s.reqPerSec = s.reqs / window.Seconds()
	s.reqSubMed = medianF(reqRates)
	for k, v := range reqPrev {
		if d := v - reqStart[k]; d > 0 && k != nonResource {
			s.reqByKind = append(s.reqByKind, kindCount{k, d})
		}
	}
	slices.SortFunc(s.reqByKind, func(a, b kindCount) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return strings.Compare(a.kind, b.kind)
	})
	s.memAvailKB = meminfo()["MemAvailable"]
	s.load = readLoadavg()
	all := b.rep.scaleNodes
	if len(all) == 0 {
		all = b.hostNames()
	}
	s.readyNodes, s.servedNodes = len(b.readyNodes(ctx, all)), len(all)
	b.logf("idle %s: rbn-kubelet CPU %.2fs/%s, RSS %d MiB, ssh conns %d to %d hosts, apiserver %.2f req/s",
		label, s.cpuSeconds, window, s.rssKB/1024, s.sshConns, s.sshPeers, s.reqPerSec)
	return s, nil
}

// quiesce waits until nothing writes pod status or events for 5 s: rbn-kubelet
// drains its queued status updates and events (at its client's rate) after
// a burst, and a measurement window must not catch that. Gives up after 3
// minutes, which the report shows as the settle time.
func (b *bench) quiesce(ctx context.Context) time.Duration {
	start := time.Now()
	writes := func(m map[string]float64) float64 {
		n := 0.0
		for k, v := range m {
			verb, res, _ := strings.Cut(k, " ")
			if (res == "events" || res == "pods/status" || res == "pods") && verb != "GET" && verb != "LIST" && verb != "WATCH" {
				n += v
			}
		}
		return n
	}
	prev, err := b.apiserverRequests(ctx)
	for err == nil && time.Since(start) < 3*time.Minute {
		time.Sleep(5 * time.Second)
		var cur map[string]float64
		if cur, err = b.apiserverRequests(ctx); err != nil {
			break
		}
		if writes(cur) == writes(prev) {
			return time.Since(start)
		}
		prev = cur
	}
	b.logf("stack not quiet after %s (%v): measuring anyway", time.Since(start).Round(time.Second), err)
	return time.Since(start)
}

const nonResource = "(non-resource: /metrics, /healthz, ...)"

// apiserverRequests reads apiserver_request_total, summed per verb and
// resource. The metric has no client label: everything else on the stack
// (scheduler, controller-manager, rbn-extender) is in it too.
func (b *bench) apiserverRequests(ctx context.Context) (map[string]float64, error) {
	raw, err := b.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("apiserver /metrics: %w", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		rest, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		labelText, valueText, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(valueText), 64)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(labelText, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		key := nonResource
		if labels["resource"] != "" {
			key = labels["verb"] + " " + labels["resource"]
			if labels["subresource"] != "" {
				key += "/" + labels["subresource"]
			}
		}
		out[key] += v
	}
	return out, nil
}

func sumResource(m map[string]float64) float64 {
	s := 0.0
	for k, v := range m {
		if k != nonResource {
			s += v
		}
	}
	return s
}

// sshConnections counts rbn-kubelet's established TCP connections to the
// hosts' SSH ports (ss -tnp), and the distinct hosts they go to.
func (b *bench) sshConnections(pid int) (conns, peers int, err error) {
	out, err := exec.Command("ss", "-Htnp", "state", "established").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("ss -Htnp state established: %w", err)
	}
	hostAddrs := map[string]bool{}
	for _, h := range b.hosts {
		hostAddrs[net.JoinHostPort(h.address, strconv.Itoa(h.port))] = true
	}
	seen := map[string]bool{}
	marker := fmt.Sprintf("pid=%d,", pid)
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 || !strings.Contains(line, marker) {
			continue
		}
		if peer := fields[3]; hostAddrs[peer] {
			conns++
			seen[peer] = true
		}
	}
	return conns, len(seen), nil
}

// ---------------------------------------------------------------------------------------------
// rbn-kubelet's process.

func (b *bench) kubeletPID() (int, error) {
	raw, err := os.ReadFile(filepath.Join(b.state, "pids", kubeletName+".pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, err
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != kubeletName {
		return 0, fmt.Errorf("pid %d is not %s (%q, %v)", pid, kubeletName, comm, err)
	}
	return pid, nil
}

// restartKubelet restarts rbn-kubelet (hack/kubelet.sh) and waits until the
// new process renewed every host node's Lease, then lets its start-up settle.
func (b *bench) restartKubelet(ctx context.Context) error {
	kubelet := func(verb string) error {
		cmd := exec.CommandContext(ctx, filepath.Join(b.root, "hack", "kubelet.sh"), verb)
		cmd.Env = append(os.Environ(), "RBN_STATE="+b.state)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("hack/kubelet.sh %s: %w\n%s", verb, err, out)
		}
		return nil
	}
	// stop, then start (what restart does), so that a Lease renewed after
	// "since" can only be the new process's.
	if err := kubelet("stop"); err != nil {
		return err
	}
	since := time.Now()
	if err := kubelet("start"); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, h := range b.hosts {
		for {
			l, err := b.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, h.name, metav1.GetOptions{})
			if err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(since) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("lease of %s not renewed by the restarted rbn-kubelet (%v)", h.name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := b.waitNodesReady(ctx, b.hostNames(), time.Minute); err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // settling, not readiness: first host facts and image lists
	return nil
}

func (b *bench) hostNames() []string {
	var out []string
	for _, h := range b.hosts {
		out = append(out, h.name)
	}
	return out
}

// procCPU returns utime+stime of a process in clock ticks.
func procCPU(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndex(s, ") ")
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+2:])
	// Fields from 3 (state) on: utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return u + st, nil
}

// procCPUWithChildren is procCPU plus the CPU of the children the process
// has waited for (cutime, cstime).
func procCPUWithChildren(pid int) (float64, error) {
	own, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndex(s, ") ")+2:])
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	cu, err1 := strconv.ParseFloat(f[13], 64)
	cs, err2 := strconv.ParseFloat(f[14], 64)
	return own + cu + cs, errors.Join(err1, err2)
}

// hostsPodmanCPU sums, in clock ticks, the CPU of the hosts' podman API
// services (hack/hosts.sh records their pids) and of the short-lived
// processes they fork and reap for each call (runc, conmon --version, ...).
func (b *bench) hostsPodmanCPU() float64 {
	total := 0.0
	for _, h := range b.hosts {
		raw, err := os.ReadFile(filepath.Join(b.state, "pids", fmt.Sprintf("host%d-podman.pid", h.index)))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			continue
		}
		if v, err := procCPUWithChildren(pid); err == nil {
			total += v
		}
	}
	return total
}

// containerRSS sums VmRSS of the hosts' conmon processes (their command
// lines name this stack's host dirs) and of the container processes they
// monitor. Shared pages count once per process: an upper bound.
func (b *bench) containerRSS() (kb int64, conmons int) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	hostsDir := filepath.Join(b.state, "hosts") + "/"
	mons := map[string]bool{}
	ppid := map[string]string{}
	for _, st := range stats {
		raw, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		s := string(raw)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndex(s, ") ")
		if lp < 0 || rp < lp {
			continue
		}
		pid := filepath.Base(filepath.Dir(st))
		if f := strings.Fields(s[rp+2:]); len(f) > 1 {
			ppid[pid] = f[1]
		}
		if s[lp+1:rp] == "conmon" {
			if cmd, err := os.ReadFile(filepath.Join(filepath.Dir(st), "cmdline")); err == nil && strings.Contains(string(cmd), hostsDir) {
				mons[pid] = true
			}
		}
	}
	for pid, parent := range ppid {
		if !mons[pid] && !mons[parent] {
			continue
		}
		n, _ := strconv.Atoi(pid)
		if st, err := procStatus(n); err == nil {
			kb += st["VmRSS"]
		}
	}
	return kb, len(mons)
}

// procStatus returns the kB fields of /proc/<pid>/status (VmRSS, VmHWM, ...).
func procStatus(pid int) (map[string]int64, error) {
	return kbFile(fmt.Sprintf("/proc/%d/status", pid))
}

func meminfo() map[string]int64 {
	m, _ := kbFile("/proc/meminfo")
	return m
}

func kbFile(path string) (map[string]int64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out, nil
}

func readLoadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// throttleStat sums rbn-kubelet's waits on its own API client's rate limiter.
type throttleStat struct {
	n        int
	max, sum time.Duration
}

func (t throttleStat) String() string {
	if t.n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d logged, longest %s", t.n, t.max.Round(100*time.Millisecond))
}

// throttleNote says what the logged waits are: client-go logs, at rbn's
// log level, only waits over 1 s and at most one per 10 s.
const throttleNote = "client-go logs at most one wait over 1 s per 10 s at rbn-kubelet's log level: a count of such records, so a lower bound on the waits, and the longest of them"

// kubeletThrottling reads rbn-kubelet's log for client-go's "Waited before
// sending request ... client-side throttling" records between from and to.
func (b *bench) kubeletThrottling(from, to time.Time) throttleStat {
	var st throttleStat
	f, err := os.Open(filepath.Join(b.state, "kubelet", kubeletName+".log"))
	if err != nil {
		return st
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "client-side throttling") {
			continue
		}
		var at, delay string
		if strings.HasPrefix(line, "{") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			at, _ = rec["time"].(string)
			switch d := rec["delay"].(type) {
			case string:
				delay = d
			case float64: // slog's JSON handler writes durations in nanoseconds
				delay = time.Duration(d).String()
			}
		} else {
			at, delay = logfmtField(line, "time"), logfmtField(line, "delay")
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil || t.Before(from) || t.After(to) {
			continue
		}
		d, _ := time.ParseDuration(delay)
		st.n++
		st.sum += d
		st.max = max(st.max, d)
	}
	return st
}

// logfmtField returns the value of key in a slog text record.
func logfmtField(line, key string) string {
	i := strings.Index(" "+line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+1:]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return strings.Trim(v, `"`)
}

// ---------------------------------------------------------------------------------------------
// The machine.

type machineInfo struct {
	cpus                          int
	cpuModel                      string
	memTotalKB                    int64
	kernel                        string
	loadStart, loadEnd            string
	othersStart, othersEnd        string
	loadPeak                      string
	goVersion, k8sVersion, rbnRev string
}

type hostFacts struct {
	name string
	info *podman.HostInfo
}

func (b *bench) machine(ctx context.Context, t *testing.T) machineInfo {
	m := machineInfo{cpus: goruntime.NumCPU(), goVersion: goruntime.Version(), loadStart: readLoadavg()}
	m.memTotalKB = meminfo()["MemTotal"]
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(raw))
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if v, err := b.kube.Discovery().ServerVersion(); err == nil {
		m.k8sVersion = v.GitVersion
	}
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = b.root
	if out, err := cmd.Output(); err == nil {
		m.rbnRev = strings.TrimSpace(string(out))
	}
	m.othersStart = b.otherStacks()
	t.Logf("machine: %d CPUs (%s), %d MiB, kernel %s, load %s, sharing: %s",
		m.cpus, m.cpuModel, m.memTotalKB/1024, m.kernel, m.loadStart, m.othersStart)
	return m
}

// otherStacks counts the other stacks' processes on the machine: they
// compete for its cores.
func (b *bench) otherStacks() string {
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	own, _ := b.kubeletPID()
	apiservers, kubelets, compilers := 0, 0, 0
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(raw)) {
		case "kube-apiserver":
			apiservers++
		case kubeletName:
			if p != fmt.Sprintf("/proc/%d/comm", own) {
				kubelets++
			}
		case "compile", "link":
			compilers++
		}
	}
	return fmt.Sprintf("%d other kube-apiserver(s), %d other rbn-kubelet(s), %d Go compile/link process(es)",
		max(apiservers-1, 0), kubelets, compilers)
}

// ---------------------------------------------------------------------------------------------
// Statistics.

func sortedDurations(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// quantile is the nearest-rank quantile (q in (0,1]); median = quantile 0.5
// with the mean of the two middle values for an even count.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := sortedDurations(d)
	if q == 0.5 {
		n := len(s)
		if n%2 == 1 {
			return s[n/2]
		}
		return (s[n/2-1] + s[n/2]) / 2
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(d []time.Duration) time.Duration { return quantile(d, 0.5) }

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func signedMs(d time.Duration) string {
	if d < 0 {
		return "−" + ms(-d)
	}
	return "+" + ms(d)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func mib(kb int64) string { return fmt.Sprintf("%.0f MiB", float64(kb)/1024) }

// ---------------------------------------------------------------------------------------------
// The report.

func (b *bench) render() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	r := &b.rep
	m := r.machine

	p("# Benchmarks")
	p("")
	p("Generated by `make bench` (`hack/bench.sh` → `TestBench` in `e2e/bench_test.go`); do not edit by hand, run it again.")
	p("Every rbn figure stands beside a **floor** measured in the same run on the same hosts: the same")
	p("containers created and started directly through the podman bindings (`internal/podman`) over an SSH")
	p("connection of the same kind (`internal/sshconn`, with rbn's interactive session against the Nagle stall),")
	p("held by the benchmark process itself. Figures are medians over the runs unless marked otherwise; nothing")
	p("here is asserted: benchmarks never fail on speed.")
	p("")
	p("## Conditions")
	p("")
	p("| | |")
	p("| --- | --- |")
	p("| command | `%s` |", b.cfg.command)
	p("| date | %s, %s wall time |", r.started.UTC().Format("2006-01-02 15:04 UTC"), r.finished.Sub(r.started).Round(time.Second))
	p("| rbn | `%s` |", m.rbnRev)
	p("| machine | %d CPUs (%s), %s memory, kernel %s |", m.cpus, m.cpuModel, mib(m.memTotalKB), m.kernel)
	p("| load average (1/5/15 min) | %s at start, %s at end |", m.loadStart, m.loadEnd)
	p("| sharing the machine | at start: %s; at end: %s (other engineers' stacks and builds: their load is in these figures) |", m.othersStart, m.othersEnd)
	if m.loadPeak != "" {
		p("| highest 1-min load average sampled | %s (in the scale test's idle windows) |", m.loadPeak)
	}
	p("| control plane | Kubernetes %s (etcd, apiserver, scheduler with rbn-extender, controller-manager) on loopback |", m.k8sVersion)
	p("| Go | %s |", m.goVersion)
	for _, h := range r.hosts {
		i := h.info
		p("| host %s | podman %s (API %s), %s, kernel %s, %d CPUs, %s, runtime %s, cgroups %s |", h.name, i.PodmanVersion, i.APIVersion,
			i.Distribution, i.Kernel, i.CPUs, mib(i.MemTotal/1024), i.OCIRuntime, i.CgroupManager)
	}
	p("")
	p("The build hosts are local (`hack/hosts.sh`): an sshd on 127.0.1.*N* and a podman service each, on this")
	p("same machine, so rbn-kubelet, the control plane, the hosts' podman and the containers share its %d CPUs.", m.cpus)
	p("")

	b.renderSummary(p)
	b.renderLatency(p)
	b.renderBurst(p)
	p("## 3. Streaming (exec, attach, logs, port-forward) — TODO")
	p("")
	p("**Not measured yet.** This item needs kubelet-API streaming, which is being finished separately;")
	p("no figure is given rather than a made-up one. To be added here: throughput and first-byte latency of")
	p("`kubectl exec`/`logs -f` through the apiserver → rbn-kubelet → SSH → podman path, against the floor of the")
	p("same exec/attach through the bindings over SSH.")
	p("")
	b.renderScale(p)
	b.renderFindings(p)
	b.renderMethod(p)
	return w.String()
}

func table(p func(string, ...any), header []string, rows [][]string) {
	p("| %s |", strings.Join(header, " | "))
	seps := make([]string, len(header))
	for i := range seps {
		seps[i] = "---"
	}
	p("| %s |", strings.Join(seps, " | "))
	for _, r := range rows {
		p("| %s |", strings.Join(r, " | "))
	}
	p("")
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func notMeasured(err error) string {
	if err == nil {
		return "not run"
	}
	return "failed: " + strings.ReplaceAll(err.Error(), "\n", " ")
}

func (b *bench) renderSummary(p func(string, ...any)) {
	r := &b.rep
	p("## Summary")
	p("")
	var rows [][]string
	if l := r.latency; l != nil && len(l.rbnStart) > 0 {
		over := median(l.rbnStart) - median(l.floorStart)
		rows = append(rows, []string{"1", "pod start: create → Running (watch), image present",
			ms(median(l.rbnStart)), ms(median(l.floorStart)) + " (bare container)",
			signedMs(over), "< +100 ms", verdict(over < 100*time.Millisecond)})
	} else {
		rows = append(rows, []string{"1", "pod start", notMeasured(r.latencyErr), "", "", "< +100 ms", ""})
	}
	if bu := r.burst; bu != nil && len(bu.rounds) > 0 {
		run, runF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allRunning }), medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllRunning })
		suc, sucF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allSucceeded }), medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllExited })
		rows = append(rows,
			[]string{"2", fmt.Sprintf("burst of %d pods on %d hosts: all Running", bu.pods, len(b.hosts)), secs(run), secs(runF), ratio(run, runF), "≤ 2×", verdict(float64(run) <= 2*float64(runF))},
			[]string{"2", "burst: all Succeeded (`sleep 2`)", secs(suc), secs(sucF), ratio(suc, sucF), "≤ 2×", verdict(float64(suc) <= 2*float64(sucF))},
			[]string{"2", "burst: rbn-kubelet CPU / peak RSS", fmt.Sprintf("%.1f CPU-s / %s", medianFOf(bu.rounds, func(x burstRound) float64 { return x.cpuSeconds }), mib(int64(medianFOf(bu.rounds, func(x burstRound) float64 { return float64(x.hwmKB) })))),
				fmt.Sprintf("%.1f CPU-s (client side of the floor)", medianFOf(bu.rounds, func(x burstRound) float64 { return x.floorClientCPU })), "", "", ""})
	} else {
		rows = append(rows, []string{"2", "burst", notMeasured(r.burstErr), "", "", "≤ 2×", ""})
	}
	rows = append(rows, []string{"3", "streaming", "TODO (see §3)", "", "", "", ""})
	if s := r.scale; s != nil && len(s.samples) > 0 {
		last := s.samples[len(s.samples)-1]
		base := s.samples[0]
		rows = append(rows,
			[]string{"4", fmt.Sprintf("scale: %s — RSS", last.label), mib(last.rssKB), mib(base.rssKB) + " (" + base.label + ")", "", "", ""},
			[]string{"4", "scale: idle CPU over " + last.window.String(), fmt.Sprintf("%.2f CPU-s (%.1f%% of a core)", last.cpuSeconds, 100*last.cpuSeconds/last.window.Seconds()), fmt.Sprintf("%.2f CPU-s", base.cpuSeconds), "", "", ""},
			[]string{"4", "scale: SSH connections held", fmt.Sprintf("%d to %d hosts", last.sshConns, last.sshPeers), fmt.Sprintf("%d to %d hosts", base.sshConns, base.sshPeers), "", "one per host", verdict(last.sshConns <= last.sshPeers)},
			[]string{"4", "scale: apiserver requests/s when idle (whole stack)", fmt.Sprintf("%.2f", last.reqPerSec), fmt.Sprintf("%.2f", base.reqPerSec), "", "", ""})
	} else {
		rows = append(rows, []string{"4", "scale", notMeasured(r.scaleErr), "", "", "", ""})
	}
	if l := r.latency; l != nil && len(l.rbnStatus) > 0 {
		p50 := median(l.rbnStatus)
		rows = append(rows, []string{"5", "status: container exit → Succeeded (watch), p50 / p90",
			ms(p50) + " / " + ms(quantile(l.rbnStatus, 0.9)), ms(median(l.floorStatus)) + " / " + ms(quantile(l.floorStatus, 0.9)) + " (exit → `died` event)",
			signedMs(p50 - median(l.floorStatus)), "p50 < 1 s", verdict(p50 < time.Second)})
	} else {
		rows = append(rows, []string{"5", "status latency", notMeasured(r.latencyErr), "", "", "p50 < 1 s", ""})
	}
	table(p, []string{"#", "figure", "rbn", "floor (same run)", "rbn vs floor", "goal", "verdict"}, rows)
}

func readyOf(x idleSample) string { return fmt.Sprintf("%d of %d", x.readyNodes, x.servedNodes) }

// burstStages is the per-stage median over the rounds.
func burstStages(bu *burstResult) [4]time.Duration {
	var out [4]time.Duration
	for i := range out {
		out[i] = medianOf(bu.rounds, func(x burstRound) time.Duration { return x.stages[i] })
	}
	return out
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func medianOf[T any](xs []T, f func(T) time.Duration) time.Duration {
	var d []time.Duration
	for _, x := range xs {
		d = append(d, f(x))
	}
	return median(d)
}

func medianFOf[T any](xs []T, f func(T) float64) float64 {
	var v []float64
	for _, x := range xs {
		v = append(v, f(x))
	}
	return medianF(v)
}

func distRow(name string, d []time.Duration) []string {
	if len(d) == 0 {
		return []string{name, "–", "–", "–", "–", "0"}
	}
	s := sortedDurations(d)
	return []string{name, ms(median(d)), ms(quantile(d, 0.9)), ms(s[0]), ms(s[len(s)-1]), strconv.Itoa(len(d))}
}

func (b *bench) renderLatency(p func(string, ...any)) {
	l := b.rep.latency
	p("## 1. Pod start latency and 5. status latency")
	p("")
	if l == nil {
		p("Not measured: %s.", notMeasured(b.rep.latencyErr))
		p("")
		return
	}
	if b.rep.latencyErr != nil {
		p("**Incomplete:** %s. The runs before the failure are shown.", notMeasured(b.rep.latencyErr))
		p("")
	}
	p("One pod at a time on `%s` (a required node affinity on its name, through the scheduler and rbn-extender),", l.node)
	p("image `%s` present, command `sleep 2`, restartPolicy Never, default service-account token volume;", benchImage)
	p("%d warm-up runs discarded, then %d measured runs. Each run also starts the floor twice on the same host, the", b.cfg.warmup, len(l.rbnStart))
	p("three in rotating order; every pod and container is removed before the next run. The clock starts just")
	p("before the Create call; Running and Succeeded are the moments a client-go watch on the pods delivered them.")
	p("The container's own start and exit are podman's `StartedAt`/`FinishedAt` (nanoseconds; the pod status's")
	p("are whole seconds); hosts and benchmark share one clock.")
	p("")
	table(p, []string{"measure", "median", "p90", "min", "max", "runs"}, [][]string{
		distRow("**rbn: create → Running (watch)**", l.rbnStart),
		distRow("rbn: create → scheduled (nodeName delivered by the watch)", l.rbnScheduled),
		distRow("rbn: create → container started on the host (podman StartedAt)", l.rbnToContainerStarted),
		distRow("rbn, host events: scheduled → first podman object of the pod (vk dispatch, token, translation)", l.stageFirst),
		distRow("rbn, host events: → podman pod started (pod create, infra container, network)", l.stageSandbox),
		distRow("rbn, host events: → file volumes filled (loader container created, archive copied, removed)", l.stageVolumes),
		distRow("rbn, host events: → the pod's container started (translation again for the pod IP, with a second token request; list, inspect, image check, create, start)", l.stageContainer),
		distRow("rbn: container started → Running delivered", l.rbnStartedToRunning),
		distRow("**floor: create + start bare container → inspected running**", l.floorStart),
		distRow("floor: create + start podman pod (infra) + container → running", l.floorPodStart),
		distRow("**rbn: container exit (FinishedAt) → Succeeded (watch)**", l.rbnStatus),
		distRow("floor: container exit → `died` event delivered (bare)", l.floorStatus),
		distRow("floor: container exit → `died` event delivered (in a pod)", l.floorPodStatus),
	})
	if len(l.rbnStart) == 0 {
		return
	}
	over := median(l.rbnStart) - median(l.floorStart)
	p("rbn adds **%s** at the median over the bare container (goal < 100 ms: %s) and %s over a podman pod with its",
		ms(over), verdict(over < 100*time.Millisecond), ms(median(l.rbnStart)-median(l.floorPodStart)))
	p("container, the shape rbn creates. Where the time goes (medians of the parts, which need not add up exactly):")
	p("scheduling %s; scheduled → container started on the host %s (rbn: translation, volumes and token,",
		ms(median(l.rbnScheduled)), ms(median(l.rbnToContainerStarted)-median(l.rbnScheduled)))
	p("podman pod and infra container, container create and start); container started → Running in the API %s.",
		ms(median(l.rbnStartedToRunning)))
	p("")
	p50 := median(l.rbnStatus)
	p("Status latency p50 **%s**, p90 %s over %d runs (goal p50 < 1 s: %s); podman itself takes %s from exit to",
		ms(p50), ms(quantile(l.rbnStatus, 0.9)), len(l.rbnStatus), verdict(p50 < time.Second), ms(median(l.floorStatus)))
	p("delivering the `died` event that rbn reacts to: rbn's own share is %s (a difference of medians; below the", signedMs(p50-median(l.floorStatus)))
	p("run-to-run noise when near zero).")
	p("")
	p("rbn-kubelet's client-side throttling during these runs: %s (%s).", l.throttle, throttleNote)
	p("")
}

func (b *bench) renderBurst(p func(string, ...any)) {
	bu := b.rep.burst
	p("## 2. Burst")
	p("")
	if bu == nil {
		p("Not measured: %s.", notMeasured(b.rep.burstErr))
		p("")
		return
	}
	if b.rep.burstErr != nil {
		p("**Incomplete:** %s. The rounds before the failure are shown.", notMeasured(b.rep.burstErr))
		p("")
	}
	p("%d job-shaped pods (restartPolicy Never, `sleep 2`, image present) created at once by the benchmark", bu.pods)
	p("(parallel Create calls; bare pods rather than a Job so that the job controller's batching is not measured),")
	p("spread evenly over the %d hosts with a required node affinity per pod, through the scheduler. rbn-kubelet", len(b.hosts))
	p("is restarted (`hack/kubelet.sh restart`) before each rbn round so that its VmHWM (a lifetime peak) is the")
	p("burst's; its CPU is utime+stime from `/proc/<pid>/stat` before the first Create and after the last")
	p("Succeeded. The floor starts the same %d containers through the bindings, %d per host, all concurrently,", bu.pods, bu.pods/max(1, len(b.hosts)))
	p("and waits for each one's `died` event; its CPU is the benchmark process's own (client side only: the")
	p("hosts' podman is not counted on either side). A second floor does the same with each container in a")
	p("podman pod of its own (infra container and network namespace: the shape rbn creates, without rbn). The")
	p("three take turns going first from round to round.")
	p("")
	var rows [][]string
	for i, r := range bu.rounds {
		nodes := []string{}
		for n, c := range r.perNode {
			nodes = append(nodes, fmt.Sprintf("%s:%d", n, c))
		}
		slices.Sort(nodes)
		rows = append(rows, []string{strconv.Itoa(i + 1), secs(r.allRunning), secs(r.allSucceeded),
			ms(median(r.perPodStart)) + " / " + ms(quantile(r.perPodStart, 0.9)),
			fmt.Sprintf("%.1f", r.cpuSeconds), mib(r.rssBeforeKB) + " → " + mib(r.hwmKB),
			secs(r.floorAllRunning), secs(r.floorAllExited), fmt.Sprintf("%.1f", r.floorClientCPU),
			secs(r.floorPodAllRunning) + " / " + secs(r.floorPodAllExited),
			secs(r.deleteAll), fmt.Sprintf("%d/%d", r.missedRunning, r.failed), r.throttle.String()})
	}
	run, runF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allRunning }), medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllRunning })
	suc, sucF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allSucceeded }), medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllExited })
	rows = append(rows, []string{"**median**", "**" + secs(run) + "**", "**" + secs(suc) + "**", "", fmt.Sprintf("**%.1f**", medianFOf(bu.rounds, func(x burstRound) float64 { return x.cpuSeconds })),
		"**" + mib(int64(medianFOf(bu.rounds, func(x burstRound) float64 { return float64(x.hwmKB) }))) + "**",
		"**" + secs(runF) + "**", "**" + secs(sucF) + "**", "",
		"**" + secs(medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorPodAllRunning })) + " / " +
			secs(medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorPodAllExited })) + "**", "", "", ""})
	table(p, []string{"round", "rbn all Running", "rbn all Succeeded", "rbn per-pod create→Running p50 / p90", "rbn-kubelet CPU-s", "rbn-kubelet RSS before → peak (VmHWM)",
		"floor all running", "floor all exited", "floor client CPU-s", "floor in pods: all running / exited", "rbn: delete all (grace 0) until off the hosts", "pods never seen Running / failed", "rbn-kubelet client-side throttling (logged waits > 1 s)"}, rows)
	p("All Running: rbn %s vs floor %s (**%s**, goal ≤ 2×: %s); all Succeeded: %s vs %s (**%s**: %s).",
		secs(run), secs(runF), ratio(run, runF), verdict(float64(run) <= 2*float64(runF)),
		secs(suc), secs(sucF), ratio(suc, sucF), verdict(float64(suc) <= 2*float64(sucF)))
	runP := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorPodAllRunning })
	p("Against the floor in pods (%s to all running) rbn takes %s.", secs(runP), ratio(run, runP))
	st := burstStages(bu)
	p("Per pod, from the hosts' events (medians over the pods, median round): %s from scheduled to the pod's first",
		secs(st[0]))
	p("podman object, %s for the podman pod, %s filling file volumes (loader container), %s for the container:",
		secs(st[1]), secs(st[2]), secs(st[3]))
	p("with %d pods per host started at once, each step queues on the host's podman.", bu.pods/max(1, len(b.hosts)))
	if len(bu.rounds) > 0 {
		p("Pods per node (round 1): %v.", bu.rounds[0].perNode)
	}
	p("")
}

func (b *bench) renderScale(p func(string, ...any)) {
	s := b.rep.scale
	p("## 4. Scale")
	p("")
	if s == nil {
		p("Not measured: %s.", notMeasured(b.rep.scaleErr))
		p("")
		return
	}
	if b.rep.scaleErr != nil {
		p("**Incomplete:** %s. What was measured before the failure is shown.", notMeasured(b.rep.scaleErr))
		p("")
	}
	p("One rbn-kubelet serving %d RemoteBuildNodes: the %d of the stack plus %d more registered by the benchmark", s.nodes, s.hostCount, s.nodes-s.hostCount)
	p("(`bench-node-NN`), round robin over the same %d hosts (same sshd, podman and Secret as the host, distinct", s.hostCount)
	p("names), then %d pods per node (`sleep 3600`, one node each by required affinity): %d pods, up to %d podman", s.perNode, s.podsWanted, s.perHostPods)
	if s.nodesNote != "" {
		p("pods (each with an infra container) per host on this one machine. **Not every node became Ready: %s.**", s.nodesNote)
		p("Pods went to the Ready nodes only.")
	} else {
		p("pods (each with an infra container) per host on this one machine. All %d nodes were Ready %s after", s.nodes, secs(s.nodesReadyAfter))
		p("registration.")
	}
	p("Pods are created in waves of one per node, each wave waited for until Running (so that the")
	p("idle measurement finds nothing still starting), with no new wave after a budget of %s.", b.cfg.scaleBudget)
	p("")
	var waves []string
	for i, w := range s.waves {
		waves = append(waves, fmt.Sprintf("%d: %d in %s (%.1f pods/s)", i+1, w.pods, secs(w.took), float64(w.pods)/w.took.Seconds()))
	}
	p("**%d of %d pods Running** after %s. Waves: %s.", s.podsRunning, s.podsWanted, secs(s.podsRunningAfter), strings.Join(waves, "; "))
	if n := len(s.samples); n >= 2 && s.podsRunning > 0 {
		last := s.samples[n-1]
		perPod := float64(last.ctrRSSKB-s.samples[n-2].ctrRSSKB) / float64(s.podsRunning)
		p("")
		p("Does the machine cope? The running pods' conmon and container processes hold %s of RSS (%s per pod, an",
			mib(last.ctrRSSKB-s.samples[n-2].ctrRSSKB), mib(int64(perPod)))
		p("upper bound: shared pages count per process), so all %d pods would hold about %s of the machine's %s,",
			s.podsWanted, mib(int64(perPod*float64(s.podsWanted))), mib(b.rep.machine.memTotalKB))
		p("beside rbn-kubelet's own growth (see RSS below); the hosts' /24 container networks take %d of 253", s.perHostPods)
		p("addresses per host. Memory and addresses are not the limit.")
	}
	if s.stopped != "" {
		p("")
		p("**Not all %d pods were run: %s.** The figures below are for the %d that ran.",
			s.podsWanted, s.stopped, s.podsRunning)
		if rate := float64(s.podsRunning) / max(s.podsRunningAfter.Seconds(), 1); rate > 0 {
			p("At the waves' rate all %d would take about %s (`RBN_BENCH_SCALE_BUDGET_SECONDS=%d make bench` runs them).",
				s.podsWanted, (time.Duration(float64(s.podsWanted)/rate) * time.Second).Round(time.Minute), int(float64(s.podsWanted)/rate*1.3))
		}
		if len(s.waitingReasons) > 0 {
			p("Pods of the last wave not running, by reason: %v (deleted before measuring).", s.waitingReasons)
		}
	}
	p("")
	p("Each row is measured once nothing has written pod status or events for 5 s (rbn-kubelet drains its queue")
	p("after a burst; the wait is in the table), over %s of idle (%s for the rows without pods; no benchmark", b.cfg.idle, b.cfg.idle/2)
	p("traffic but its /metrics scrapes),")
	p("sampled in 6 sub-windows: CPU is rbn-kubelet's utime+stime over the whole window (median of the sub-window")
	p("rates beside it), RSS the median VmRSS sample, SSH connections the established TCP connections of")
	p("rbn-kubelet's pid to the hosts' SSH ports (`ss -tnp`). apiserver requests are the increase of")
	p("`apiserver_request_total` (resource requests only, so not the scrapes): that metric has no client label, so")
	p("this is the **whole stack** with only rbn-kubelet active (scheduler, controller-manager and rbn-extender")
	p("included); the first row, with rbn-kubelet serving only the %d hosts, is the baseline to subtract.", s.hostCount)
	p("")
	var rows [][]string
	for _, x := range s.samples {
		rows = append(rows, []string{x.label, fmt.Sprintf("%.2f (%.1f%%)", x.cpuSeconds, 100*x.cpuSeconds/x.window.Seconds()),
			fmt.Sprintf("%.1f%%", 100*x.cpuSubMed), mib(x.rssKB), mib(x.hwmKB),
			fmt.Sprintf("%d to %d hosts", x.sshConns, x.sshPeers), fmt.Sprintf("%.2f (%.2f)", x.reqPerSec, x.reqSubMed),
			fmt.Sprintf("%.1f (%.0f%% of a core)", x.podmanCPU, 100*x.podmanCPU/x.window.Seconds()),
			fmt.Sprintf("%s (%d conmons)", mib(x.ctrRSSKB), x.conmons),
			mib(x.memAvailKB), x.load, readyOf(x), x.throttle.String(), secs(x.settled)})
	}
	table(p, []string{"state", "rbn-kubelet CPU-s over window (% of a core)", "median sub-window", "RSS", "VmHWM", "SSH connections",
		"apiserver req/s (median sub-window)", "hosts' podman services CPU-s (with reaped children)", "conmon + container RSS", "machine MemAvailable", "load avg", "nodes Ready at the end", "rbn-kubelet client-side throttling (logged waits > 1 s)", "waited for quiet"}, rows)
	for _, x := range s.samples {
		var parts []string
		for i, k := range x.reqByKind {
			if i == 8 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.2f/s", k.kind, k.n/x.window.Seconds()))
		}
		p("- apiserver requests, %s: %s", x.label, strings.Join(parts, ", "))
	}
	p("")
	if len(s.samples) > 0 {
		last := s.samples[len(s.samples)-1]
		if last.sshConns > last.sshPeers {
			p("**Finding: one SSH connection per RemoteBuildNode, not per host.** With %d RemoteBuildNodes on %d hosts,", last.nodes, last.sshPeers)
			p("rbn-kubelet holds %d connections: each RemoteBuildNode has its own `sshconn.Client` (and its own podman", last.sshConns)
			p("event stream, health checks and info refreshes), even when several name the same address, port, user and")
			p("key. The issue asks for one per host; see the proposed change in the findings below.")
			p("")
		}
	}
	p("rbn-kubelet's client-side throttling while the pods started: %s (%s).", s.throttle, throttleNote)
	p("")
	p("Clean-up: deleting the pods (grace period 0) until the hosts held nothing of them took %s; deleting the %d extra", secs(s.deleteAll), s.nodes-s.hostCount)
	p("RemoteBuildNodes until their Nodes were gone took %s.", secs(s.deleteNodes))
	if s.cleanupErr != "" {
		p("Clean-up errors: %s", s.cleanupErr)
	}
	p("")
}

// renderFindings explains the misses from this run's own figures. The
// proposals come from reading the code; they are not measured here.
func (b *bench) renderFindings(p func(string, ...any)) {
	r := &b.rep
	p("## Findings and proposed changes")
	p("")
	p("Derived from this run's figures; the proposed changes come from reading the code at `%s` and are", r.machine.rbnRev)
	p("not measured here.")
	p("")
	n := 0
	item := func(format string, args ...any) {
		n++
		p("%d. "+format, append([]any{n}, args...)...)
	}
	if l := r.latency; l != nil && len(l.rbnStart) > 0 {
		over := median(l.rbnStart) - median(l.floorStart)
		podFloor := median(l.floorPodStart) - median(l.floorStart)
		if over >= 100*time.Millisecond {
			item("**Pod start: rbn adds %s over the bare container (goal < 100 ms, missed).** A podman pod alone costs",
				ms(over))
			p("   %s over the bare container (floor-in-pod row), and rbn creates one per Kubernetes pod (infra container,", ms(podFloor))
			if podFloor >= 100*time.Millisecond {
				p("   shared network namespace), so the goal cannot be met against the bare floor while it does; against")
			} else {
				p("   shared network namespace), which leaves rbn %s of the 100 ms against the bare floor; against",
					ms(100*time.Millisecond-podFloor))
			}
			p("   the floor-in-pod rbn adds %s. The host's own events place rbn's time (medians): %s from scheduled to",
				ms(median(l.rbnStart)-median(l.floorPodStart)), ms(median(l.stageFirst)))
			p("   the pod's first podman object (virtual-kubelet dispatch, service-account token request, translation),")
			p("   %s for the podman pod, **%s filling the file volumes** (the service-account token: a loader container",
				ms(median(l.stageSandbox)), ms(median(l.stageVolumes)))
			p("   created, the archive copied into it, removed), %s for the container (after translating the pod again",
				ms(median(l.stageContainer)))
			p("   for its IP, which requests a second service-account token), then %s until Running is delivered.",
				ms(median(l.rbnStartedToRunning)))
			p("   Proposed: copy file-volume archives into the pod's own container between create and start")
			p("   (`CopyInto` works on created containers and lands in named volumes), dropping the loader container;")
			p("   request the token once per pod and keep it (kubelet's token manager caches tokens and renews them")
			p("   at 80%% of their lifetime; `Pods.translate` requests a new one on every call, and the pod worker")
			p("   translates twice at start); create the volumes and request the token concurrently with the podman")
			p("   pod instead of one after another; on the first sync create and start the container from the state")
			p("   just created instead of listing and inspecting again.")
		}
	}
	if bu := r.burst; bu != nil && len(bu.rounds) > 0 {
		run := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allRunning })
		runF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllRunning })
		waits := medianFOf(bu.rounds, func(x burstRound) float64 { return float64(x.throttle.n) })
		longest := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.throttle.max })
		missed := medianFOf(bu.rounds, func(x burstRound) float64 { return float64(x.missedRunning) })
		runP := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorPodAllRunning })
		st := burstStages(bu)
		if waits > 0 || float64(run) > 2*float64(runF) {
			item("**Burst: all Running %s, %s the bare floor and %s the floor in pods (goal ≤ 2×).**",
				secs(run), ratio(run, runF), ratio(run, runP))
			if waits > 0 {
				p("   rbn-kubelet's Kubernetes client is rate-limited client-side: its `rest.Config` sets no QPS or Burst,")
				p("   so client-go's defaults apply (5 requests/s, burst 10, for each API group's client, every node")
				p("   sharing them). In the median round rbn-kubelet logged %.0f waits on that limiter, the longest %s (%s).",
					waits, longest.Round(100*time.Millisecond), throttleNote)
				p("   A pod costs about seven CoreV1 requests (two token requests, two or three status updates, three")
				p("   events), so %d pods need two minutes or more of a 5/s budget whatever the hosts do. A median %.0f",
					bu.pods, missed)
				p("   of %d pods were never", bu.pods)
				p("   seen Running: their Running update was still queued when the container had ended. The hosts' events")
				p("   show the limiter in the pods' own path: %s from scheduled to a pod's first podman object and %s from",
					secs(st[0]), secs(st[3]))
				p("   its volumes to its container, the two steps that wait for a service-account token request. Proposed:")
				p("   `kubeAPIQPS`/`kubeAPIBurst` in KubeletConfiguration (kubelet's defaults: 50 and 100) for the client,")
				p("   and events through a client of their own with a separate budget (kubelet's `eventRecordQPS`), so that")
				p("   events never delay status.")
			}
			p("   On the hosts, each rbn pod is three podman containers (infra, loader, the pod's own) against one for")
			p("   the bare floor: per pod %s for the podman pod, %s for the loader, %s for the container, with %d pods",
				secs(st[1]), secs(st[2]), secs(st[3]), bu.pods/max(1, len(b.hosts)))
			p("   per host queueing on its podman. rbn-kubelet's own CPU stays low (%.1f CPU-s for the burst).",
				medianFOf(bu.rounds, func(x burstRound) float64 { return x.cpuSeconds }))
			p("   Proposed, beside the rate limit: drop the loader container (see pod start); bound the pod workers")
			p("   per host that are creating at once (a small semaphore per host, e.g. 4) so that early pods finish")
			p("   instead of every pod advancing one step at a time.")
		}
	}
	if s := r.scale; s != nil && len(s.samples) > 0 {
		last := s.samples[len(s.samples)-1]
		if last.sshConns > last.sshPeers {
			item("**Scale: %d SSH connections for %d RemoteBuildNodes on %d hosts** (the issue asks for one per host). Each",
				last.sshConns, last.nodes, last.sshPeers)
			p("   RemoteBuildNode gets its own `provider.Host` (`internal/controller/runtime.go`): its own SSH connection,")
			p("   podman event stream, health ping every 10 s and `system info` every 30 s, even when several name the same")
			p("   address, port, user and key. Proposed: share one `sshconn.Client` and podman client per (address, port,")
			p("   user, key, socket) with reference counting in the controller, and one host-facts poller per host that")
			p("   feeds every node on it; the event stream can stay per node (it is filtered by node label) or become one")
			p("   per host dispatched by label.")
		}
		if s.nodesNote != "" || last.readyNodes < last.servedNodes {
			note := fmt.Sprintf("%d of %d Ready at the end of the last idle window", last.readyNodes, last.servedNodes)
			if s.nodesNote != "" {
				note = s.nodesNote + "; " + note
			}
			item("**Scale: not every node stayed Ready** (%s). With several", note)
			if len(s.samples) >= 2 {
				base, empty := s.samples[0], s.samples[1]
				p("   RemoteBuildNodes on each host, the hosts' podman services alone went from %.0f%% of a core (%s)",
					100*base.podmanCPU/base.window.Seconds(), base.label)
				p("   to %.0f%% (%s) and the load average from %s to %s, before any pod ran. With several",
					100*empty.podmanCPU/empty.window.Seconds(), empty.label, strings.Fields(base.load)[0], strings.Fields(empty.load)[0])
			}
			p("   RemoteBuildNodes per host each polling podman (`_ping`, `version`, `info`, image list) on its own, the")
			p("   hosts' podman services answer health pings late on a loaded machine and nodes flap to `PodmanUnavailable`.")
			p("   Pod workers wait while their host is not ready (`podWorker.sync`), so flapping also slows pod starts,")
			p("   and every flap writes Node and RemoteBuildNode status and an event: most of the idle apiserver")
			p("   requests above. The per-host sharing above removes the duplicate polling.")
		}
		if last.throttle.n > 0 {
			item("**Scale: rbn-kubelet is rate-limited even when idle at %d nodes** (%s during the last idle window): Lease",
				last.nodes, last.throttle)
			p("   renewals alone are %d nodes / 10 s = %.1f requests/s against the coordination client's default 5/s.",
				last.nodes, float64(last.nodes)/10)
			p("   The QPS/Burst configuration above fixes this too; without it a few more nodes make Leases late.")
		} else if last.nodes >= 40 {
			item("**Scale: Lease renewals use %.0f%% of the coordination client's default 5 requests/s** (%d nodes / 10 s);",
				100*float64(last.nodes)/10/5, last.nodes)
			p("   past 50 nodes they would queue behind each other. The QPS/Burst configuration above removes the ceiling.")
		}
		if strings.Contains(s.cleanupErr, "not gone") {
			item("**Deleting RemoteBuildNodes hangs** (%s after %s). A goroutine dump of rbn-kubelet taken in the",
				strings.TrimSuffix(strings.TrimSpace(s.cleanupErr), ";"), secs(s.deleteNodes))
			p("   first runs of this benchmark showed why: `Controller.finalize` waits in `nodeRuntime.stop` for the")
			p("   runtime's tasks, and `NodeProvider.Run` never returns because it is blocked in virtual-kubelet's")
			p("   node-status callback (`NodeController.Run.func2`: a send on a channel of capacity 1 that nobody reads")
			p("   once the node controller has stopped). A host health change during the stop is enough to trigger it;")
			p("   each hang takes one of the controller's workers for good, so after a few no RemoteBuildNode is")
			p("   reconciled at all. Proposed: in `NodeProvider.Run`, call the callback from a goroutine and select on")
			p("   it and `ctx.Done()` (or stop calling it once the node controller's `Done()` is closed).")
		}
		if s.stopped != "" {
			item("**Scale: %d of %d pods ran** (%s). Waves of %d pods took %s at the median: pod start throughput, not",
				s.podsRunning, s.podsWanted, s.stopped, len(b.rep.scaleNodes), secs(medianOf(s.waves, func(w waveStat) time.Duration { return w.took })))
			p("   the machine's memory (MemAvailable %s at the end), bounds it here: see the items above.",
				mib(last.memAvailKB))
		}
	}
	if n == 0 {
		p("Every goal measured in this run was met.")
	}
	p("")
}

func (b *bench) renderMethod(p func(string, ...any)) {
	p("## Reproducing")
	p("")
	p("```sh")
	p("make bench                                     # hack/bench.sh: own stack in _output/bench (4 hosts), writes this file")
	p("RBN_BENCH_RUNS=40 make bench                   # more start/status runs; hack/bench.sh lists every knob")
	p("RBN_BENCH_SCALE_BUDGET_SECONDS=3600 make bench # let the scale test start all 50 x 20 pods")
	p("RBN_BENCH_SECTIONS=latency make bench          # one section (latency, burst, scale)")
	p("go vet -tags bench,remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper ./e2e/")
	p("```")
	p("")
	p("`hack/bench.sh` honours `RBN_STATE`, `RBN_APISERVER_PORT`, `RBN_HOST_SSH_PORT` and `RBN_KUBELET_PORT`, so")
	p("that it can run beside other stacks on one machine; it tears its stack down whatever happens. On a shared")
	p("or loaded machine the absolute figures move from run to run; the ratios against the floor of the same run")
	p("are the figures to compare.")
}
