package scheduler

import (
	"fmt"
	"time"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// FilterResult is Filter's verdict on a list of candidate nodes.
type FilterResult struct {
	// Passed are the nodes the pod may go to, in the order given.
	Passed []string
	// Failed says, for every other node, why not. All of rbn's reasons are
	// "unresolvable" for the scheduler: preempting pods would not free disk
	// the scheduler can count, and does not cure a draining or failing host,
	// so no pod should be evicted in the hope of making room.
	Failed map[string]string
}

// Filter decides for each candidate node whether pod may go there.
func Filter(pod PodNeeds, nodes []NodeView, now time.Time, p Policy) FilterResult {
	r := FilterResult{Passed: make([]string, 0, len(nodes)), Failed: map[string]string{}}
	ck := newChecker(pod, p)
	for i := range nodes {
		if reason, ok := ck.check(&nodes[i], now); ok {
			r.Passed = append(r.Passed, nodes[i].Name)
		} else {
			r.Failed[nodes[i].Name] = reason
		}
	}
	return r
}

// FilterNode decides for one node. The reason is what the pod's
// FailedScheduling event shows, counted per distinct text ("0/4 nodes are
// available: 1 rbn: ..."), so it carries figures but not the node's name.
func FilterNode(pod PodNeeds, v *NodeView, now time.Time, p Policy) (reason string, ok bool) {
	return newChecker(pod, p).check(v, now)
}

// checker is FilterNode for one pod over many nodes: what depends on the
// pod alone is formatted once per call, not once per node (a call names
// every feasible node of the cluster).
type checker struct {
	pod PodNeeds
	p   Policy
	// needText[m] describes the pod's disk need when m images are missing.
	needText []string
}

func newChecker(pod PodNeeds, p Policy) *checker {
	return &checker{pod: pod, p: p, needText: make([]string, len(pod.Images)+1)}
}

func (c *checker) describeNeed(missing int, need, imageBytes int64) string {
	if c.needText[missing] == "" {
		detail := "ephemeral-storage " + HumanBytes(c.pod.EphemeralBytes)
		if imageBytes > 0 {
			detail += fmt.Sprintf(" + %d image(s) to pull at %s each", missing, HumanBytes(c.p.DefaultImageSizeBytes))
		}
		c.needText[missing] = fmt.Sprintf("the pod needs %s (%s)", HumanBytes(need), detail)
	}
	return c.needText[missing]
}

func (c *checker) check(v *NodeView, now time.Time) (reason string, ok bool) {
	if !v.managed() {
		return "", true
	}
	n, pod, p := v.Info, &c.pod, &c.p
	if n.Draining {
		return "rbn: build host is draining (label rbn.dev/draining=true)", false
	}
	if n.OverrideErr != nil {
		return fmt.Sprintf("rbn: build host has an unusable %s annotation (fix or remove it): %v", rbnv1.AnnotationHostFactsOverride, n.OverrideErr), false
	}
	f := n.Facts(now, p.MaxFactsAge)
	if f.Healthy.Known && !f.Healthy.Value {
		if f.Stale {
			return "rbn: build host failed its health checks and has not reported since", false
		}
		return "rbn: build host fails its health checks", false
	}
	if p.RecentFailuresLimit > 0 && f.RecentFailures.Known && f.RecentFailures.Value >= p.RecentFailuresLimit {
		return fmt.Sprintf("rbn: build host had %d host-caused pod failures recently (limit %d)", f.RecentFailures.Value, p.RecentFailuresLimit), false
	}
	// Images the host lacks will be pulled into podman storage, through the
	// temp area. Unknown images count as missing.
	missing := len(pod.Images)
	if f.Images.Known {
		missing = 0
		for _, im := range pod.Images {
			if !f.Images.Value.Has(im) {
				missing++
			}
		}
	}
	imageBytes := int64(missing) * p.DefaultImageSizeBytes
	need := pod.EphemeralBytes + imageBytes
	if f.StorageFreeBytes.Known && need > 0 && need > f.StorageFreeBytes.Value {
		return "rbn: podman storage has " + HumanBytes(f.StorageFreeBytes.Value) + " free, " + c.describeNeed(missing, need, imageBytes), false
	}
	if imageBytes > 0 && f.TmpFreeBytes.Known && imageBytes > f.TmpFreeBytes.Value {
		return fmt.Sprintf("rbn: temp area has %s free, pulling the pod's %d image(s) needs %s",
			HumanBytes(f.TmpFreeBytes.Value), missing, HumanBytes(imageBytes)), false
	}
	// The provisioner would refuse the claims on this host and hand them
	// back to the scheduler: a round trip of a scheduling cycle, a
	// provisioning attempt and a claim update per host tried.
	if pod.VolumeBytes > 0 && f.VolumeFreeBytes.Known && pod.VolumeBytes > f.VolumeFreeBytes.Value {
		return fmt.Sprintf("rbn: build host has %s free for volumes, the pod's unbound claims of %s ask for %s",
			HumanBytes(f.VolumeFreeBytes.Value), rbnv1.ProvisionerHostLocal, HumanBytes(pod.VolumeBytes)), false
	}
	return "", true
}

// HumanBytes formats n in binary units with one decimal ("1.5GiB").
func HumanBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%dB", n)
	}
	f := float64(n)
	suffix := ""
	for _, suffix = range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		f /= 1024
		if f < 1024 && f > -1024 {
			break
		}
	}
	return fmt.Sprintf("%.1f%s", f, suffix)
}
