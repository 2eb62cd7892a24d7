//go:build bench

package e2e

import (
	"testing"

	"github.com/remote-build-nodes/rbn/e2e/bench"
)

// The benchmarks of docs/benchmarks.md; the harness is package e2e/bench.
// hack/bench.sh (make bench) brings a stack up and runs both. Build tag
// bench, not e2e: they take ~40 minutes and never fail on speed.

// TestBench measures rbn against the floor and writes $RBN_BENCH_OUT.
func TestBench(t *testing.T) { bench.Run(t) }

// TestBenchTransfer measures S3 transfers (hack/bench.sh appends its
// section, $RBN_BENCH_TRANSFER_OUT, to the report).
func TestBenchTransfer(t *testing.T) { bench.RunTransfer(t) }

// TestBenchServices measures ssh and scp through a Service against the
// direct SSH path (issue #14) on an in-cluster stack with a worker node
// (hack/bench.sh brings one up for it and appends its section,
// $RBN_BENCH_SERVICES_OUT, to the report).
func TestBenchServices(t *testing.T) { bench.RunServices(t) }
