package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// ---------------------------------------------------------------------------------------------
// 1 and 5: pod start latency and status latency, one pod at a time on one node.

// latencySection measures items 1 and 5 in the same runs.
type latencySection struct {
	b   *bench
	res *latencyResult
}

type latencyResult struct {
	node string
	// Per measured run. rbn: create -> Running (watch), its parts, and
	// container exit (podman's FinishedAt) -> Succeeded (watch).
	rbnStart, rbnScheduled, rbnToContainerStarted, rbnStartedToRunning, rbnStatus []time.Duration
	throttle                                                                      throttleStat
	// From the host's podman events (see podStages).
	stageFirst, stageSandbox, stageCreated, stageStarted []time.Duration
	// Floor: create+start until running, bare and in a podman pod, and
	// exit -> "died" event delivered over the same SSH link.
	floorStart, floorPodStart, floorStatus, floorPodStatus []time.Duration
}

func (s *latencySection) run(ctx context.Context) error {
	b := s.b
	start := time.Now()
	s.res = &latencyResult{node: b.hosts[0].Name}
	err := b.measureLatency(ctx, s.res)
	s.res.throttle = b.kubeletThrottling(start, time.Now())
	return err
}

func (b *bench) measureLatency(ctx context.Context, res *latencyResult) error {
	host := b.hosts[0]
	f := b.floors[0]
	ns, err := b.newNamespace(ctx, "bench-latency")
	if err != nil {
		return err
	}
	defer b.deleteNamespace(ns)
	tr, err := trackPods(ctx, b.kube, ns, benchLabel+"=latency")
	if err != nil {
		return err
	}
	defer tr.stop()
	command := []string{"sleep", "2"}
	total := b.cfg.warmup + b.cfg.runs
	for i := 0; i < total; i++ {
		measured := i >= b.cfg.warmup
		floorStep := func(inPod bool, start, status *[]time.Duration) func() error {
			return func() error {
				name := fmt.Sprintf("bench-floor-%02d", i)
				if inPod {
					name = fmt.Sprintf("bench-floorpod-%02d", i)
				}
				st, stat, err := floorLatencyRun(ctx, f, name, inPod, command)
				if err == nil && measured {
					*start, *status = append(*start, st), append(*status, stat)
				}
				return err
			}
		}
		steps := []func() error{
			func() error {
				r, err := b.rbnLatencyRun(ctx, tr, ns, host.Name, i, command)
				if err == nil && measured {
					res.rbnStart = append(res.rbnStart, r.start)
					res.rbnScheduled = append(res.rbnScheduled, r.scheduled)
					res.rbnToContainerStarted = append(res.rbnToContainerStarted, r.containerStarted)
					res.rbnStartedToRunning = append(res.rbnStartedToRunning, r.startedToRunning)
					res.rbnStatus = append(res.rbnStatus, r.status)
					if r.stages.ok {
						res.stageFirst = append(res.stageFirst, r.stages.toFirst)
						res.stageSandbox = append(res.stageSandbox, r.stages.sandbox)
						res.stageCreated = append(res.stageCreated, r.stages.created)
						res.stageStarted = append(res.stageStarted, r.stages.started)
					}
				}
				return err
			},
			floorStep(false, &res.floorStart, &res.floorStatus),
			floorStep(true, &res.floorPodStart, &res.floorPodStatus),
		}
		if err := rotated(i, steps); err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		if measured {
			b.logf("latency run %d: rbn start %s status %s; floor start %s (in pod %s) status %s", i-b.cfg.warmup,
				ms(res.rbnStart[len(res.rbnStart)-1]), ms(res.rbnStatus[len(res.rbnStatus)-1]),
				ms(res.floorStart[len(res.floorStart)-1]), ms(res.floorPodStart[len(res.floorPodStart)-1]),
				ms(res.floorStatus[len(res.floorStatus)-1]))
		}
	}
	return nil
}

type rbnRun struct {
	start, scheduled, containerStarted, startedToRunning, status time.Duration
	stages                                                       podStages
}

// podStages splits scheduled -> container started by the host's own podman
// events: the first podman object of the pod; from it, the infra container
// started and the pod's container created (rbn creates the container while
// the infra container starts when nothing needs the pod's IP first); and
// created -> started. Zero when the events are not readable.
type podStages struct {
	toFirst, sandbox, created, started time.Duration
	ok                                 bool
}

// hostEvent is one line of a local host's podman events log (hack/hosts.sh
// configures events_logger = "file" under the host's tmp dir).
type hostEvent struct {
	Name, Status, Type string
	Time               time.Time
	Attributes         map[string]string
}

func readHostEvents(h framework.BuildHost) ([]hostEvent, error) {
	f, err := os.Open(filepath.Join(filepath.Dir(h.Socket), "tmp", "events", "events.log"))
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
	var first, podStart, mainCreate, mainStart time.Time
	for _, e := range events {
		if !strings.Contains(e.Name, uid) && e.Attributes[pod.LabelPodUID] != uid {
			continue
		}
		if first.IsZero() {
			first = e.Time
		}
		isMain := e.Type == "container" && strings.Contains(e.Name, "-main-")
		switch {
		case e.Type == "container" && strings.HasSuffix(e.Name, "-infra") && e.Status == "start" && podStart.IsZero():
			podStart = e.Time
		case isMain && e.Status == "create" && mainCreate.IsZero():
			mainCreate = e.Time
		case isMain && e.Status == "start" && mainStart.IsZero():
			mainStart = e.Time
		}
	}
	if first.IsZero() || podStart.IsZero() || mainCreate.IsZero() || mainStart.IsZero() {
		return podStages{}
	}
	return podStages{toFirst: first.Sub(scheduled), sandbox: podStart.Sub(first),
		created: mainCreate.Sub(first), started: mainStart.Sub(mainCreate), ok: true}
}

func (b *bench) rbnLatencyRun(ctx context.Context, tr *podTracker, ns, node string, i int, command []string) (rbnRun, error) {
	name := fmt.Sprintf("start-%02d", i)
	p := framework.JobPod(ns, name, node, map[string]string{benchLabel: "latency"}, command)
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
	if err := floorStart(ctx, f, name, inPod, labels, command, nil); err != nil {
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
				return 0, 0, fmt.Errorf("event stream of %s closed", f.host.Name)
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

func (s *latencySection) summary() [][]string {
	l := s.res
	var rows [][]string
	if l != nil && len(l.rbnStart) > 0 {
		over := median(l.rbnStart) - median(l.floorStart)
		rows = append(rows, []string{"1", "pod start: create → Running (watch), image present",
			ms(median(l.rbnStart)), ms(median(l.floorStart)) + " (bare container)",
			signedMs(over), "< +100 ms", verdict(over < 100*time.Millisecond)},
			[]string{"1", "pod start against the floor in a podman pod (rbn's shape)",
				ms(median(l.rbnStart)), ms(median(l.floorPodStart)) + " (podman pod + container)",
				signedMs(median(l.rbnStart) - median(l.floorPodStart)), "", ""})
	} else {
		rows = append(rows, failedRow("1", "pod start", "< +100 ms", s.b.rep.errs[s]))
	}
	if l != nil && len(l.rbnStatus) > 0 {
		p50 := median(l.rbnStatus)
		rows = append(rows, []string{"5", "status: container exit → Succeeded (watch), p50 / p90",
			ms(p50) + " / " + ms(quantile(l.rbnStatus, 0.9)), ms(median(l.floorStatus)) + " / " + ms(quantile(l.floorStatus, 0.9)) + " (exit → `died` event)",
			signedMs(p50 - median(l.floorStatus)), "p50 < 1 s", verdict(p50 < time.Second)})
	} else {
		rows = append(rows, failedRow("5", "status latency", "p50 < 1 s", s.b.rep.errs[s]))
	}
	return rows
}

func (s *latencySection) render(p printer) {
	b, l := s.b, s.res
	if !b.sectionHeader(p, s, "1. Pod start latency and 5. status latency", l != nil) {
		return
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
		distRow("rbn, host events: scheduled → first podman object of the pod", l.stageFirst),
		distRow("rbn, host events: first object → infra container started", l.stageSandbox),
		distRow("rbn, host events: first object → the pod's container created (overlaps the infra start)", l.stageCreated),
		distRow("rbn, host events: container created → started (after the infra start)", l.stageStarted),
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
	p("rbn adds **%s** at the median over the bare container (goal < 100 ms: %s) and %s against a podman pod with its",
		ms(over), verdict(over < 100*time.Millisecond), signedMs(median(l.rbnStart)-median(l.floorPodStart)))
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
