// Package bench is the benchmark harness of docs/benchmarks.md: Run
// measures rbn on the local stack against a floor measured in the same run
// (the same work done directly through the podman bindings over an SSH
// connection of the same kind) and writes the report; RunTransfer measures
// S3 transfers through rbn against direct ones. hack/bench.sh (make bench)
// brings a stack up, sets the environment, runs them through the TestBench
// and TestBenchTransfer entry points of package e2e (build tag bench) and
// tears the stack down. Nothing here fails on speed: only on a broken stack.
//
// One file per figure of the issue: latency.go (1 and 5), burst.go (2),
// streams.go (3), scale.go (4; its scrape cost, issue #13, in
// scrapecost.go, with scrape.go's Prometheus-like scraper), transfer.go
// (6); bench.go runs the sections, report.go renders the report; config.go
// reads the RBN_BENCH_* knobs; floor.go is the floor's own connection to
// the hosts, tracker.go watches pods, kubelet.go and machine.go measure the
// processes and the machine, rbnmetrics.go reads rbn-kubelet's own
// metrics, apiserver.go the control plane. What the e2e tests share with
// the harness (the stack, its hosts, waiting, pod templates, /proc) is in
// package e2e/framework.
//
// It imports the podman bindings, which build only with the tags of
// hack/goenv.sh: go vet ./... (make verify) and hack/test.sh unit build it.
package bench
