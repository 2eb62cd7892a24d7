package controller

import "errors"

// Reasons for a RemoteBuildNode whose node runtime could not start or
// failed: transient, retried with back-off.
const (
	// ReasonKubeletPortUnavailable: no kubelet API port was free for the node.
	ReasonKubeletPortUnavailable = "KubeletPortUnavailable"
	// ReasonAPIServerUnavailable: the apiserver did not answer a request
	// the start needs.
	ReasonAPIServerUnavailable = "APIServerUnavailable"
	// ReasonPodNetworkUnavailable: the node got no block of rbn's pod
	// network (all taken, or the apiserver did not answer).
	ReasonPodNetworkUnavailable = "PodNetworkUnavailable"
	// ReasonNodeIdentityPending: the node's client certificate was not
	// issued in time (config nodeIdentities: is rbn-approver running?).
	ReasonNodeIdentityPending = "NodeIdentityPending"
	// ReasonServingCertificatePending: the node's serving certificate was
	// not issued in time (config nodeServices: is rbn-approver running?).
	ReasonServingCertificatePending = "NodeServingCertificatePending"
	// ReasonStartFailed: any other failure to start the node runtime.
	ReasonStartFailed = "StartFailed"
	// ReasonRuntimeFailed: a part of the running node runtime (node or pod
	// controller, ...) failed, ending it.
	ReasonRuntimeFailed = "NodeRuntimeFailed"
)

// StartError is why a node runtime did not start: Reason is the
// RemoteBuildNode's status reason, Transient whether trying again without
// a change of spec or Secret can help.
type StartError struct {
	Reason    string
	Transient bool
	Err       error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// specError: the spec or its Secret cannot be served as it is.
func specError(reason string, err error) error {
	return &StartError{Reason: reason, Err: err}
}

// transientError: a start failure trying again may cure.
func transientError(reason string, err error) error {
	return &StartError{Reason: reason, Transient: true, Err: err}
}

// classifyStart says how a startRuntime failure is reported: an error
// startRuntime did not classify is transient (retried), never a spec problem.
func classifyStart(err error) (reason string, transient bool) {
	var se *StartError
	if errors.As(err, &se) {
		return se.Reason, se.Transient
	}
	return ReasonStartFailed, true
}
