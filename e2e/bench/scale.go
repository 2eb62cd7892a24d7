package bench

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// ---------------------------------------------------------------------------------------------
// 4: scale.

type idleSample struct {
	label       string
	nodes, pods int
	window      time.Duration
	elapsed     time.Duration // measured: longer than window when a load overran its sub-window
	cpuSeconds  float64       // rbn-kubelet, over the window
	cpuSubMed   float64       // median of per-sub-window CPU fractions (cores)
	cpuSubs     []float64     // each sub-window's CPU fraction (cores)
	subSecs     []float64     // each sub-window's length, seconds
	rssKB       int64         // median of samples
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
	// rbn-kubelet's own metrics, read only in the windows that ask for
	// them (windowSpec.rbnMetrics).
	calls       []callCounts // podman calls made in each sub-window
	sshChannels []float64    // rbn_ssh_channels_open over all hosts, at each sub-window's end
	sshConnects float64      // SSH connections made during the window (rbn_ssh_connects_total)
	subConnects []float64    // of them, in each sub-window
}

// span is how long the window lasted: as planned unless a load overran.
func (x idleSample) span() time.Duration {
	if x.elapsed > 0 {
		return x.elapsed
	}
	return x.window
}

// cores is rbn-kubelet's CPU over the window in cores (1 = a whole core).
func (x idleSample) cores() float64 {
	if x.span() <= 0 {
		return 0
	}
	return x.cpuSeconds / x.span().Seconds()
}

type waveStat struct {
	pods int
	took time.Duration
}

type kindCount struct {
	kind string
	n    float64
}

// scaleSection measures item 4.
type scaleSection struct {
	b   *bench
	res *scaleResult
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
	nodeNames                 []string    // every node of the scale test, for idle samples
	scrape                    *scrapeCost // issue #13, once the pods run
}

// allSamples are the idle samples and, once measured, the scrape-cost windows.
func (r *scaleResult) allSamples() []idleSample {
	out := slices.Clone(r.samples)
	if c := r.scrape; c != nil && c.measured {
		out = append(out, c.window)
	}
	return out
}

func (s *scaleSection) run(ctx context.Context) error {
	s.res = &scaleResult{nodes: s.b.cfg.scaleNodes, perNode: s.b.cfg.perNode, hostCount: len(s.b.hosts)}
	return s.b.measureScale(ctx, s.res)
}

func (b *bench) measureScale(ctx context.Context, res *scaleResult) error {
	res.podsWanted = res.nodes * res.perNode
	res.perHostPods = (res.podsWanted + len(b.hosts) - 1) / len(b.hosts)

	base, err := b.idle(ctx, res, fmt.Sprintf("%d nodes, no pods (baseline)", len(b.hosts)), len(b.hosts), 0, b.cfg.idle/2)
	if err != nil {
		return err
	}
	res.samples = append(res.samples, base)

	// Register the extra RemoteBuildNodes, round robin over the hosts, with
	// each host's own Secret.
	var extra []string
	for j := len(b.hosts) + 1; j <= b.cfg.scaleNodes; j++ {
		h := b.hosts[(j-1)%len(b.hosts)]
		name := fmt.Sprintf("bench-node-%02d", j)
		extra = append(extra, name)
		if err := b.createRBN(ctx, name, h, "scale", nil); err != nil {
			return err
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
	res.nodeNames = slices.Clone(nodes)
	t0 := time.Now()
	if err := b.waitNodesReady(ctx, nodes, 5*time.Minute); err != nil {
		// Carry on with the nodes that are Ready: how many are not, and
		// why, is itself the finding.
		ready := b.readyNodes(ctx, nodes)
		res.nodesNote = fmt.Sprintf("only %d of %d nodes were Ready after 5 minutes; RemoteBuildNode last errors: %v",
			len(ready), len(nodes), b.rbnLastErrors(ctx, nodes))
		b.logf("scale: %s", res.nodesNote)
		if len(ready) == 0 {
			return err
		}
		nodes = ready
	}
	res.nodesReadyAfter = time.Since(t0)

	empty, err := b.idle(ctx, res, fmt.Sprintf("%d nodes, no pods", len(nodes)), len(nodes), 0, b.cfg.idle/2)
	if err != nil {
		return err
	}
	res.samples = append(res.samples, empty)

	ns, err := b.newNamespace(ctx, "bench-scale")
	if err != nil {
		return err
	}
	defer b.deleteNamespace(ns)
	sel := benchLabel + "=scale"
	tr, err := trackPods(ctx, b.kube, ns, sel)
	if err != nil {
		return err
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
	// idle measurement finds nothing still starting. A wave that makes no
	// progress for 3 minutes (the machine does not cope) is cut short, its
	// pods that do not run are deleted, and the report says so.
	t0 = time.Now()
	for wave := 0; wave < b.cfg.perNode; wave++ {
		ws := time.Now()
		var names []string
		for _, n := range nodes {
			names = append(names, fmt.Sprintf("scale-w%02d-%s", wave, n))
		}
		if err := b.createMany(ctx, len(nodes), 25, func(i int) *corev1.Pod {
			tr.setCreated(names[i], time.Now())
			return framework.JobPod(ns, names[i], nodes[i], map[string]string{benchLabel: "scale"}, []string{"sleep", "3600"})
		}); err != nil {
			return err
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
	s, err := b.idle(ctx, res, fmt.Sprintf("%d nodes, %d pods", len(nodes), res.podsRunning), len(nodes), res.podsRunning, b.cfg.idle)
	if err != nil {
		return err
	}
	res.samples = append(res.samples, s)
	return b.measureScrapeCost(ctx, res, ns, nodes)
}

var rbnGVR = rbnv1.SchemeGroupVersion.WithResource("remotebuildnodes")

// createRBN registers a RemoteBuildNode of the benchmark's own on host h,
// with the host's Secret, labelled benchLabel=section (on the object and
// its Node); mutate, when set, changes its spec first.
func (b *bench) createRBN(ctx context.Context, name string, h framework.BuildHost, section string, mutate func(*rbnv1.RemoteBuildNodeSpec)) error {
	obj := &rbnv1.RemoteBuildNode{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbnv1.SchemeGroupVersion.String(), Kind: "RemoteBuildNode"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{benchLabel: section}},
		Spec: rbnv1.RemoteBuildNodeSpec{
			Address: h.Address, Port: int32(h.Port), User: h.User, PodmanSocket: h.Socket,
			SSHSecretRef: rbnv1.SecretReference{Name: h.Name + "-ssh", Namespace: "rbn-system"},
			Labels:       map[string]string{benchLabel: section},
			// The hosts share this machine's disk (hack/register-hosts.sh).
			ImageGC:      &rbnv1.ImageGCSpec{HighThresholdPercent: ptr.To[int32](100), LowThresholdPercent: ptr.To[int32](99)},
			DiskPressure: &rbnv1.DiskPressureSpec{AvailableBelow: "0%"},
		},
	}
	if mutate != nil {
		mutate(&obj.Spec)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	delete(u, "status")
	if _, err := b.dyn.Resource(rbnGVR).Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create RemoteBuildNode %s: %w", name, err)
	}
	return nil
}

// waitRunning waits until every named pod is Running (or has ended); it
// reports true when it gave up because none started for stall.
func (b *bench) waitRunning(ctx context.Context, tr *podTracker, names []string, stall time.Duration) bool {
	last, lastProgress := -1, time.Now()
	err := framework.Poll(ctx, "the wave's pods to run", 24*time.Hour, 250*time.Millisecond, func() (bool, string) {
		n := 0
		for _, name := range names {
			if p := tr.get(name); !p.running.IsZero() || p.done() {
				n++
			}
		}
		if n > last {
			last, lastProgress = n, time.Now()
		}
		return n == len(names) || time.Since(lastProgress) > stall, ""
	})
	return err != nil || last < len(names)
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
		err := framework.Poll(ctx, "RemoteBuildNode "+n+" and its Node to go", time.Hour, 500*time.Millisecond, func() (bool, string) {
			_, err1 := b.dyn.Resource(rbnGVR).Get(ctx, n, metav1.GetOptions{})
			_, err2 := b.kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2), fmt.Sprintf("%v / %v", err1, err2)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// idle lets the stack settle, then samples rbn-kubelet and the apiserver
// over window in six sub-windows while the benchmark itself is quiet.
func (b *bench) idle(ctx context.Context, res *scaleResult, label string, nodes, pods int, window time.Duration) (idleSample, error) {
	return b.measureWindow(ctx, res, windowSpec{label: label, nodes: nodes, pods: pods, length: window, parts: 6})
}

// windowSpec is one measurement window of the scale section.
type windowSpec struct {
	label       string
	nodes, pods int
	length      time.Duration
	parts       int // sub-windows, each sampled at its end
	// load, when set, runs at the start of each sub-window, given its
	// index (the benchmark is otherwise quiet); the sub-window lasts until
	// its planned end or until load returns, whichever is later.
	load func(ctx context.Context, part int) error
	// rbnMetrics, when set, is the URL of rbn-kubelet's own metrics, read
	// at the start and at each sub-window's end.
	rbnMetrics string
	// start, when set, runs once the stack has settled, as the window
	// begins.
	start func(ctx context.Context)
}

// measureWindow lets the stack settle, then samples rbn-kubelet and the
// apiserver over the window spec describes.
func (b *bench) measureWindow(ctx context.Context, res *scaleResult, spec windowSpec) (idleSample, error) {
	s := idleSample{label: spec.label, nodes: spec.nodes, pods: spec.pods, window: spec.length}
	s.settled = b.quiesce(ctx)
	b.logf("measuring window %q: %s in %d parts", spec.label, spec.length, spec.parts)
	if spec.start != nil {
		spec.start(ctx)
	}
	pid, err := b.stack.KubeletPID()
	if err != nil {
		return s, err
	}
	parts := spec.parts
	sub := spec.length / time.Duration(parts)
	var cpus, reqRates []float64
	var rss []float64
	var conns, peers []float64
	cpuPrev, err := framework.ProcCPU(pid)
	if err != nil {
		return s, err
	}
	reqPrev, err := b.apiserverRequests(ctx)
	if err != nil {
		return s, err
	}
	var rbnPrev rbnReading
	if spec.rbnMetrics != "" {
		if rbnPrev, err = b.readKubeletMetrics(ctx, spec.rbnMetrics); err != nil {
			return s, err
		}
	}
	podmanStart := b.hostsPodmanCPU()
	reqStart, cpuStart, windowStart := reqPrev, cpuPrev, time.Now()
	prevAt := windowStart
	for i := 0; i < parts; i++ {
		if spec.load != nil {
			if err := spec.load(ctx, i); err != nil {
				return s, err
			}
		}
		// Waiting for the planned end, not for sub, keeps the sampling's
		// own time inside the window.
		if err := pause(ctx, time.Until(windowStart.Add(time.Duration(i+1)*sub))); err != nil {
			return s, err
		}
		cpu, err := framework.ProcCPU(pid)
		if err != nil {
			return s, err
		}
		now := time.Now()
		took := now.Sub(prevAt).Seconds()
		req, err := b.apiserverRequests(ctx)
		if err != nil {
			return s, err
		}
		cpus = append(cpus, (cpu-cpuPrev)/b.clkTck/took)
		s.subSecs = append(s.subSecs, took)
		reqRates = append(reqRates, (sumResource(req)-sumResource(reqPrev))/took)
		cpuPrev, reqPrev, prevAt = cpu, req, now
		if spec.rbnMetrics != "" {
			r, err := b.readKubeletMetrics(ctx, spec.rbnMetrics)
			if err != nil {
				return s, err
			}
			s.calls = append(s.calls, r.calls.since(rbnPrev.calls))
			s.sshChannels = append(s.sshChannels, r.sshChannels)
			s.subConnects = append(s.subConnects, max(0, r.sshConnects-rbnPrev.sshConnects))
			s.sshConnects += s.subConnects[len(s.subConnects)-1]
			rbnPrev = r
		}
		if st, err := framework.ProcStatus(pid); err == nil {
			rss = append(rss, float64(st["VmRSS"]))
			s.hwmKB = st["VmHWM"]
		}
		c, p, err := b.sshConnections(ctx, pid)
		if err != nil {
			return s, err
		}
		conns, peers = append(conns, float64(c)), append(peers, float64(p))
	}
	s.elapsed = prevAt.Sub(windowStart)
	s.cpuSeconds = (cpuPrev - cpuStart) / b.clkTck
	s.podmanCPU = (b.hostsPodmanCPU() - podmanStart) / b.clkTck
	s.ctrRSSKB, s.conmons = b.containerRSS()
	s.throttle = b.kubeletThrottling(windowStart, time.Now())
	s.cpuSubs, s.cpuSubMed = cpus, medianF(cpus)
	s.rssKB = int64(medianF(rss))
	s.sshConns, s.sshPeers = int(medianF(conns)), int(medianF(peers))
	s.reqs = sumResource(reqPrev) - sumResource(reqStart)
	s.reqPerSec = s.reqs / s.elapsed.Seconds()
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
	s.memAvailKB = framework.Meminfo()["MemAvailable"]
	s.load = framework.Loadavg()
	all := res.nodeNames
	if len(all) == 0 {
		all = b.hostNames()
	}
	s.readyNodes, s.servedNodes = len(b.readyNodes(ctx, all)), len(all)
	b.logf("idle %s: rbn-kubelet CPU %.2fs/%s, RSS %d MiB, ssh conns %d to %d hosts, apiserver %.2f req/s",
		spec.label, s.cpuSeconds, s.elapsed.Round(time.Millisecond), s.rssKB/1024, s.sshConns, s.sshPeers, s.reqPerSec)
	return s, nil
}

// sshConnections counts rbn-kubelet's established TCP connections to the
// hosts' SSH ports (ss -tnp), and the distinct hosts they go to.
func (b *bench) sshConnections(ctx context.Context, pid int) (conns, peers int, err error) {
	all, err := framework.TCPConns(ctx, pid)
	if err != nil {
		return 0, 0, err
	}
	hostAddrs := map[string]bool{}
	for _, h := range b.hosts {
		hostAddrs[net.JoinHostPort(h.Address, strconv.Itoa(h.Port))] = true
	}
	seen := map[string]bool{}
	for _, c := range all {
		if hostAddrs[c.Peer] {
			conns++
			seen[c.Peer] = true
		}
	}
	return conns, len(seen), nil
}

func (sc *scaleSection) summary() [][]string {
	s := sc.res
	if s == nil || len(s.samples) == 0 {
		return [][]string{failedRow("4", "scale", "one SSH connection per host", sc.b.rep.errs[sc])}
	}
	last, base := s.samples[len(s.samples)-1], s.samples[0]
	return [][]string{
		{"4", fmt.Sprintf("scale: %s — RSS", last.label), mib(last.rssKB), mib(base.rssKB) + " (" + base.label + ")", ratioF(float64(last.rssKB), float64(base.rssKB)), "", ""},
		{"4", "scale: idle CPU over " + last.window.String(), fmt.Sprintf("%.2f CPU-s (%.1f%% of a core)", last.cpuSeconds, 100*last.cpuSeconds/last.window.Seconds()),
			fmt.Sprintf("%.2f CPU-s over %s", base.cpuSeconds, base.window), "", "", ""},
		{"4", "scale: SSH connections held", fmt.Sprintf("%d to %d hosts", last.sshConns, last.sshPeers), fmt.Sprintf("%d to %d hosts", base.sshConns, base.sshPeers), "", "one per host", verdict(last.sshConns <= last.sshPeers)},
		{"4", "scale: apiserver requests/s when idle (whole stack)", fmt.Sprintf("%.2f", last.reqPerSec), fmt.Sprintf("%.2f", base.reqPerSec), ratioF(last.reqPerSec, base.reqPerSec), "", ""},
		sc.nodeRequestsRow(),
		{"4", "scale: pods Running", fmt.Sprintf("%d of %d", s.podsRunning, s.podsWanted), "", "", fmt.Sprintf("%d per node", s.perNode), verdict(s.podsRunning == s.podsWanted)},
		sc.scrapeSummary(),
	}
}

// nodeRequestsRow compares the requests the scale test's idle nodes make
// (issue #18) with what as many real kubelets make at rest.
func (sc *scaleSection) nodeRequestsRow() []string {
	const figure = "scale: the nodes' own apiserver requests/s when idle, no pods (Leases, Node reads and writes; issue #18)"
	const goal = "≤ as many real kubelets"
	var idle *idleSample
	for i, x := range sc.res.samples {
		if x.nodes == sc.res.nodes && x.pods == 0 {
			idle = &sc.res.samples[i]
		}
	}
	if idle == nil {
		return failedRow("4", figure, goal, sc.b.rep.errs[sc])
	}
	got, want := nodeRequests(idle.reqByKind, idle.span()), kubeletsAtRest(idle.nodes)
	return []string{"4", figure, fmt.Sprintf("%.2f", got),
		fmt.Sprintf("%.2f (%d real kubelets: each a Lease PUT and a Node GET every 10 s, a status PATCH every 5 min)", want, idle.nodes),
		ratioF(got, want), goal, verdict(got <= want)}
}

// nodeRequests is the rate over span of the requests in byKind that a
// node's kubelet makes at rest: every verb on Leases and Nodes (their
// status included) but lists and watches, which are informers' (and a real
// kubelet's own watches are not counted either).
func nodeRequests(byKind []kindCount, span time.Duration) float64 {
	n := 0.0
	for _, k := range byKind {
		verb, res, _ := strings.Cut(k.kind, " ")
		if verb == "LIST" || verb == "WATCH" {
			continue
		}
		if res == "leases" || res == "nodes" || strings.HasPrefix(res, "nodes/") {
			n += k.n
		}
	}
	return n / span.Seconds()
}

// kubeletsAtRest is the requests per second of n real kubelets with no
// pods, at their defaults: each renews its node Lease every 10 s (a quarter
// of its 40 s), reads its Node every nodeStatusUpdateFrequency (10 s) and
// writes its status when it changed or every nodeStatusReportFrequency (5
// min).
func kubeletsAtRest(n int) float64 {
	return float64(n) * (1.0/10 + 1.0/10 + 1.0/300)
}

// scrapeSummary is the summary row of the scrape cost (issue #13).
func (sc *scaleSection) scrapeSummary() []string {
	const goal = "< 2% of a core; ≤ 1 stats read per host, no other call growing; no scrape timed out"
	c := sc.res.scrape
	if c == nil || !c.measured {
		return failedRow("4", "scale: scrape cost (issue #13)", goal, sc.b.rep.errs[sc])
	}
	f := costFigures(c.unscraped, c.scraped)
	cpu, how := c.cpuFigure(f)
	v := judgeScrapeCost(cpu, how, f, c.results)
	return []string{"4", fmt.Sprintf("scale: scrape cost every %s (issue #13): added rbn-kubelet CPU; container_stats per host per round", every(c.interval)),
		fmt.Sprintf("%s of a core (%s); %s", signedPct(v.addedCPU), v.cpuHow, signed(busiestSigned(f.added.perHost("container_stats")))),
		fmt.Sprintf("unscraped: %s of a core", pct(f.cpuMed[0])), "", goal, verdict(v.met())}
}

func (sc *scaleSection) render(p printer) {
	b, s := sc.b, sc.res
	if !b.sectionHeader(p, sc, "4. Scale", s != nil) {
		return
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
	p("idle measurement finds nothing still starting); a wave with no progress for 3 minutes ends the test.")
	p("")
	var waves []string
	for i, w := range s.waves {
		waves = append(waves, fmt.Sprintf("%d: %d in %s (%.1f pods/s)", i+1, w.pods, secs(w.took), float64(w.pods)/w.took.Seconds()))
	}
	p("**%d of %d pods Running** after %s. Waves: %s.", s.podsRunning, s.podsWanted, secs(s.podsRunningAfter), strings.Join(waves, "; "))
	if n := len(s.samples); n >= 2 && s.podsRunning > 0 {
		last, prev := s.samples[n-1], s.samples[n-2]
		p("")
		p("The running pods' conmon and container processes hold %s of RSS more than before them (%s per pod, an",
			mib(last.ctrRSSKB-prev.ctrRSSKB), mib((last.ctrRSSKB-prev.ctrRSSKB)/int64(s.podsRunning)))
		p("upper bound: shared pages count per process); the machine's MemAvailable went from %s to %s.",
			mib(prev.memAvailKB), mib(last.memAvailKB))
	}
	if s.stopped != "" {
		p("")
		p("**Not all %d pods were run: %s.** The figures below are for the %d that ran.",
			s.podsWanted, s.stopped, s.podsRunning)
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
	samples := s.allSamples()
	for _, x := range samples {
		rows = append(rows, []string{x.label, fmt.Sprintf("%.2f (%.1f%%)", x.cpuSeconds, 100*x.cores()),
			fmt.Sprintf("%.1f%%", 100*x.cpuSubMed), mib(x.rssKB), mib(x.hwmKB),
			fmt.Sprintf("%d to %d hosts", x.sshConns, x.sshPeers), fmt.Sprintf("%.2f (%.2f)", x.reqPerSec, x.reqSubMed),
			fmt.Sprintf("%.1f (%.0f%% of a core)", x.podmanCPU, 100*x.podmanCPU/x.span().Seconds()),
			fmt.Sprintf("%s (%d conmons)", mib(x.ctrRSSKB), x.conmons),
			mib(x.memAvailKB), x.load, readyOf(x), x.throttle.String(), secs(x.settled)})
	}
	if c := s.scrape; c != nil && c.measured {
		p("The last row is the scrape cost's window (below): %d sub-windows of %s each, in pairs of one unscraped and one scraped.", 2*c.rounds, every(c.interval))
		p("")
	}
	table(p, []string{"state", "rbn-kubelet CPU-s over window (% of a core)", "median sub-window", "RSS", "VmHWM", "SSH connections",
		"apiserver req/s (median sub-window)", "hosts' podman services CPU-s (with reaped children)", "conmon + container RSS", "machine MemAvailable", "load avg", "nodes Ready at the end", "rbn-kubelet client-side throttling (logged waits > 1 s)", "waited for quiet"}, rows)
	for _, x := range samples {
		var parts []string
		for i, k := range x.reqByKind {
			if i == 8 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.2f/s", k.kind, k.n/x.span().Seconds()))
		}
		p("- apiserver requests, %s: %s", x.label, strings.Join(parts, ", "))
	}
	p("")
	p("rbn-kubelet's client-side throttling while the pods started: %s (%s).", s.throttle, throttleNote)
	p("")
	p("Clean-up: deleting the pods (grace period 0) until the hosts held nothing of them took %s; deleting the %d extra", secs(s.deleteAll), s.nodes-s.hostCount)
	p("RemoteBuildNodes until their Nodes were gone took %s.", secs(s.deleteNodes))
	if s.cleanupErr != "" {
		p("Clean-up errors: %s", s.cleanupErr)
	}
	p("")
	renderScrapeCost(p, s.scrape)
}

func readyOf(x idleSample) string { return fmt.Sprintf("%d of %d", x.readyNodes, x.servedNodes) }
