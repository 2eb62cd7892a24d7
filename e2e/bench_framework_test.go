//go:build bench

// The benchmarks of docs/benchmarks.md: TestBench measures rbn on the local
// stack against a floor measured in the same run (the same work done
// directly through the podman bindings over an SSH connection of the same
// kind) and writes the report. hack/bench.sh (make bench) brings a stack
// up, sets the environment, runs it and tears the stack down. It never
// fails on speed: only on a broken stack.
//
// One file per figure of the issue: bench_latency_test.go (1 and 5),
// bench_burst_test.go (2), bench_streams_test.go (3), bench_scale_test.go
// (4); this file holds what they share and bench_report_test.go the report.
//
// Build tag bench, not e2e: these files import the podman bindings, which
// build only with the tags of hack/goenv.sh, and a -tags flag replaces those
// (go test -tags e2e would not build them). Run and vet them with
//
//	go test|vet -tags bench,remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper ./e2e/

package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

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
	// remoteNodeLabel is what every rbn node carries (and its taint's key).
	remoteNodeLabel = "rbn.dev/remote-build-node"
	kubeletName     = "rbn-kubelet"
)

// ---------------------------------------------------------------------------------------------
// Configuration.

type benchConfig struct {
	out     string // the report (docs/benchmarks.md)
	notes   string // hand-written notes appended to the report, if the file exists
	command string // the command line that produced it, for the report
	// runs is the number of measured pod start/status runs, after warmup
	// runs that are discarded (the first pod on a host builds podman's pause image).
	runs, warmup        int
	burstPods, rounds   int
	logMiB, logRuns     int // streaming: log size and runs
	execRuns            int
	scaleNodes, perNode int
	idle                time.Duration // each idle measurement window
	sections            map[string]bool
}

// benchSections are the sections in the order they run.
var benchSections = []string{"latency", "burst", "streams", "scale"}

func benchConfigFromEnv(t *testing.T) benchConfig {
	t.Helper()
	c := benchConfig{
		out:        os.Getenv("RBN_BENCH_OUT"),
		notes:      os.Getenv("RBN_BENCH_NOTES"),
		command:    os.Getenv("RBN_BENCH_COMMAND"),
		runs:       benchEnvInt(t, "RBN_BENCH_RUNS", 20),
		warmup:     benchEnvInt(t, "RBN_BENCH_WARMUP", 2),
		burstPods:  benchEnvInt(t, "RBN_BENCH_BURST_PODS", 100),
		rounds:     benchEnvInt(t, "RBN_BENCH_BURST_ROUNDS", 3),
		logMiB:     benchEnvInt(t, "RBN_BENCH_LOG_MIB", 200),
		logRuns:    benchEnvInt(t, "RBN_BENCH_LOG_RUNS", 3),
		execRuns:   benchEnvInt(t, "RBN_BENCH_EXEC_RUNS", 20),
		scaleNodes: benchEnvInt(t, "RBN_BENCH_SCALE_NODES", 50),
		perNode:    benchEnvInt(t, "RBN_BENCH_SCALE_PODS_PER_NODE", 20),
		idle:       time.Duration(benchEnvInt(t, "RBN_BENCH_IDLE_SECONDS", 60)) * time.Second,
		sections:   map[string]bool{},
	}
	if c.command == "" {
		c.command = "go test -tags bench,... -run '^TestBench$' ./e2e/ (command line not given: set RBN_BENCH_COMMAND)"
	}
	secs := os.Getenv("RBN_BENCH_SECTIONS")
	if secs == "" {
		secs = strings.Join(benchSections, ",")
	}
	for _, s := range strings.Split(secs, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(benchSections, s) {
			t.Fatalf("RBN_BENCH_SECTIONS: unknown section %q (want some of %v)", s, benchSections)
		}
		c.sections[s] = true
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
// The benchmark and its sections.

type bench struct {
	cfg                 benchConfig
	kube                kubernetes.Interface
	dyn                 dynamic.Interface
	rest                *rest.Config
	state               string
	root                string
	kubectl, kubeconfig string
	hosts               []benchHost
	floors              []*floorConn // one per host, same order
	clkTck              float64
	logf                func(format string, args ...any)
	rep                 benchReport
	loadMu              sync.Mutex // guards rep.loadPeak while sampleLoad runs
}

// section is one measured figure (or two sharing their runs): run measures
// it, summary gives its rows of the summary table (first column: the
// issue's item number) and render its part of the report. Both work on
// whatever run measured before it failed.
type section interface {
	run(ctx context.Context) error
	summary() [][]string
	render(p printer)
}

type printer func(format string, args ...any)

type benchReport struct {
	started, finished time.Time
	machine           machineInfo
	hosts             []hostFacts
	sections          []section
	errs              map[section]error
	loadPeak          float64 // highest 1-min load average sampled during the run
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
	b.rep.errs = map[section]error{}
	for _, f := range b.floors {
		info, err := f.pm.Info(ctx)
		if err != nil {
			t.Fatalf("podman info on %s: %v", f.host.name, err)
		}
		b.rep.hosts = append(b.rep.hosts, hostFacts{name: f.host.name, info: info})
	}
	all := map[string]section{
		"latency": &latencySection{b: b},
		"burst":   &burstSection{b: b},
		"streams": &streamsSection{b: b},
		"scale":   &scaleSection{b: b},
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); b.sampleLoad(loadCtx) }()
	defer func() {
		stopLoad()
		<-loadDone
		b.rep.finished = time.Now()
		b.rep.machine.loadEnd = readLoadavg()
		b.rep.machine.othersEnd = b.otherStacks()
		if err := os.WriteFile(cfg.out, []byte(b.render()), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
		t.Logf("report written to %s", cfg.out)
	}()
	for _, name := range benchSections {
		if !cfg.sections[name] {
			continue
		}
		s := all[name]
		b.rep.sections = append(b.rep.sections, s)
		b.quiesce(ctx)
		if err := s.run(ctx); err != nil {
			b.rep.errs[s] = err
			t.Errorf("%s: %v", name, err)
		}
	}
}

func newBench(t *testing.T, cfg benchConfig) *bench {
	t.Helper()
	b := &bench{cfg: cfg, logf: t.Logf}
	for _, k := range []string{"RBN_E2E_KUBECONFIG", "RBN_E2E_KUBECTL", "RBN_E2E_STATE", "RBN_E2E_ROOT"} {
		if os.Getenv(k) == "" {
			t.Fatalf("%s is not set: run the benchmarks with `make bench`", k)
		}
	}
	b.state, b.root = os.Getenv("RBN_E2E_STATE"), os.Getenv("RBN_E2E_ROOT")
	b.kubectl, b.kubeconfig = os.Getenv("RBN_E2E_KUBECTL"), os.Getenv("RBN_E2E_KUBECONFIG")
	rc, err := clientcmd.BuildConfigFromFlags("", b.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// The burst creates its pods at once: client-go's default 5 QPS would
	// measure the client's rate limiter.
	rc.QPS, rc.Burst = 500, 1000
	rc.UserAgent = "rbn-bench"
	b.rest = rc
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

// rotated runs steps starting with step i (mod their number), so that no
// side of a comparison always runs first after a pause.
func rotated(i int, steps []func() error) error {
	for k := range steps {
		if err := steps[(k+i)%len(steps)](); err != nil {
			return err
		}
	}
	return nil
}

// sectionHeader writes a section's title and says when it was not measured
// (false: nothing more to write) or failed part of the way.
func (b *bench) sectionHeader(p printer, s section, title string, measured bool) bool {
	p("## %s", title)
	p("")
	err := b.rep.errs[s]
	if !measured {
		p("Not measured: %s.", notMeasured(err))
		p("")
		return false
	}
	if err != nil {
		p("**Incomplete:** %s. What was measured before the failure is shown.", notMeasured(err))
		p("")
	}
	return true
}

// sampleLoad records the highest 1-min load average, every 10 s until ctx ends.
func (b *bench) sampleLoad(ctx context.Context) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		if f := strings.Fields(readLoadavg()); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				b.loadMu.Lock()
				b.rep.loadPeak = max(b.rep.loadPeak, v)
				b.loadMu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll checks cond every interval until it holds, ctx ends or timeout
// passes; the error says what was awaited and what cond last reported.
func poll(ctx context.Context, what string, timeout, interval time.Duration, cond func() (bool, string)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last seen: %s)", what, ctx.Err(), state)
		case <-deadline.C:
			return fmt.Errorf("timed out after %s waiting for %s; last seen: %s", timeout, what, state)
		case <-tick.C:
		}
	}
}

// pause waits d unless ctx ends first: a measurement window, not a wait
// for readiness.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
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

// floorConn is what rbn-kubelet holds per host, built the same way
// (provider.NewHost): an sshconn client with its interactive session (no
// Nagle stall) and a podman client dialing the socket through it.
type floorConn struct {
	host   benchHost
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
	f := &floorConn{host: h, cancel: cancel, done: make(chan struct{})}
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
// and returns once an inspection says it runs. A failed start is tried
// again, twice at most, as rbn's pod workers do: many network setups at
// once on one host can fail in netavark ("iptables: Chain already exists").
// retries, when not nil, counts the starts tried again.
func floorStart(ctx context.Context, f *floorConn, name string, inPod bool, labels map[string]string, command []string, retries *atomic.Int32) error {
	start := func(op func(context.Context, string) error, what string) error {
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			if err = op(ctx, what); err == nil {
				return nil
			}
			if retries != nil {
				retries.Add(1)
			}
		}
		return err
	}
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
		if err := start(f.pm.StartPod, ps.Name); err != nil {
			return err
		}
		podID = id
	}
	if _, err := f.pm.CreateContainer(ctx, floorContainer(name, podID, labels, command)); err != nil {
		return err
	}
	if err := start(f.pm.StartContainer, name); err != nil {
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
	created, scheduled, running, succeeded, failed time.Time
	node                                           string
	uid                                            types.UID
	last                                           *corev1.Pod
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
			tr.observe(p, now)
		}
	}()
	return tr, nil
}

func (tr *podTracker) observe(p *corev1.Pod, now time.Time) {
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
	err = poll(ctx, "the default service account in "+ns.Name, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		_, err := b.kube.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return ns.Name, err
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
	var listErr error
	err := poll(ctx, fmt.Sprintf("the hosts to hold nothing labelled %v", labels), timeout, 250*time.Millisecond, func() (bool, string) {
		left := 0
		for _, f := range b.floors {
			ps, err := f.pm.ListPods(ctx, labels)
			if err != nil {
				listErr = err
				return true, ""
			}
			cs, err := f.pm.ListContainers(ctx, labels)
			if err != nil {
				listErr = err
				return true, ""
			}
			left += len(ps) + len(cs)
		}
		return left == 0, fmt.Sprintf("%d podman pods and containers left", left)
	})
	return cmp.Or(listErr, err)
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
// new process renewed every host node's Lease and the stack is quiet.
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
	for _, h := range b.hosts {
		err := poll(ctx, "the restarted rbn-kubelet to renew the Lease of "+h.name, 2*time.Minute, 200*time.Millisecond, func() (bool, string) {
			l, err := b.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, h.name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return l.Spec.RenewTime != nil && l.Spec.RenewTime.After(since), fmt.Sprintf("renewed %v", l.Spec.RenewTime)
		})
		if err != nil {
			return err
		}
	}
	if err := b.waitNodesReady(ctx, b.hostNames(), time.Minute); err != nil {
		return err
	}
	// Its start-up (first host facts, image lists, status of the nodes) is
	// over once nothing writes for a while.
	b.quiesce(ctx)
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
func procCPU(pid int) (float64, error) { return procStatSum(pid, 11, 12) }

// procCPUWithChildren is procCPU plus the CPU of the children the process
// has waited for (cutime, cstime).
func procCPUWithChildren(pid int) (float64, error) { return procStatSum(pid, 11, 12, 13, 14) }

// procStatSum sums fields of /proc/<pid>/stat, counted from 0 at the field
// after the command name (state): utime is 11, stime 12, cutime 13, cstime 14.
func procStatSum(pid int, fields ...int) (float64, error) {
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
	sum := 0.0
	for _, k := range fields {
		if k >= len(f) {
			return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
		}
		v, err := strconv.ParseFloat(f[k], 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		sum += v
	}
	return sum, nil
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
	n   int
	max time.Duration
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
// Nodes and the apiserver's request counts.

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

func (b *bench) waitNodesReady(ctx context.Context, names []string, timeout time.Duration) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	return poll(ctx, fmt.Sprintf("%d nodes Ready", len(names)), timeout, time.Second, func() (bool, string) {
		list, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: remoteNodeLabel + "=true"})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, n := range list.Items {
			if want[n.Name] && nodeReady(&n) {
				ready++
			}
		}
		return ready == len(names), fmt.Sprintf("%d Ready", ready)
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
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
		if err = pause(ctx, 5*time.Second); err != nil {
			break
		}
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
