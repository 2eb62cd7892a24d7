// Package e2e holds the end-to-end tests: a real control plane, real build
// hosts (sshd + podman on loopback) and rbn-kubelet, all brought up by
// hack/test.sh, exercised through the real kubectl (build tag e2e); and the
// benchmarks of docs/benchmarks.md (bench_*_test.go, build tag bench).
package e2e
