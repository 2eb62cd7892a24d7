// Package framework is what the end-to-end tests (package e2e, build tag
// e2e) and the benchmark harness (package e2e/bench) share about the local
// stack hack/test.sh and hack/bench.sh bring up: where it is (Env, from the
// environment those scripts set), its API through client-go and the real
// kubectl, its build hosts (host.env, hack/hosts.sh, their podman), its
// rbn-kubelet (hack/kubelet.sh, its pid), the S3 server of hack/s3.sh, the
// pods every test places on a remote build node, waiting on conditions with
// a deadline, and the local machine's /proc.
//
// A helper a single test file needs stays in that file; one that two
// tiers (e2e and bench) need belongs here. Helpers that fail the test take
// a testing.TB and are named for what they do; their ...Err forms return
// the error instead.
package framework
