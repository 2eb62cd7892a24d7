// Package imageref is how rbn names images: the one normalisation that both
// rbn-kubelet (what podman is asked to run) and rbn-extender (which host
// already has it) must agree on.
package imageref

import "github.com/distribution/reference"

// Normalize returns the fully qualified reference Kubernetes means by an
// image name: "busybox" is docker.io/library/busybox:latest. Podman would
// instead resolve a short name through the host's registries.conf search
// list (possibly another registry, or an error without a TTY in enforcing
// mode), so rbn never hands podman a short name.
//
// A reference with both tag and digest keeps only the digest: the digest is
// what is pulled under Kubernetes too, and containers/image refuses such
// references in some podman versions.
func Normalize(image string) (string, error) {
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
