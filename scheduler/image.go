package scheduler

import "github.com/remote-build-nodes/rbn/internal/imageref"

// NormalizeImage is rbn's image normalisation (internal/imageref), shared
// with rbn-kubelet: the extender prefers a host because the image
// rbn-kubelet will run is there.
func NormalizeImage(image string) (string, error) { return imageref.Normalize(image) }

// ImageSet is a set of normalized image references present on a host.
// A nil ImageSet means "not known"; an empty one means "none".
type ImageSet map[string]struct{}

// NewImageSet normalizes refs (as podman lists them: repo:tag and
// repo@digest) into a set. References that do not parse are kept verbatim:
// they can still match a pod's equally unparsable reference, which
// rbn-kubelet would reject anyway.
func NewImageSet(refs []string) ImageSet {
	s := make(ImageSet, len(refs))
	for _, r := range refs {
		if n, err := NormalizeImage(r); err == nil {
			r = n
		}
		s[r] = struct{}{}
	}
	return s
}

// Has reports whether the normalized reference ref is in the set.
func (s ImageSet) Has(ref string) bool {
	_, ok := s[ref]
	return ok
}
