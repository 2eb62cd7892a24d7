package pod

import (
	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// Reasons for pods with S3 transfers (annotation rbn.dev/transfers).
const (
	// ReasonInvalidTransfers: the annotation or its Secret is unusable.
	ReasonInvalidTransfers = "InvalidTransfers"
	// ReasonInputTransferFailed: an input could not be fetched into its volume.
	ReasonInputTransferFailed = "InputTransferFailed"
	// ReasonOutputTransferFailed: an output could not be uploaded.
	ReasonOutputTransferFailed = "OutputTransferFailed"
)

// TransfersSecret names the Secret of the pod's transfers, if it declares
// any (and the annotation parses); "" otherwise.
func TransfersSecret(pd *corev1.Pod) string {
	v, ok := pd.Annotations[rbnv1.AnnotationTransfers]
	if !ok {
		return ""
	}
	t, errs := rbnv1.ParseTransfers(v, &pd.Spec)
	if len(errs) > 0 {
		return ""
	}
	return t.SecretName
}

// transfers parses the pod's transfers; nil when it declares none.
func (t *translator) transfers() (*rbnv1.Transfers, error) {
	v, ok := t.pod.Annotations[rbnv1.AnnotationTransfers]
	if !ok {
		return nil, nil
	}
	tr, errs := rbnv1.ParseTransfers(v, &t.pod.Spec)
	if len(errs) > 0 {
		return nil, unsupported("metadata.annotations["+rbnv1.AnnotationTransfers+"]", ReasonInvalidTransfers, "%s", errs.ToAggregate().Error())
	}
	return tr, nil
}

// transfersSecretPresent checks the Secret of tr: a missing Secret may
// still come (the pod waits, as for a Secret volume); one without the
// credentials will not.
func (t *translator) transfersSecretPresent(tr *rbnv1.Transfers) error {
	s, ok := t.in.Secrets[tr.SecretName]
	if !ok || s == nil {
		return missingObject("Secret", t.pod.Namespace, tr.SecretName, "")
	}
	for _, k := range []string{rbnv1.S3KeyAccessKeyID, rbnv1.S3KeySecretAccessKey} {
		if len(s.Data[k]) == 0 && s.StringData[k] == "" {
			return unsupported("metadata.annotations["+rbnv1.AnnotationTransfers+"].secretName", ReasonInvalidTransfers,
				"Secret %s/%s has no key %s", t.pod.Namespace, tr.SecretName, k)
		}
	}
	return nil
}
