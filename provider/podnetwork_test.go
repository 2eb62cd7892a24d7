package provider

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/containers/podman/v5/pkg/specgen"
	nettypes "go.podman.io/common/libnetwork/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

// onPodNetwork is a harness whose node has the block 100.96.3.0/24 of
// rbn's pod network.
func onPodNetwork(t *testing.T, pd *corev1.Pod) *harness {
	t.Helper()
	h := newHarness(t, pd)
	h.pods.net = newPodNetwork("node-a", netip.MustParsePrefix("100.96.3.0/24"))
	h.rt.images["registry.test/main:1"] = true
	return h
}

func TestPodJoinsTheNodesPodNetwork(t *testing.T) {
	h := onPodNetwork(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.sync()
	h.wantPhase(corev1.PodRunning)
	n, ok := h.rt.networks["rbn-node-a"]
	if !ok || n.Subnet.String() != "100.96.3.0/24" || n.Interface != podNetworkInterface("node-a") || n.Labels["rbn.dev/node"] != "node-a" {
		t.Fatalf("host networks %+v, want rbn-node-a with the node's block", h.rt.networks)
	}
	spec := h.rt.podSpecs["rbn-"+testUID]
	if _, joined := spec.Networks["rbn-node-a"]; !joined || spec.NetNS.NSMode != "bridge" {
		t.Errorf("podman pod networks %v netns %v, want bridge on rbn-node-a", spec.Networks, spec.NetNS)
	}
	if st := h.status(); st.PodIP != "100.96.3.2" {
		t.Errorf("pod IP %q, want 100.96.3.2 from the node's block", st.PodIP)
	}

	// A second pod of the node does not look at the network again.
	other := testPod(corev1.RestartPolicyAlways, "main")
	other.Name, other.UID = "q", "uid-2"
	w := newPodWorker(h.pods, other)
	h.pods.addLocked(w)
	w.sync(h.ctx)
	h.wantCalls("ensure-network ", 1)
}

func TestPodNetworkNamesAreUniqueAndShort(t *testing.T) {
	a, b := podNetworkInterface("build-1"), podNetworkInterface("build-2")
	if a == b || len(a) > 15 || !strings.HasPrefix(a, "rbnp") {
		t.Errorf("interfaces %q %q: want distinct names of at most 15 bytes", a, b)
	}
	if newPodNetwork("n", netip.Prefix{}) != nil {
		t.Error("a pod network without a block")
	}
}

func TestPodNetworkOfAnotherSubnetIsReplacedWhenUnused(t *testing.T) {
	h := onPodNetwork(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.networks = map[string]podman.Network{"rbn-node-a": {Name: "rbn-node-a", Subnet: netip.MustParsePrefix("100.96.9.0/24")}}
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.wantCalls("remove-network rbn-node-a", 1)
	if got := h.rt.networks["rbn-node-a"].Subnet.String(); got != "100.96.3.0/24" {
		t.Errorf("network subnet %s, want the node's block", got)
	}
}

func TestPodNetworkOfAnotherSubnetInUseFailsTheSandbox(t *testing.T) {
	h := onPodNetwork(t, testPod(corev1.RestartPolicyAlways, "main"))
	// Another pod of the node runs on the network with its old subnet.
	h.rt.networks = map[string]podman.Network{"rbn-node-a": {Name: "rbn-node-a", Subnet: netip.MustParsePrefix("100.96.9.0/24")}}
	h.rt.pods["rbn-old"] = &podman.PodSummary{Name: "rbn-old"}
	h.rt.podSpecs = map[string]*specgen.PodSpecGenerator{"rbn-old": {PodNetworkConfig: specgen.PodNetworkConfig{Networks: map[string]nettypes.PerNetworkOptions{"rbn-node-a": {}}}}}
	h.sync()
	h.wantCalls("create-pod ", 0)
	h.wantEvent(h.events(), "Warning FailedCreatePodSandBox pod network mismatch: the host's network rbn-node-a has subnet 100.96.9.0/24, the node's block is 100.96.3.0/24")
	if st := h.status(); st.PodIP != "" {
		t.Errorf("pod IP %q without a sandbox", st.PodIP)
	}
}

func TestPodNetworkRemovedOnTheHostIsMadeAgain(t *testing.T) {
	h := onPodNetwork(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.pods.net.ready = true // made earlier; someone removed it since
	h.sync()
	h.wantCalls("create-pod ", 1)
	h.wantEvent(h.events(), "Warning FailedCreatePodSandBox")
	h.sync()
	h.wantCalls("ensure-network ", 1)
	h.wantPhase(corev1.PodRunning)
}

func TestPodNetworkHostErrorIsRetried(t *testing.T) {
	h := onPodNetwork(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.faults = map[string][]error{"ensure-network": {errors.New("podman: connection refused")}}
	h.sync()
	h.wantCalls("create-pod ", 0)
	h.wantEvent(h.events(), "Warning FailedCreatePodSandBox pod network rbn-node-a: podman: connection refused")
	h.sync()
	h.wantPhase(corev1.PodRunning)
}

// A deleted node's sweep removes its pods, then its network; another
// node's on the same host stay.
func TestSweepNodeRemovesItsPodNetwork(t *testing.T) {
	h := onPodNetwork(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.rt.networks["rbn-node-b"] = podman.Network{Name: "rbn-node-b", Labels: map[string]string{"rbn.dev/node": "node-b"}}
	if err := sweepNode(h.ctx, h.rt, "node-a", h.pods.cfg.Logger); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.rt.networks["rbn-node-a"]; ok || len(h.rt.pods) != 0 {
		t.Errorf("left: networks %v, pods %v", h.rt.networks, h.rt.pods)
	}
	if _, ok := h.rt.networks["rbn-node-b"]; !ok {
		t.Error("another node's network removed")
	}
}
