package scheduler

import (
	"time"

	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// Score parts. An extender score is an integer from 0 to
// extenderv1.MaxExtenderPriority (10); the parts are sized so that the sum
// orders hosts by image presence first, then load, then architecture: 5 >
// 4+1 and 2 > 1.
const (
	scoreImage     int64 = 5 // every image of the pod is on the host
	scoreLoadLeast int64 = 4 // as loaded as the least loaded candidate, within the tolerance
	scoreLoadNear  int64 = 2 // at most 2*tolerance+1 above the least loaded
	scoreArch      int64 = 1 // the pod's native architecture
)

// Score is one build host's score and its parts, for tests and debugging.
type Score struct {
	Image, Load, Arch int64
	// Jobs is the load counted for the host; MinJobs the least over the
	// call's build hosts.
	Jobs, MinJobs int
}

// Total is the extender score.
func (s Score) Total() int64 { return s.Image + s.Load + s.Arch }

// Jobs is a build host's load: the pods bound to its node that have not
// terminated, which includes pods bound but not started yet.
//
// HostFacts.RunningPods is deliberately not used: it counts the same pods
// (those rbn-kubelet runs), only later: it misses pods bound but not started
// and, published at most every few seconds, still counts pods that were just
// deleted, which would push a burst away from a host that has just become
// free.
func Jobs(v *NodeView) int { return v.BoundPods }

// Prioritize scores each candidate node for pod, from 0 to 10.
//
// Among build hosts: a host holding every image of the pod gets 5; one whose
// load (Jobs) is at most T = Policy.LoadTolerance above the least loaded
// candidate's gets 4, at most 2T+1 above gets 2; one of the pod's native
// architecture gets 1.
//
// Why a tolerance: kube-scheduler places a burst of pods one after the other
// and accounts each placed ("assumed") pod at once in its own resource
// scoring, while the extender learns of a binding through its pod informer
// a few milliseconds later. A score that strictly preferred the host with
// the fewest pods the extender has seen would steer several consecutive pods
// of a burst to the same host (the old picker's race, in small) and fight
// the scheduler's exact accounting. Within the tolerance the extender stays
// neutral and NodeResourcesFit spreads the pods; beyond it (a host running
// many more jobs than another, for reasons requests do not show) the
// extender pushes.
//
// Image presence counts only when every candidate build host's images are
// known (published facts, fresh): a host whose facts have not come yet (just
// turned Ready, or just taken over by another replica) or went stale may
// well hold the image too, and preferring the hosts that said so would pile
// a burst on them. The replay TestBurstFactsOnOneHost showed spreads of 3 to
// 6 in 40 pods on 4 hosts that way, as an end-to-end burst right after the
// nodes turned Ready had (9/12/9/10).
//
// Image presence yields to load when the host runs more than
// 2*LoadTolerance+1 jobs above the least loaded candidate (its load part is
// then 0 and it loses the image part too): otherwise a burst of pods whose
// image is on one host only would all queue there, and the image would
// never spread to other hosts.
//
// Nodes rbn does not manage score as well as the best build host of the same
// call: the extender ranks build hosts among themselves but neither draws a
// pod that may also run elsewhere onto a build host nor pushes it away.
func Prioritize(pod PodNeeds, nodes []NodeView, now time.Time, p Policy) extenderv1.HostPriorityList {
	out := make(extenderv1.HostPriorityList, len(nodes))
	facts := make([]Facts, len(nodes))
	jobs := make([]int, len(nodes))
	minJobs, seen := 0, false
	for i := range nodes {
		out[i].Host = nodes[i].Name
		if !nodes[i].managed() {
			continue
		}
		facts[i] = nodes[i].Info.Facts(now, p.MaxFactsAge)
		jobs[i] = Jobs(&nodes[i])
		if !seen || jobs[i] < minJobs {
			minJobs = jobs[i]
		}
		seen = true
	}
	// The image part compares build hosts: while one candidate's images are
	// unknown, no host gets it.
	for i := range nodes {
		if nodes[i].managed() && !facts[i].Images.Known {
			for j := range facts {
				facts[j].Images = Opt[ImageSet]{}
			}
			break
		}
	}
	best := int64(0)
	for i := range nodes {
		if !nodes[i].managed() {
			continue
		}
		out[i].Score = ScoreNode(pod, &nodes[i], facts[i], jobs[i], minJobs, p).Total()
		best = max(best, out[i].Score)
	}
	for i := range nodes {
		if !nodes[i].managed() {
			out[i].Score = best
		}
	}
	return out
}

// ScoreNode scores one build host whose load is jobs, given the least load
// minJobs among the candidates.
func ScoreNode(pod PodNeeds, v *NodeView, f Facts, jobs, minJobs int, p Policy) Score {
	s := Score{Jobs: jobs, MinJobs: minJobs}
	band := (jobs - minJobs) / (p.LoadTolerance + 1)
	switch band {
	case 0:
		s.Load = scoreLoadLeast
	case 1:
		s.Load = scoreLoadNear
	}
	if band <= 1 && len(pod.Images) > 0 && f.Images.Known {
		all := true
		for _, im := range pod.Images {
			if !f.Images.Value.Has(im) {
				all = false
				break
			}
		}
		if all {
			s.Image = scoreImage
		}
	}
	if pod.NativeArch != "" && v.Info.Arch == pod.NativeArch {
		s.Arch = scoreArch
	}
	return s
}
