package bench

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

const (
	// benchImage is on every local build host (hack/hosts.sh).
	benchImage = framework.TestImage
	// benchLabel marks everything the benchmark creates: pods, podman
	// containers of the floor, RemoteBuildNodes of the scale test.
	benchLabel     = "rbn.dev/bench"
	benchNameLabel = "rbn.dev/bench-name"
	// remoteNodeLabel is what every rbn node carries (and its taint's key).
	remoteNodeLabel = rbnv1.LabelRemoteBuildNode
	kubeletName     = framework.KubeletName
)

// ---------------------------------------------------------------------------------------------
// The benchmark and its sections.

type bench struct {
	cfg    benchConfig
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	stack  *framework.Stack
	hosts  []framework.BuildHost
	floors []*floorConn // one per host, same order
	clkTck float64
	logf   func(format string, args ...any)
	t      testing.TB // for the helpers that need a test (a second rbn-kubelet)
	rep    benchReport
	loadMu sync.Mutex // guards rep.loadPeak while sampleLoad runs
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

// Run runs the sections RBN_BENCH_SECTIONS names and writes the report to
// RBN_BENCH_OUT (skipping the test when that is not set); a section that
// fails fails the test, and the report says what was not measured.
func Run(t *testing.T) {
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
			t.Fatalf("podman info on %s: %v", f.host.Name, err)
		}
		b.rep.hosts = append(b.rep.hosts, hostFacts{name: f.host.Name, info: info})
	}
	all := map[string]section{
		"latency":  &latencySection{b: b},
		"burst":    &burstSection{b: b},
		"streams":  &streamsSection{b: b},
		"probes":   &probesSection{b: b},
		"scale":    &scaleSection{b: b},
		"takeover": &takeoverSection{b: b},
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); b.sampleLoad(loadCtx) }()
	defer func() {
		stopLoad()
		<-loadDone
		b.rep.finished = time.Now()
		b.rep.machine.loadEnd = framework.Loadavg()
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
	b := &bench{cfg: cfg, logf: t.Logf, t: t}
	env, err := framework.EnvFromOS()
	if err != nil {
		t.Fatalf("%v: run the benchmarks with `make bench`", err)
	}
	b.stack, err = framework.Connect(env, func(rc *rest.Config) {
		// The burst creates its pods at once: client-go's default 5 QPS would
		// measure the client's rate limiter.
		rc.QPS, rc.Burst = 500, 1000
		rc.UserAgent = "rbn-bench"
	})
	if err != nil {
		t.Fatal(err)
	}
	b.kube = b.stack.Client
	if b.dyn, err = dynamic.NewForConfig(b.stack.Rest); err != nil {
		t.Fatal(err)
	}
	if b.hosts, err = b.stack.BuildHosts(); err != nil {
		t.Fatal(err)
	}
	if len(b.hosts) == 0 {
		t.Fatalf("no build hosts under %s/hosts", env.State)
	}
	b.clkTck = clockTicks()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, h := range b.hosts {
		f, err := dialFloor(ctx, h)
		if err != nil {
			t.Fatalf("floor connection to %s: %v", h.Name, err)
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

// clockTicks is the kernel's clock ticks per second (getconf CLK_TCK), the
// unit of /proc/<pid>/stat's CPU times; 100 when getconf cannot say.
func clockTicks() float64 {
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
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
		if f := strings.Fields(framework.Loadavg()); len(f) > 0 {
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
