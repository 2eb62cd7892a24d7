package kubeletapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
	dto "github.com/prometheus/client_model/go"
)

// burnCPU does a fixed amount of work (hashing 256 MiB, over 100 ms of CPU),
// so that a CPU profile samples it whatever the machine's load.
//
//go:noinline
func burnCPU() {
	buf := make([]byte, 1<<20)
	for range 256 {
		sum := sha256.Sum256(buf)
		buf[0] = sum[0]
	}
}

// burnInChild is burnCPU in a goroutine of its own, started by the
// request's, as a host's shared stats read is.
//
//go:noinline
func burnInChild() {
	done := make(chan struct{})
	go func() { defer close(done); burnCPU() }()
	<-done
}

// What the kubelet API server does, and what its requests start in
// goroutines of their own, carries the profile label (make bench's scrape
// cost reads it from rbn-kubelet's CPU profiles); nothing else does.
func TestRequestsCarryTheProfileLabel(t *testing.T) {
	h := &NodeHandlers{GetMetricsCadvisor: func(context.Context) ([]*dto.MetricFamily, error) {
		burnCPU()
		burnInChild()
		return gauge("machine_cpu_cores", 4), nil
	}}
	auth := &subresourceAuth{}
	auth.reset("metrics")
	_, pods := podIndex(t)
	ts := startServer(t, Config{Pods: pods, Handlers: (&servedNodes{m: map[string]*NodeHandlers{"n1": h}}).handlers, Auth: auth}, "n1")

	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		t.Fatal(err)
	}
	code, body := ts.get(t, ts.nodePort, "GET", "/metrics/cadvisor", "good")
	burnCPU() // the test's own goroutine: not the server's
	pprof.StopCPUProfile()
	if code != 200 {
		t.Fatalf("GET /metrics/cadvisor: %d %s", code, body)
	}
	prof, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Samples in burnCPU, by who called it: the handler, its child, the test.
	labelled, unlabelled := map[string]int{}, map[string]int{}
	for _, s := range prof.Sample {
		names := stackNames(s)
		i := slices.IndexFunc(names, func(n string) bool { return strings.HasSuffix(n, ".burnCPU") })
		if i < 0 || i+1 >= len(names) {
			continue
		}
		caller := names[i+1]
		if slices.Contains(s.Label[ProfileLabel], ProfileComponent) {
			labelled[caller]++
		} else {
			unlabelled[caller]++
		}
	}
	t.Logf("burnCPU samples by caller: labelled %v, unlabelled %v", labelled, unlabelled)
	if labelled[fn("TestRequestsCarryTheProfileLabel.func1")] == 0 {
		t.Errorf("the handler's work is not labelled %s=%s", ProfileLabel, ProfileComponent)
	}
	if labelled[fn("burnInChild.func1")] == 0 {
		t.Errorf("the work a request starts in a goroutine of its own is not labelled")
	}
	if labelled[fn("TestRequestsCarryTheProfileLabel")] != 0 || unlabelled[fn("TestRequestsCarryTheProfileLabel")] == 0 {
		t.Errorf("the test's own work: labelled %d samples, unlabelled %d; want it unlabelled only",
			labelled[fn("TestRequestsCarryTheProfileLabel")], unlabelled[fn("TestRequestsCarryTheProfileLabel")])
	}
}

func fn(name string) string { return "github.com/remote-build-nodes/rbn/internal/kubeletapi." + name }

// stackNames is a sample's functions, the leaf first (inlined frames too).
func stackNames(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		for _, l := range loc.Line {
			if l.Function != nil {
				out = append(out, l.Function.Name)
			}
		}
	}
	return out
}
