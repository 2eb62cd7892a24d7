package bench

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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
	kills               int           // takeover: measured kills of the serving rbn-kubelet
	idle                time.Duration // each idle measurement window
	probePods           int           // probes: pods per round
	probeWindows        int           // probes: measurement windows per round
	probeWindow         time.Duration // probes: each window
	scrapeInterval      time.Duration // scale: the kubelet scrape's interval (issue #13)
	sections            map[string]bool
}

// benchSections are the sections in the order they run.
var benchSections = []string{"latency", "burst", "streams", "probes", "scale", "takeover"}

func benchConfigFromEnv(t *testing.T) benchConfig {
	t.Helper()
	c := benchConfig{
		out:          os.Getenv("RBN_BENCH_OUT"),
		notes:        os.Getenv("RBN_BENCH_NOTES"),
		command:      os.Getenv("RBN_BENCH_COMMAND"),
		runs:         benchEnvInt(t, "RBN_BENCH_RUNS", 20),
		warmup:       benchEnvInt(t, "RBN_BENCH_WARMUP", 2),
		burstPods:    benchEnvInt(t, "RBN_BENCH_BURST_PODS", 100),
		rounds:       benchEnvInt(t, "RBN_BENCH_BURST_ROUNDS", 3),
		logMiB:       benchEnvInt(t, "RBN_BENCH_LOG_MIB", 200),
		logRuns:      benchEnvInt(t, "RBN_BENCH_LOG_RUNS", 3),
		execRuns:     benchEnvInt(t, "RBN_BENCH_EXEC_RUNS", 20),
		scaleNodes:   benchEnvInt(t, "RBN_BENCH_SCALE_NODES", 50),
		perNode:      benchEnvInt(t, "RBN_BENCH_SCALE_PODS_PER_NODE", 20),
		kills:        benchEnvInt(t, "RBN_BENCH_TAKEOVER_KILLS", 5),
		idle:         time.Duration(benchEnvInt(t, "RBN_BENCH_IDLE_SECONDS", 60)) * time.Second,
		probePods:    benchEnvInt(t, "RBN_BENCH_PROBE_PODS", 200),
		probeWindows: benchEnvInt(t, "RBN_BENCH_PROBE_WINDOWS", 3),
		probeWindow:  time.Duration(benchEnvInt(t, "RBN_BENCH_PROBE_WINDOW_SECONDS", 20)) * time.Second,
		// Prometheus's kubelet job scrapes every 15 s in the goal.
		scrapeInterval: time.Duration(benchEnvInt(t, "RBN_BENCH_SCRAPE_INTERVAL_SECONDS", 15)) * time.Second,
		sections:       map[string]bool{},
	}
	if c.scrapeInterval <= 0 {
		t.Fatalf("RBN_BENCH_SCRAPE_INTERVAL_SECONDS=0: want a positive number of seconds")
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
