// Package probe runs Kubernetes container probes (liveness, readiness,
// startup) the way kubelet's prober does, for containers that run on a remote
// build host: exec probes run in the container through a Target, and
// httpGet, tcpSocket and grpc probes dial the pod's IP from the build host,
// where it is routed, through the same Target.
//
// Run makes one attempt of a handler and words its outcome as kubelet's
// pkg/probe does; Worker repeats attempts every periodSeconds and applies
// kubelet's thresholds, initial delay, on-hold rule and event wording, so
// that the pod worker only has to act on a Result and forward events. What a
// result does to the container (kill on liveness failure, readiness in the
// pod status) is the caller's business.
package probe
