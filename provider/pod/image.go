package pod

import (
	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
)

// defaultPullPolicy is Kubernetes' defaulting of imagePullPolicy
// (SetDefaults_Container): Always when the tag is "latest" or when there is
// neither tag nor digest, IfNotPresent otherwise. A digest alone counts as no
// tag, so it is IfNotPresent; an unparsable name, too, as in Kubernetes.
func defaultPullPolicy(image string) corev1.PullPolicy {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return corev1.PullIfNotPresent
	}
	tagged, isTagged := named.(reference.Tagged)
	_, isDigested := named.(reference.Digested)
	switch {
	case isTagged && tagged.Tag() == "latest":
		return corev1.PullAlways
	case !isTagged && !isDigested:
		return corev1.PullAlways
	default:
		return corev1.PullIfNotPresent
	}
}
