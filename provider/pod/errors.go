package pod

import (
	"errors"
	"fmt"
)

// Reasons for the pod's status, CamelCase as the kubelet spells them.
const (
	// ReasonCreateContainerConfigError is the kubelet's reason for a pod whose
	// configuration (here: a Secret or ConfigMap it needs) cannot be resolved.
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
	// ReasonUnsupportedField: the pod uses a feature rbn does not implement.
	ReasonUnsupportedField = "UnsupportedField"
	// ReasonUnsupportedVolume: the pod uses a volume type rbn does not implement.
	ReasonUnsupportedVolume = "UnsupportedVolume"
	// ReasonHostPathNotAllowed: a hostPath volume outside the node's allowlist.
	ReasonHostPathNotAllowed = "HostPathNotAllowed"
	// ReasonInvalidImageName is the kubelet's reason for an unparsable image.
	ReasonInvalidImageName = "InvalidImageName"
	// ReasonInvalidSpec: the pod breaks a rule that API validation normally
	// enforces (a mount of an undeclared volume, a file path escaping its
	// volume); checked again because the host would pay for it.
	ReasonInvalidSpec = "InvalidSpec"
)

// VolumeNotReadyError is a PersistentVolumeClaim that a volume needs and
// that is missing, unbound or being deleted, or whose PersistentVolume is
// not seen yet. Like a MissingObjectError it may heal; the kubelet waits in
// ContainerCreating with FailedMount events, and so does the caller.
type VolumeNotReadyError struct {
	Volume, Claim, Namespace string
	Detail                   string
}

func (e *VolumeNotReadyError) Error() string {
	return fmt.Sprintf("volume %q: persistentvolumeclaim %q %s", e.Volume, e.Namespace+"/"+e.Claim, e.Detail)
}

// MissingObjectError is a Secret or ConfigMap (or one of its keys) that a
// volume or an env variable needs and does not mark optional. Unlike an UnsupportedError it may
// heal: the kubelet keeps retrying until the object appears, and a caller may
// do the same.
type MissingObjectError struct {
	Kind      string // "Secret", "ConfigMap" or "Service"
	Namespace string
	Name      string
	// Key is the missing key; empty when the whole object is missing.
	Key string
	// Reason is always ReasonCreateContainerConfigError, kept as a field so
	// that callers read it the way they read UnsupportedError.Reason.
	Reason string
	// Cause, when set, is why the object could not be read (it may exist:
	// the apiserver refused it).
	Cause error
}

func (e *MissingObjectError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s %q: %v", lowerFirst(e.Kind), e.Namespace+"/"+e.Name, e.Cause)
	}
	if e.Key != "" {
		return fmt.Sprintf("couldn't find key %s in %s %s/%s", e.Key, e.Kind, e.Namespace, e.Name)
	}
	return fmt.Sprintf("%s %q not found", lowerFirst(e.Kind), e.Namespace+"/"+e.Name)
}

// Unwrap is the Cause.
func (e *MissingObjectError) Unwrap() error { return e.Cause }

func missingObject(kind, namespace, name, key string) *MissingObjectError {
	return &MissingObjectError{Kind: kind, Namespace: namespace, Name: name, Key: key, Reason: ReasonCreateContainerConfigError}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]|0x20) + s[1:]
}

// ErrNoServiceAccountToken: the pod projects a service account token but the
// caller passed none in Input.ServiceAccountToken. This is a caller bug, not
// a property of the pod, hence a sentinel rather than an UnsupportedError.
var ErrNoServiceAccountToken = errors.New("pod projects a service account token but none was provided")

func unsupported(field, reason, format string, args ...any) *UnsupportedError {
	return &UnsupportedError{Field: field, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}
