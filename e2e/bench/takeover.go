package bench

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// ---------------------------------------------------------------------------------------------
// Takeover: two rbn-kubelet replicas; the one serving every node is killed.

// takeoverSection kills the serving rbn-kubelet (SIGKILL: nothing released)
// repeatedly, the primary (hack/kubelet.sh) and a second replica
// (framework.StartKubeletReplica) taking turns, and measures from the kill
// until every node is served by the other replica (it holds the node's
// Lease; the Node is Ready and advertises its kubelet port) and until a pod
// created on each node at the kill is Running. The same-run baseline is the
// same pods started with nothing killed.
type takeoverSection struct {
	b   *bench
	res *takeoverResult
}

type takeoverResult struct {
	kills []takeoverKill
	// baseline: one pod per node created at once, all Running.
	baseline []time.Duration
}

type takeoverKill struct {
	killed        string
	held          time.Duration // every node's Lease held by the survivor
	served        time.Duration // and every Node Ready with the survivor's port
	podsRunning   time.Duration // a pod created on each node at the kill: all Running
	notReadyNodes int           // nodes seen Ready=False or Unknown meanwhile
}

// takeoverReplicaPort: the second replica's kubelet API port is this far
// above the primary's first node port (its nodes get the 50 after it).
const takeoverReplicaPort = 299

type kubeletProc struct {
	identity    string
	first, last int32
	kill        func() error
	start       func() error
}

func (s *takeoverSection) run(ctx context.Context) error {
	b := s.b
	s.res = &takeoverResult{}
	primaryID, err := framework.PrimaryKubeletIdentity()
	if err != nil {
		return err
	}
	pFirst, pLast, err := b.stack.PrimaryKubeletPorts()
	if err != nil {
		return err
	}
	var replica *framework.KubeletReplica
	startReplica := func() error {
		replica = b.stack.StartKubeletReplica(b.t, framework.UniqueName("bench-replica"), pFirst+takeoverReplicaPort)
		return nil
	}
	if err := startReplica(); err != nil {
		return err
	}
	procs := []*kubeletProc{
		{identity: primaryID, first: pFirst, last: pLast,
			kill: func() error {
				pid, err := b.stack.KubeletPID()
				if err != nil {
					return err
				}
				return syscall.Kill(pid, syscall.SIGKILL)
			},
			start: func() error { return b.stack.KubeletErr(ctx, "start") }},
		{first: replica.PortFirst, last: replica.PortLast,
			kill:  func() error { return replica.Kill() },
			start: startReplica},
	}
	identity := func(p *kubeletProc) string {
		if p.identity != "" {
			return p.identity
		}
		return replica.Identity
	}
	// Leave the stack as found: the replica stopped (it releases), the
	// primary running and serving every node.
	defer func() {
		if _, err := b.stack.KubeletPID(); err != nil {
			_ = b.stack.KubeletErr(context.Background(), "start")
		}
		_ = replica.Stop(30 * time.Second)
		_ = b.waitServed(context.Background(), primaryID, pFirst, pLast, 2*time.Minute)
	}()
	ns, err := b.newNamespace(ctx, "bench-takeover")
	if err != nil {
		return err
	}
	defer b.deleteNamespace(ns)
	serving := 0 // the primary serves every node at the start
	if err := b.waitServed(ctx, primaryID, pFirst, pLast, 2*time.Minute); err != nil {
		return err
	}
	for i := range b.cfg.kills {
		// Baseline: one pod per node, nothing killed.
		base, err := b.podPerNodeRunning(ctx, ns, fmt.Sprintf("base-%d", i), time.Now(), 2*time.Minute)
		if err != nil {
			return fmt.Errorf("baseline %d: %w", i, err)
		}
		s.res.baseline = append(s.res.baseline, base)
		if _, err := b.deletePods(ctx, ns, "", 2*time.Minute); err != nil {
			return err
		}
		b.quiesce(ctx)

		victim, survivor := procs[serving], procs[1-serving]
		stopWatch := b.watchNotReady()
		killed := time.Now()
		if err := victim.kill(); err != nil {
			return fmt.Errorf("kill %s: %w", identity(victim), err)
		}
		k := takeoverKill{killed: identity(victim)}
		running := make(chan error, 1)
		go func() {
			d, err := b.podPerNodeRunning(ctx, ns, fmt.Sprintf("kill-%d", i), killed, 2*time.Minute)
			k.podsRunning = d
			running <- err
		}()
		if err := b.waitHeld(ctx, identity(survivor), time.Minute); err != nil {
			return err
		}
		k.held = time.Since(killed)
		if err := b.waitServed(ctx, identity(survivor), survivor.first, survivor.last, time.Minute); err != nil {
			return err
		}
		k.served = time.Since(killed)
		if err := <-running; err != nil {
			return fmt.Errorf("pods after kill %d: %w", i, err)
		}
		k.notReadyNodes = stopWatch()
		s.res.kills = append(s.res.kills, k)
		b.logf("takeover %d: killed %s: leases %s, served %s, pods Running %s (baseline %s)",
			i+1, k.killed, secs(k.held), secs(k.served), secs(k.podsRunning), secs(base))
		if _, err := b.deletePods(ctx, ns, "", 2*time.Minute); err != nil {
			return err
		}
		// The killed one comes back as the standby.
		if err := victim.start(); err != nil {
			return fmt.Errorf("restart %s: %w", identity(victim), err)
		}
		serving = 1 - serving
		b.quiesce(ctx)
	}
	return nil
}

// podPerNodeRunning creates one pod on each host node and returns the time
// from since until all are Running.
func (b *bench) podPerNodeRunning(ctx context.Context, ns, prefix string, since time.Time, timeout time.Duration) (time.Duration, error) {
	var names []string
	for i, n := range b.hostNames() {
		p := framework.JobPod(ns, prefix+"-"+strconv.Itoa(i), n, map[string]string{benchLabel: "true"}, []string{"sleep", "3600"})
		if _, err := b.kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return 0, err
		}
		names = append(names, p.Name)
	}
	err := framework.Poll(ctx, "a pod Running on every node", timeout, 100*time.Millisecond, func() (bool, string) {
		for _, name := range names {
			p, err := b.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if p.Status.Phase != corev1.PodRunning {
				return false, name + " " + string(p.Status.Phase)
			}
		}
		return true, ""
	})
	return time.Since(since), err
}

func (b *bench) waitHeld(ctx context.Context, identity string, timeout time.Duration) error {
	return framework.Poll(ctx, "every node's lease held by "+identity, timeout, 100*time.Millisecond, func() (bool, string) {
		holders, err := b.stack.LeaseHolders(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, n := range b.hostNames() {
			if holders[n] != identity {
				return false, n + " held by " + holders[n]
			}
		}
		return true, ""
	})
}

func (b *bench) waitServed(ctx context.Context, identity string, first, last int32, timeout time.Duration) error {
	return framework.Poll(ctx, "every node served by "+identity, timeout, 100*time.Millisecond, func() (bool, string) {
		for _, n := range b.hostNames() {
			if ok, why := b.stack.ServedBy(ctx, n, identity, first, last); !ok {
				return false, n + ": " + why
			}
		}
		return true, ""
	})
}

// watchNotReady samples the host nodes' Ready condition until stopped;
// stop returns how many nodes were seen not Ready.
func (b *bench) watchNotReady() func() int {
	ctx, cancel := context.WithCancel(context.Background())
	seen := map[string]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = framework.Poll(ctx, "node readiness", 24*time.Hour, 250*time.Millisecond, func() (bool, string) {
			for _, n := range b.hostNames() {
				node, err := b.kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
				if err == nil && !framework.NodeReady(node) {
					seen[n] = true
				}
			}
			return false, ""
		})
	}()
	return func() int { cancel(); <-done; return len(seen) }
}

func (s *takeoverSection) summary() [][]string {
	b, r := s.b, s.res
	if r == nil || len(r.kills) == 0 {
		return [][]string{failedRow("12", "takeover", "< 15 s", b.rep.errs[s])}
	}
	served := medianOf(r.kills, func(k takeoverKill) time.Duration { return k.served })
	pods := medianOf(r.kills, func(k takeoverKill) time.Duration { return k.podsRunning })
	base := median(r.baseline)
	return [][]string{
		{"12", fmt.Sprintf("takeover: kill -9 → every node served again (median of %d)", len(r.kills)), secs(served), "", "", "< 15 s", verdict(served < 15*time.Second)},
		{"12", "takeover: kill -9 → a new pod on each node Running (vs. no kill)", secs(pods), secs(base), ratio(pods, base), "< 15 s", verdict(pods < 15*time.Second)},
	}
}

func (s *takeoverSection) render(p printer) {
	b, r := s.b, s.res
	if !b.sectionHeader(p, s, "12. Takeover", r != nil && len(r.kills) > 0) {
		return
	}
	p("Two rbn-kubelet replicas (the stack's, and a second process with its own identity and kubelet ports);")
	p("the one serving every node is killed with SIGKILL (nothing released), the two taking turns, and comes")
	p("back as the standby. Measured from the kill: every node's Lease (`rbn-system/rbn-node-<node>`) held by")
	p("the other replica; every node served (Lease held, Node Ready, advertising the survivor's kubelet port);")
	p("a pod created on each node at the kill Running. Baseline: the same pods with nothing killed, same run.")
	p("The Lease is taken `sharding.leaseDuration` (10 s) after the survivor last saw it change.")
	p("")
	rows := [][]string{}
	for i, k := range r.kills {
		rows = append(rows, []string{strconv.Itoa(i + 1), k.killed, secs(k.held), secs(k.served), secs(k.podsRunning),
			secs(r.baseline[i]), strconv.Itoa(k.notReadyNodes)})
	}
	table(p, []string{"kill", "killed", "leases held", "served", "pod per node Running", "baseline (no kill)", "nodes not Ready"}, rows)
}
