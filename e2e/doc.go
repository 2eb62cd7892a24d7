// Package e2e holds the end-to-end tests: a real control plane, real build
// hosts (sshd + podman on loopback) and rbn-kubelet, all brought up by
// hack/test.sh, exercised through the real kubectl. Build tag: e2e.
package e2e
