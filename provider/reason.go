package provider

import corev1 "k8s.io/api/core/v1"

// reason is why a container waits, or a pod failed: a Kubernetes reason
// and its message.
type reason struct{ Reason, Message string }

// eventFunc records an event about a pod: how the worker's collaborators
// tell the pod's owner what they do.
type eventFunc func(pd *corev1.Pod, typ, reason, msg string)

// podFailure is a failure that another try cannot cure (a transfer that
// failed for good, a pod's cluster Services that its host cannot serve):
// the pod fails with reason.
type podFailure struct{ reason, msg string }

func (e *podFailure) Error() string { return e.msg }
