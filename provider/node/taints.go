package node

import (
	"encoding/json"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// The taints rbn-kubelet manages on a Node are its RemoteBuildNode's spec
// taints. The Node records them (key and effect, a taint's identity) in
// the rbn.dev/managed-taints annotation, so that a taint the spec drops is
// removed while one that someone else put on the Node (an operator's
// `kubectl taint`, the node lifecycle controller's node.kubernetes.io/...)
// stays, as kubelet leaves them.

// ManagedTaints is the rbn.dev/managed-taints annotation for taints.
func ManagedTaints(taints []corev1.Taint) string {
	ids := make([]string, 0, len(taints))
	for _, t := range taints {
		ids = append(ids, taintID(t))
	}
	slices.Sort(ids)
	b, _ := json.Marshal(slices.Compact(ids))
	return string(b)
}

func taintID(t corev1.Taint) string { return t.Key + ":" + string(t.Effect) }

// MergeTaints returns the taints a Node with taints cur has under a spec
// asking for want, when managed (its rbn.dev/managed-taints annotation)
// names the taints an earlier spec put there: want, then each taint of cur
// that neither want nor managed names. An empty or unreadable managed
// names none: nothing is removed that rbn cannot tell it put there.
func MergeTaints(cur []corev1.Taint, managed string, want []corev1.Taint) []corev1.Taint {
	var ids []string
	_ = json.Unmarshal([]byte(managed), &ids)
	replaced := map[string]bool{}
	for _, id := range ids {
		replaced[id] = true
	}
	for _, t := range want {
		replaced[taintID(t)] = true
	}
	out := append([]corev1.Taint{}, want...)
	for _, t := range cur {
		if !replaced[taintID(t)] {
			out = append(out, t)
		}
	}
	return out
}
