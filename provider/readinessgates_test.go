package provider

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const gate corev1.PodConditionType = "example.com/load-balancer-ready"

// condition returns the pod condition of that type, failing the test when
// the status has none.
func (h *harness) podCondition(t corev1.PodConditionType) corev1.PodCondition {
	h.t.Helper()
	st := h.status()
	if c := findCondition(st.Conditions, t); c != nil {
		return *c
	}
	h.t.Fatalf("no condition %s in %+v", t, st.Conditions)
	return corev1.PodCondition{}
}

// apiPod is the pod as the API has it after another controller set conds.
func (h *harness) apiPod(conds ...corev1.PodCondition) *corev1.Pod {
	pd := h.w.current()
	for _, c := range conds {
		pd.Status.Conditions = slices.DeleteFunc(pd.Status.Conditions, func(o corev1.PodCondition) bool { return o.Type == c.Type })
	}
	pd.Status.Conditions = append(pd.Status.Conditions, conds...)
	return pd
}

// TestReadinessGates: Ready waits for the gates' conditions, which other
// controllers set, in kubelet's words; those conditions are reported with
// rbn's own, so virtual-kubelet's whole-status write keeps them.
func TestReadinessGates(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	pd.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: gate}}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	h.wantPhase(corev1.PodRunning)

	if c := h.podCondition(corev1.ContainersReady); c.Status != corev1.ConditionTrue {
		t.Fatalf("ContainersReady %s", c.Status)
	}
	ready := h.podCondition(corev1.PodReady)
	if ready.Status != corev1.ConditionFalse || ready.Reason != "ReadinessGatesNotReady" ||
		ready.Message != `corresponding condition of pod readiness gate "example.com/load-balancer-ready" does not exist.` {
		t.Fatalf("Ready with no gate condition: %+v", ready)
	}

	// The controller says False, then True.
	h.pods.PodConditionsChanged(h.apiPod(corev1.PodCondition{Type: gate, Status: corev1.ConditionFalse}))
	h.sync()
	ready = h.podCondition(corev1.PodReady)
	if ready.Status != corev1.ConditionFalse || ready.Message != `the status of pod readiness gate "example.com/load-balancer-ready" is not "True", but False` {
		t.Fatalf("Ready with the gate False: %+v", ready)
	}
	h.pods.PodConditionsChanged(h.apiPod(corev1.PodCondition{Type: gate, Status: corev1.ConditionTrue, Reason: "Registered"}))
	select {
	case <-h.w.kick:
	default:
		t.Fatal("a changed gate condition did not schedule a sync")
	}
	h.sync()
	if ready = h.podCondition(corev1.PodReady); ready.Status != corev1.ConditionTrue || ready.Reason != "" {
		t.Fatalf("Ready with the gate True: %+v", ready)
	}
	if c := h.podCondition(gate); c.Status != corev1.ConditionTrue || c.Reason != "Registered" {
		t.Fatalf("the gate's condition is not reported as the API has it: %+v", c)
	}

	// The API pod now carries rbn's own status too: nothing to do.
	h.pods.PodConditionsChanged(h.w.current())
	select {
	case <-h.w.kick:
		t.Fatal("unchanged external conditions scheduled a sync")
	default:
	}

	// Not ready containers: the containers' reason wins, as on a kubelet.
	h.rt.exit(ctrName("main", 0), 1)
	h.sync()
	if ready = h.podCondition(corev1.PodReady); ready.Status != corev1.ConditionFalse || ready.Reason == "ReadinessGatesNotReady" {
		t.Fatalf("Ready with the container exited: %+v", ready)
	}
}

// TestExternalConditionsKept: a condition that another controller set on a
// pod without readiness gates (the taint manager's DisruptionTarget, say)
// stays in the status rbn reports, from the pod handed over at creation on.
func TestExternalConditionsKept(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	target := corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager"}
	pd.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, target}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	h.wantPhase(corev1.PodRunning)
	if c := h.podCondition(corev1.DisruptionTarget); c.Reason != target.Reason {
		t.Fatalf("DisruptionTarget %+v", c)
	}
	n := 0
	for _, c := range h.status().Conditions {
		if c.Type == corev1.PodScheduled {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("PodScheduled %d times: rbn's own conditions must not be taken as external", n)
	}
}
