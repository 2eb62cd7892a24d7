package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// ---------------------------------------------------------------------------------------------
// Probes (issue #15): the same pods, spread over the hosts, without probes
// (the baseline), with an httpGet readiness probe and with an exec
// readiness probe, each every second: rbn-kubelet's CPU, the hosts'
// podman services' CPU and the conmon processes left on the hosts.

// probesSection measures the cost of running probes.
type probesSection struct {
	b   *bench
	res []probeRound
}

// probeRound is one kind of probe on every pod.
type probeRound struct {
	kind string // "none", "httpGet", "exec"
	pods int
	// Per measurement window: CPU in cores (seconds per second).
	kubeletCores, podmanCores []float64
	conmons                   int // on the hosts at the end of the windows
}

// probeKinds are the rounds, the baseline first.
var probeKinds = []string{"none", "httpGet", "exec"}

func (s *probesSection) run(ctx context.Context) error {
	for _, kind := range probeKinds {
		r, err := s.b.probeRound(ctx, kind)
		s.res = append(s.res, r)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	return nil
}

func (b *bench) probeRound(ctx context.Context, kind string) (probeRound, error) {
	r := probeRound{kind: kind, pods: b.cfg.probePods}
	ns, err := b.newNamespace(ctx, "bench-probes")
	if err != nil {
		return r, err
	}
	defer b.deleteNamespace(ns)
	sel := benchLabel + "=probes"
	tr, err := trackPods(ctx, b.kube, ns, sel)
	if err != nil {
		return r, err
	}
	defer tr.stop()
	defer func() { _, _ = b.deletePods(context.Background(), ns, sel, 10*time.Minute) }()
	if err := b.createProbePods(ctx, ns, kind); err != nil {
		return r, err
	}
	err = tr.wait(ctx, "every probed pod Ready", 10*time.Minute, func(pods map[string]*podTimes) (bool, string) {
		ready := 0
		for _, p := range pods {
			if p.last != nil && podReady(p.last) {
				ready++
			}
		}
		return ready == b.cfg.probePods, fmt.Sprintf("%d of %d Ready", ready, b.cfg.probePods)
	})
	if err != nil {
		return r, err
	}
	pids, err := b.stack.KubeletPIDs()
	if err != nil {
		return r, err
	}
	kubeletCPU := func() float64 {
		total := 0.0
		for _, pid := range pids {
			if v, err := framework.ProcCPU(pid); err == nil {
				total += v
			}
		}
		return total
	}
	for range b.cfg.probeWindows {
		k0, p0, t0 := kubeletCPU(), b.hostsPodmanCPU(), time.Now()
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(b.cfg.probeWindow):
		}
		k1, p1, el := kubeletCPU(), b.hostsPodmanCPU(), time.Since(t0).Seconds()
		r.kubeletCores = append(r.kubeletCores, (k1-k0)/b.clkTck/el)
		r.podmanCores = append(r.podmanCores, (p1-p0)/b.clkTck/el)
	}
	_, r.conmons = b.containerRSS()
	return r, nil
}

// createProbePods creates the round's pods: a small web server each, with
// the round's readiness probe every second.
func (b *bench) createProbePods(ctx context.Context, ns, kind string) error {
	errs := make(chan error, b.cfg.probePods)
	var wg sync.WaitGroup
	for i := range b.cfg.probePods {
		p := framework.JobPod(ns, fmt.Sprintf("probed-%03d", i), "", map[string]string{benchLabel: "probes"},
			[]string{"sh", "-c", "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www"})
		p.Spec.RestartPolicy = corev1.RestartPolicyAlways
		c := &p.Spec.Containers[0]
		switch kind {
		case "httpGet":
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
		case "exec":
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, PeriodSeconds: 1}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
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
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// probeBaseline is the round without probes, nil if it was not measured.
func (s *probesSection) probeBaseline() *probeRound {
	for i := range s.res {
		if s.res[i].kind == "none" && len(s.res[i].kubeletCores) > 0 {
			return &s.res[i]
		}
	}
	return nil
}

func (s *probesSection) summary() [][]string {
	base := s.probeBaseline()
	var rows [][]string
	for _, r := range s.res {
		if r.kind == "none" || len(r.kubeletCores) == 0 || base == nil {
			continue
		}
		extra := medianF(r.kubeletCores) - medianF(base.kubeletCores)
		rows = append(rows, []string{"15", fmt.Sprintf("%s readiness probe every 1 s on %d pods: rbn-kubelet CPU", r.kind, r.pods),
			fmt.Sprintf("%.1f%% of a core", 100*medianF(r.kubeletCores)),
			fmt.Sprintf("%.1f%% (same pods, no probes)", 100*medianF(base.kubeletCores)),
			fmt.Sprintf("+%.1f%% of a core (%s a probe; at 200 pods %.1f%%)", 100*extra, perProbe(extra, r.pods), 100*extra*200/float64(r.pods)),
			"< 5% of a core at 200 pods", fmt.Sprintf("%d conmons (baseline %d)", r.conmons, base.conmons)})
	}
	if len(rows) == 0 {
		rows = append(rows, failedRow("15", "probe cost", "", s.b.rep.errs[s]))
	}
	return rows
}

func (s *probesSection) render(p printer) {
	b := s.b
	if !b.sectionHeader(p, s, "15. Probes: what a readiness probe every second costs", len(s.res) > 0) {
		return
	}
	p("%d pods spread by the scheduler over the build hosts, each a busybox httpd, in three rounds: no probe (the", b.cfg.probePods)
	p("baseline), an httpGet readiness probe (from the host to the pod over the node's SSH connection) and an exec")
	p("readiness probe (`true`, a podman exec session each), all every second. Once every pod is Ready, %d windows", b.cfg.probeWindows)
	p("of %s each: the CPU of rbn-kubelet (every replica) and of the hosts' podman services with what they fork,", b.cfg.probeWindow)
	p("in cores; then the conmon processes on the hosts (podman keeps one per exec session until exit_command_delay).")
	p("")
	p("The CPU a probe costs (the round's median over the baseline's, divided by the probes per second) is what")
	p("scales with the pod count: it gives the figure for other pod counts on a machine that can hold them.")
	p("")
	base := s.probeBaseline()
	rows := [][]string{}
	for _, r := range s.res {
		kubeletPer, podmanPer := "-", "-"
		if base != nil && r.kind != "none" && len(r.kubeletCores) > 0 {
			kubeletPer = perProbe(medianF(r.kubeletCores)-medianF(base.kubeletCores), r.pods)
			podmanPer = perProbe(medianF(r.podmanCores)-medianF(base.podmanCores), r.pods)
		}
		rows = append(rows, []string{r.kind, fmt.Sprint(r.pods), coresRow(r.kubeletCores), kubeletPer, coresRow(r.podmanCores), podmanPer, fmt.Sprint(r.conmons)})
	}
	table(p, []string{"probe", "pods", "rbn-kubelet CPU (median, min-max)", "rbn-kubelet CPU a probe", "hosts' podman CPU (median, min-max)", "podman CPU a probe", "conmons at the end"}, rows)
}

// perProbe renders the CPU cores a round took over its baseline as CPU time
// per probe, with one probe a second on each of pods.
func perProbe(extraCores float64, pods int) string {
	if pods == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", 1000*extraCores/float64(pods))
}

// coresRow renders CPU samples in cores as a percentage of one core.
func coresRow(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return fmt.Sprintf("%.1f%% (%.1f-%.1f%%)", 100*medianF(v), 100*lo, 100*hi)
}
