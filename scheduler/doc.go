// Package scheduler holds rbn-extender's decisions as pure functions on typed
// inputs: which build hosts a pod must not go to (Filter) and which it should
// prefer (Prioritize), from the live facts rbn-kubelet publishes about each
// host (HostFacts in the Node annotation rbn.dev/host-facts), an operator's
// override of them, the draining label and the pods bound to each node.
//
// Nothing here talks to the apiserver or to HTTP: package scheduler/state
// turns informer contents into NodeViews, package scheduler/server decodes the
// scheduler's requests, calls these functions and encodes their results.
//
// The decisions, in short (docs on each function say why):
//
//   - Nodes without the label rbn.dev/remote-build-node=true pass the filter
//     untouched and score as well as the best build host of the same call.
//   - Filter excludes a build host that is draining, fails its health checks,
//     has too many recent host-caused failures (optional), lacks the free
//     podman storage / temp space the pod needs, or lacks the volume space
//     the pod's unbound claims of rbn.dev/host-local will take there
//     (VolumeBytes; the provisioner would refuse them and hand them back).
//   - Prioritize ranks build hosts by: the pod's images present, then fewer
//     jobs (with a tolerance, so as not to fight kube-scheduler's own exact
//     accounting of pods it has just placed), then the pod's native
//     architecture.
//   - Facts older than Policy.MaxFactsAge are unknown; a stale "unhealthy"
//     is kept until fresh facts say otherwise. Fields set by the override
//     annotation never go stale.
package scheduler
