package pod

import (
	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
)

// normalizeImage returns the fully qualified reference Kubernetes means by an
// image name: "busybox" is docker.io/library/busybox:latest. Podman would
// instead resolve a short name through the host's registries.conf search
// list (possibly another registry, or an error without a TTY in enforcing
// mode), so the plan never hands podman a short name.
//
// A reference with both tag and digest keeps only the digest: the digest is
// what is pulled under Kubernetes too, and containers/image refuses such
// references in some podman versions.
func normalizeImage(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", err
	}
	if digested, ok := named.(reference.Digested); ok {
		canonical, err := reference.WithDigest(reference.TrimNamed(named), digested.Digest())
		if err != nil {
			return "", err
		}
		return canonical.String(), nil
	}
	return reference.TagNameOnly(named).String(), nil
}

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
