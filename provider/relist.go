package provider

import (
	"context"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// podFingerprints is what one relist saw of each pod: its containers'
// IDs and states, by pod UID.
type podFingerprints map[types.UID]string

// fingerprint sums up the containers of a node's list by pod: a pod's
// fingerprint changes when one of its containers is created, removed or
// changes state (a restart is a new container), and only then.
func fingerprint(list []podman.ContainerSummary) podFingerprints {
	byPod := map[types.UID]podLook{}
	for _, c := range list {
		uid := types.UID(c.Labels[pod.LabelPodUID])
		if uid == "" {
			continue
		}
		if byPod[uid] == nil {
			byPod[uid] = podLook{}
		}
		byPod[uid][c.ID] = containerLook{c.Name, c.State}
	}
	out := make(podFingerprints, len(byPod))
	for uid, l := range byPod {
		out[uid] = l.fingerprint()
	}
	return out
}

// fingerprint is the pod's fingerprint in a relist that shows l.
func (l podLook) fingerprint() string {
	cs := make([]string, 0, len(l))
	for id, c := range l {
		cs = append(cs, id+"="+c.state)
	}
	slices.Sort(cs)
	return strings.Join(cs, ",")
}

// changedPods returns the pods whose fingerprint differs between two
// relists, those that appeared or vanished included.
func changedPods(prev, cur podFingerprints) []types.UID {
	var out []types.UID
	for uid, f := range cur {
		if p, ok := prev[uid]; !ok || p != f {
			out = append(out, uid)
		}
	}
	for uid := range prev {
		if _, ok := cur[uid]; !ok {
			out = append(out, uid)
		}
	}
	return out
}

// relist lists the node's containers in one call and wakes the workers of
// the pods that changed since the previous relist, but for those whose
// worker has accounted for what it sees (hostacts.go): the safety net for
// a podman event that was missed, as kubelet's PLEG relists once per node.
// Workers do not poll on their own, so the cost of a quiet node is one list
// per period, whatever the number of its pods (a list per pod, each walking
// every container of the host, grew with the square of the pods), and the
// nodes of a host share their lists (hostList). It returns what it saw,
// prev when the list failed.
func (p *Pods) relist(ctx context.Context, prev podFingerprints) podFingerprints {
	// Half the interval: the nodes' relists are not in step, and each
	// sees what changed within one and a half intervals at most.
	list, err := p.rt.NodeContainers(ctx, p.cfg.NodeName, p.cfg.ResyncInterval/2)
	if err != nil {
		p.cfg.Logger.Debug("relist failed", "err", err)
		return prev
	}
	cur := fingerprint(list)
	for _, uid := range changedPods(prev, cur) {
		w := p.workerOf(uid)
		if w != nil && !w.accountedFor(cur[uid]) {
			w.poke()
		}
	}
	return cur
}
