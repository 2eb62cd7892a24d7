// Package e2e holds the end-to-end tests: a real control plane, real build
// hosts (sshd + podman on loopback; one of them an emulated aarch64 host that
// only TestArm64Host registers) and rbn-kubelet, all brought up by
// hack/test.sh, exercised through the real kubectl (build tag e2e); and the
// entry points of the benchmarks of docs/benchmarks.md (bench_test.go,
// build tag bench). What they share is in e2e/framework; the benchmark
// harness is e2e/bench.
package e2e
