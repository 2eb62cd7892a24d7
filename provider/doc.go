// Package provider serves one RemoteBuildNode: it keeps the host's SSH and
// podman connections healthy (host.go, hostpool.go: one Host per build
// host, shared by the nodes on it), tells virtual-kubelet what the Node
// looks like (nodeprovider.go) and runs pods on the host.
//
// Pods (pods.go) is the node's pod manager, virtual-kubelet's
// PodLifecycleHandler: one worker per pod, started and waited by Run
// (podsrun.go: podman events, the node's single relist (relist.go), the
// orphan sweep), plus logs (logs.go), streams (streams.go) and stats
// (stats.go, hoststats.go).
//
// A pod's worker (podworker.go) is its state machine: each sync sets the
// sandbox up, creates and starts containers with crash back-off
// (containers.go) and reports status, which podStatus (podstatus.go)
// computes as a pure function of what the worker observed (golden-tested
// in testdata/status). Its collaborators hold their own state:
//   - sandbox (sandbox.go): the podman pod and its infra container, started
//     while the first container is created when nothing needs it before;
//   - imagePuller (imagepull.go): pulls per pull policy, what is present,
//     consecutive failures for the pull back-off;
//   - podVolumes (volumes.go, subpath.go): named volumes, Files volumes
//     written through podman's archive API, subPath checks on the host;
//   - podTransfers (transfers.go, transferio.go): S3 inputs and outputs
//     relayed through rbn-kubelet, interrupted by the pod's deletion.
//
// All of them reach the host only through podRuntime (runtime.go), which
// the host's podman client satisfies, and a fake in unit tests; time comes
// from an injected clock. Retry intervals come from PodsConfig.Retry.
//
// How a pod becomes podman specs is provider/pod's pure translation; how
// the Node is built from the host's facts, provider/node's.
package provider
