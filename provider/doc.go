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
// sandbox up (sandbox.go: volumes, podman pod, infra container started
// while the first container is created), pulls images (imagepull.go),
// creates and starts containers with crash back-off (containers.go), fills
// volumes (volumes.go, subpath.go), relays S3 transfers (transfers.go) and
// reports status, which podStatus (podstatus.go) computes as a pure
// function of what the worker observed (golden-tested in testdata/status).
// Workers reach the host only through podRuntime (runtime.go), which the
// host's podman client satisfies, and a fake in unit tests; time comes
// from an injected clock. Retry intervals come from PodsConfig.Retry.
//
// How a pod becomes podman specs is provider/pod's pure translation; how
// the Node is built from the host's facts, provider/node's.
package provider
