package provider

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// A worker tells the node's relist (relist.go) which state of its pod's
// containers it has accounted for: the state it acted on, or the state its
// own actions led to when a look after them shows just those. A relist that
// finds the pod so wakes no one. In a burst most of what a relist sees
// change is what the workers did themselves (created and started
// containers, then looked at them); a worker woken for that lists and
// inspects its containers again for nothing, on the podman that is
// starting the other pods.

// containerLook is what a list shows of one container.
type containerLook struct{ name, state string }

// podLook is one look at a pod's containers on its node, by container ID.
type podLook map[string]containerLook

// lookOf is what list shows of the containers of the pod uid on node.
func lookOf(list []podman.ContainerSummary, uid types.UID, node string) podLook {
	l := podLook{}
	for _, c := range list {
		if types.UID(c.Labels[pod.LabelPodUID]) == uid && c.Labels[pod.LabelNode] == node {
			l[c.ID] = containerLook{c.Name, c.State}
		}
	}
	return l
}

// hostAct is what a sync did to one container on the host.
type hostAct int

const (
	actCreated hostAct = iota + 1
	actStarted
	actStopped
	// actFailed: a start or stop that failed. No look accounts for the
	// state it left: the relist wakes the worker for it, as for a change
	// it did not make.
	actFailed
)

// shows says whether a container in state, as a list shows it, is what
// act left.
func (a hostAct) shows(state string) bool {
	switch a {
	case actCreated:
		return state == "created" || state == "configured"
	case actStarted:
		return state == "running"
	case actStopped:
		return state == "exited" || state == "stopped"
	}
	return false
}

// hostActs records what the current sync did on the host, by container
// name or ID (whichever the call named). Safe for concurrent use: a pod's
// containers are stopped at once.
type hostActs struct {
	mu sync.Mutex
	m  map[string]hostAct
}

func (a *hostActs) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m = nil
}

// add records act on the container key; a failure stays one.
func (a *hostActs) add(key string, act hostAct) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]hostAct{}
	}
	if a.m[key] != actFailed {
		a.m[key] = act
	}
}

// any says whether the sync did anything on the host.
func (a *hostActs) any() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m) > 0
}

// of is what the sync did to the container id, known by name too.
func (a *hostActs) of(id, name string) (hostAct, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if act, ok := a.m[id]; ok {
		return act, true
	}
	act, ok := a.m[name]
	return act, ok
}

// accountedFor says whether every difference between the look a sync acted
// on (before) and the look after its actions (after) is one of those
// actions, with the outcome it was meant to have: then the worker knows
// after as well as before. A container that vanished, changed on its own
// or ended at once (a died event wakes the worker for it; the relist is the
// safety net for a missed one) is not accounted for.
func accountedFor(before, after podLook, acts *hostActs) bool {
	for id, c := range after {
		if b, ok := before[id]; ok && b.state == c.state {
			continue
		}
		if act, ok := acts.of(id, c.name); !ok || !act.shows(c.state) {
			return false
		}
	}
	for id := range before {
		if _, ok := after[id]; !ok {
			return false
		}
	}
	return true
}
