//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/internal/podnet"
	"github.com/remote-build-nodes/rbn/provider"
)

// Every pod on a remote build node has an address of the pod network rbn
// owns, from its node's block: distinct nodes (the isolated host's too)
// have distinct blocks, two pods of one node distinct addresses, and the
// address the pod holds is its status.podIP, which the downward API gives
// it as well. Each node's block is the subnet of its podman network on its
// host.
func TestPodNetworkAddresses(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	iso := s.isolatedHost(t)
	type placed struct {
		pod  string
		host int
	}
	pods := []placed{{"a1", 1}, {"a2", 1}, {"b", 2}, {"iso", iso}}
	for _, p := range pods {
		pd := framework.JobPod(ns, p.pod, s.Host(t, p.host)["NAME"], nil,
			[]string{"sh", "-c", `echo "env $POD_IP"; ip -4 -o addr show eth0; sleep 3600`})
		pd.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), pd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cm, err := s.Client.CoreV1().ConfigMaps(framework.RBNNamespace).Get(context.Background(), podnet.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the pod network's blocks: %v", err)
	}
	network := netip.MustParsePrefix("100.96.0.0/16") // manifests/ and hack/dev-up.sh
	blocks := map[string]netip.Prefix{}
	for _, h := range []int{1, 2, iso} {
		node := s.Host(t, h)["NAME"]
		b, err := netip.ParsePrefix(cm.Data[node])
		if err != nil || b.Bits() != 24 || !network.Contains(b.Addr()) {
			t.Fatalf("node %s's block %q: want a /24 of %s (%v)", node, cm.Data[node], network, cm.Data)
		}
		for other, ob := range blocks {
			if ob.Overlaps(b) {
				t.Errorf("nodes %s and %s share the block %s", node, other, b)
			}
		}
		blocks[node] = b
		subnet := strings.TrimSpace(s.MustHostPodman(t, h, "network", "inspect", provider.PodNetworkName(node), "--format", "{{range .Subnets}}{{.Subnet}}{{end}}"))
		if subnet != b.String() {
			t.Errorf("host %d's network %s has subnet %q, want the node's block %s", h, provider.PodNetworkName(node), subnet, b)
		}
	}

	seen := map[string]string{}
	for _, p := range pods {
		pd := s.WaitPodPhase(t, ns, p.pod, corev1.PodRunning, 2*time.Minute)
		node := s.Host(t, p.host)["NAME"]
		ip, err := netip.ParseAddr(pd.Status.PodIP)
		if err != nil || !blocks[node].Contains(ip) {
			t.Errorf("pod %s on %s: status.podIP %q is not in the node's block %s", p.pod, node, pd.Status.PodIP, blocks[node])
			continue
		}
		if len(pd.Status.PodIPs) != 1 || pd.Status.PodIPs[0].IP != pd.Status.PodIP {
			t.Errorf("pod %s: podIPs %v, want [%s]", p.pod, pd.Status.PodIPs, pd.Status.PodIP)
		}
		if other, dup := seen[pd.Status.PodIP]; dup {
			t.Errorf("pods %s and %s both have %s", p.pod, other, pd.Status.PodIP)
		}
		seen[pd.Status.PodIP] = p.pod
		var logs string
		framework.Eventually(t, "pod "+p.pod+" printing its addresses", 30*time.Second, func() (bool, string) {
			logs = s.Kubectl(t, "-n", ns, "logs", p.pod)
			return strings.Contains(logs, " inet "), logs
		})
		if !strings.Contains(logs, "env "+pd.Status.PodIP+"\n") {
			t.Errorf("pod %s: the downward API's status.podIP is not %s:\n%s", p.pod, pd.Status.PodIP, logs)
		}
		if !strings.Contains(logs, " inet "+pd.Status.PodIP+"/24 ") {
			t.Errorf("pod %s: eth0 does not hold status.podIP %s/24:\n%s", p.pod, pd.Status.PodIP, logs)
		}
	}
}
