package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// ---------------------------------------------------------------------------------------------
// 2: burst.

// burstSection measures item 2.
type burstSection struct {
	b   *bench
	res *burstResult
}

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
	// Per-pod medians from the hosts' events (see podStages).
	stages [4]time.Duration
	// floor: every container started (inspected running) / "died" delivered.
	floorAllRunning, floorAllExited time.Duration
	floorClientCPU                  float64 // this process, for scale
	floorRetries, floorPodRetries   int32   // failed container/pod starts tried again
	// floor in pods: each container in a podman pod of its own.
	floorPodAllRunning, floorPodAllExited time.Duration
	// The whole machine's CPU from the first create until every pod ended
	// (rbn) / every container exited (floor in pods), and the wall time it
	// was spent over; calls are rbn-kubelet's podman calls and SSH commands
	// meanwhile.
	machine, floorPodMachine         framework.CPUUse
	machineWall, floorPodMachineWall time.Duration
	calls                            callCounts
}

type burstResult struct {
	pods   int
	rounds []burstRound
}

func (s *burstSection) run(ctx context.Context) error {
	b := s.b
	s.res = &burstResult{pods: b.cfg.burstPods}
	res := s.res
	for r := 0; r < b.cfg.rounds; r++ {
		var round burstRound
		steps := []func() error{
			func() error { return b.rbnBurst(ctx, r, &round) },
			func() (err error) {
				round.floorAllRunning, round.floorAllExited, round.floorClientCPU, round.floorRetries, err = b.floorBurst(ctx, r, false, nil, nil)
				return err
			},
			func() (err error) {
				round.floorPodAllRunning, round.floorPodAllExited, _, round.floorPodRetries, err = b.floorBurst(ctx, r, true, &round.floorPodMachine, &round.floorPodMachineWall)
				return err
			},
		}
		if err := rotated(r, steps); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		b.logf("burst round %d: rbn all Running %s, all Succeeded %s, CPU %.2fs, peak RSS %d MiB, throttling %s; floor all running %s, all exited %s; in pods %s, %s",
			r, ms(round.allRunning), ms(round.allSucceeded), round.cpuSeconds, round.hwmKB/1024, round.throttle,
			ms(round.floorAllRunning), ms(round.floorAllExited), ms(round.floorPodAllRunning), ms(round.floorPodAllExited))
		res.rounds = append(res.rounds, round)
	}
	return nil
}

func (b *bench) rbnBurst(ctx context.Context, r int, out *burstRound) error {
	// VmHWM is the process's lifetime peak: a fresh process makes it the burst's.
	if err := b.restartKubelet(ctx); err != nil {
		return err
	}
	pid, err := b.stack.KubeletPID()
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
	if st, err := framework.ProcStatus(pid); err == nil {
		out.rssBeforeKB = st["VmRSS"]
	}
	cpu0, err := framework.ProcCPU(pid)
	if err != nil {
		return err
	}
	metricsURL, err := b.kubeletMetricsURL()
	if err != nil {
		return err
	}
	calls0, err := b.readKubeletMetrics(ctx, metricsURL)
	if err != nil {
		return err
	}
	machine0 := framework.TakeCPUSnapshot()
	t0 := time.Now()
	errs := make(chan error, b.cfg.burstPods)
	var wg sync.WaitGroup
	for i := 0; i < b.cfg.burstPods; i++ {
		name := fmt.Sprintf("burst-%03d", i)
		node := b.hosts[i%len(b.hosts)].Name
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.setCreated(name, time.Now())
			_, err := b.kube.CoreV1().Pods(ns).Create(ctx, framework.JobPod(ns, name, node, map[string]string{benchLabel: "burst"}, []string{"sleep", "2"}), metav1.CreateOptions{})
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
	out.machine, out.machineWall = machine0.Until(framework.TakeCPUSnapshot()), time.Since(t0)
	cpu1, cerr := framework.ProcCPU(pid)
	st, serr := framework.ProcStatus(pid)
	if err != nil {
		return err
	}
	calls1, err := b.readKubeletMetrics(ctx, metricsURL)
	if err != nil {
		return err
	}
	out.calls = calls1.calls.since(calls0.calls)
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
			events[h.Name] = e
		}
	}
	var first, sandbox, created, started []time.Duration
	for _, p := range tr.snapshot() {
		out.perNode[p.node]++
		if st := stagesOf(events[p.node], string(p.uid), p.scheduled); st.ok {
			first, sandbox = append(first, st.toFirst), append(sandbox, st.sandbox)
			created, started = append(created, st.created), append(started, st.started)
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
	out.stages = [4]time.Duration{median(first), median(sandbox), median(created), median(started)}
	out.deleteAll, err = b.deletePods(ctx, ns, sel, 5*time.Minute)
	return err
}

// floorBurst starts the burst's containers directly, bare or each in a
// podman pod of its own (rbn's shape, minus rbn), and returns when every
// one was inspected running and when every one's "died" was delivered.
func (b *bench) floorBurst(ctx context.Context, r int, inPod bool, machine *framework.CPUUse, machineWall *time.Duration) (allRunning, allExited time.Duration, clientCPU float64, retried int32, err error) {
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
			return 0, 0, 0, 0, err
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
	cpu0, err := framework.ProcCPU(self)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	machine0 := framework.TakeCPUSnapshot()
	t0 := time.Now()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		started  = map[string]bool{}
		retries  atomic.Int32
		firstErr error
	)
	for i := 0; i < b.cfg.burstPods; i++ {
		f := b.floors[i%len(b.floors)]
		name := fmt.Sprintf("bench-%s-%03d", run, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := floorStart(ctx, f, name, inPod, labels, []string{"sleep", "2"}, &retries)
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				return
			}
			started[name] = true
			allRunning = max(allRunning, now.Sub(t0))
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, 0, 0, firstErr
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
			return 0, 0, 0, 0, fmt.Errorf("floor burst: %d of %d containers seen exiting", len(seen), len(started))
		}
	}
	if machine != nil {
		*machine, *machineWall = machine0.Until(framework.TakeCPUSnapshot()), time.Since(t0)
	}
	cpu1, err := framework.ProcCPU(self)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	return allRunning, allExited, (cpu1 - cpu0) / b.clkTck, retries.Load(), nil
}

// burstStages is the per-stage median over the rounds.
func burstStages(bu *burstResult) [4]time.Duration {
	var out [4]time.Duration
	for i := range out {
		out[i] = medianOf(bu.rounds, func(x burstRound) time.Duration { return x.stages[i] })
	}
	return out
}

func (s *burstSection) summary() [][]string {
	b, bu := s.b, s.res
	if bu == nil || len(bu.rounds) == 0 {
		return [][]string{failedRow("2", "burst", "≤ 2×", b.rep.errs[s])}
	}
	run, runF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allRunning }), medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllRunning })
	suc, sucF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allSucceeded }), medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllExited })
	return [][]string{
		{"2", fmt.Sprintf("burst of %d pods on %d hosts: all Running", bu.pods, len(b.hosts)), secs(run), secs(runF), ratio(run, runF), "≤ 2×", verdict(float64(run) <= 2*float64(runF))},
		{"2", "burst: all Succeeded (`sleep 2`)", secs(suc), secs(sucF), ratio(suc, sucF), "≤ 2×", verdict(float64(suc) <= 2*float64(sucF))},
		{"2", "burst: rbn-kubelet CPU / peak RSS", fmt.Sprintf("%.1f CPU-s / %s", medianFOf(bu.rounds, func(x burstRound) float64 { return x.cpuSeconds }), mib(int64(medianFOf(bu.rounds, func(x burstRound) float64 { return float64(x.hwmKB) })))),
			fmt.Sprintf("%.1f CPU-s (client side of the floor)", medianFOf(bu.rounds, func(x burstRound) float64 { return x.floorClientCPU })), "", "", ""},
	}
}

func (s *burstSection) render(p printer) {
	b, bu := s.b, s.res
	if !b.sectionHeader(p, s, "2. Burst", bu != nil) {
		return
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
			secs(r.floorPodAllRunning) + " / " + secs(r.floorPodAllExited), fmt.Sprintf("%d / %d", r.floorRetries, r.floorPodRetries),
			secs(r.deleteAll), fmt.Sprintf("%d/%d", r.missedRunning, r.failed), r.throttle.String()})
	}
	run, runF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allRunning }), medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllRunning })
	suc, sucF := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.allSucceeded }), medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorAllExited })
	rows = append(rows, []string{"**median**", "**" + secs(run) + "**", "**" + secs(suc) + "**", "", fmt.Sprintf("**%.1f**", medianFOf(bu.rounds, func(x burstRound) float64 { return x.cpuSeconds })),
		"**" + mib(int64(medianFOf(bu.rounds, func(x burstRound) float64 { return float64(x.hwmKB) }))) + "**",
		"**" + secs(runF) + "**", "**" + secs(sucF) + "**", "",
		"**" + secs(medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorPodAllRunning })) + " / " +
			secs(medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorPodAllExited })) + "**", "", "", "", ""})
	table(p, []string{"round", "rbn all Running", "rbn all Succeeded", "rbn per-pod create→Running p50 / p90", "rbn-kubelet CPU-s", "rbn-kubelet RSS before → peak (VmHWM)",
		"floor all running", "floor all exited", "floor client CPU-s", "floor in pods: all running / exited", "floor starts tried again (bare / in pods)", "rbn: delete all (grace 0) until off the hosts", "pods never seen Running / failed", "rbn-kubelet client-side throttling (logged waits > 1 s)"}, rows)
	p("All Running: rbn %s vs floor %s (**%s**, goal ≤ 2×: %s); all Succeeded: %s vs %s (**%s**: %s).",
		secs(run), secs(runF), ratio(run, runF), verdict(float64(run) <= 2*float64(runF)),
		secs(suc), secs(sucF), ratio(suc, sucF), verdict(float64(suc) <= 2*float64(sucF)))
	runP := medianOf(bu.rounds, func(x burstRound) time.Duration { return x.floorPodAllRunning })
	p("Against the floor in pods (%s to all running) rbn takes %s.", secs(runP), ratio(run, runP))
	s.renderMachine(p)
	st := burstStages(bu)
	p("Per pod, from the hosts' events (medians over the pods, median round): %s from scheduled to the pod's first",
		secs(st[0]))
	p("podman object; from that object %s until the infra container started and %s until the pod's container was created",
		secs(st[1]), secs(st[2]))
	p("(created while the infra container starts); %s from created to started", secs(st[3]))
	p("(%d pods per host started at once).", bu.pods/max(1, len(b.hosts)))
	if len(bu.rounds) > 0 {
		p("Pods per node (round 1): %v.", bu.rounds[0].perNode)
	}
	p("")
}

// renderMachine says where the machine's CPU went in each round, rbn's and
// the floor in pods', and what rbn-kubelet asked of the hosts per pod: on a
// machine whose CPUs are all busy in both, the CPU one takes more is the
// time it takes more.
func (s *burstSection) renderMachine(p printer) {
	b, bu := s.b, s.res
	cores := func(u framework.CPUUse, wall time.Duration) string {
		if wall <= 0 {
			return "?"
		}
		return fmt.Sprintf("%.2f", u.Busy/b.clkTck/wall.Seconds())
	}
	top := func(u framework.CPUUse, n int) string {
		var parts []string
		for _, c := range u.Top(n) {
			parts = append(parts, fmt.Sprintf("%s %.1f", c.Comm, c.Ticks/b.clkTck))
		}
		return strings.Join(parts, ", ")
	}
	p("")
	p("The whole machine's CPU (`/proc/stat`, and each process's `/proc/<pid>/stat` with the children it waited for)")
	p("from the first create until every pod ended (rbn) and until every container exited (floor in pods), with")
	p("the CPUs it kept busy on average (%d on this machine), and the commands that took most:", goruntime.NumCPU())
	p("")
	var rows [][]string
	for i, r := range bu.rounds {
		rows = append(rows, []string{strconv.Itoa(i + 1),
			fmt.Sprintf("%.1f CPU-s over %s (%s CPUs)", r.machine.Busy/b.clkTck, secs(r.machineWall), cores(r.machine, r.machineWall)),
			fmt.Sprintf("%.1f CPU-s over %s (%s CPUs)", r.floorPodMachine.Busy/b.clkTck, secs(r.floorPodMachineWall), cores(r.floorPodMachine, r.floorPodMachineWall)),
			top(r.machine, 10), top(r.floorPodMachine, 6)})
	}
	table(p, []string{"round", "rbn: machine CPU", "floor in pods: machine CPU", "rbn: CPU-s by command", "floor in pods: CPU-s by command"}, rows)
	if len(bu.rounds) == 0 {
		return
	}
	subs := make([]callCounts, len(bu.rounds))
	for i, r := range bu.rounds {
		subs[i] = r.calls.overHosts()
	}
	perRound := medianCalls(subs)
	var parts []string
	for _, op := range callOps(perRound) {
		parts = append(parts, fmt.Sprintf("%s %.1f", op, perRound[callKey{op: op}]/float64(bu.pods)))
	}
	p("rbn-kubelet's podman calls and SSH commands per pod, over all hosts, from the first create until every pod")
	p("ended (medians over the rounds; the floor in pods makes 5: pod create and start, container create and start,")
	p("one inspection): %s.", strings.Join(parts, ", "))
	p("")
}
