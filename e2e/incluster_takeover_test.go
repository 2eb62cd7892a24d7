//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// The Deployment's replicas take over from each other as operators meet it:
// the serving replica's process killed with SIGKILL (its container restarts
// in the same pod), then the serving replica's pod deleted (SIGTERM: it
// releases its Leases; the ReplicaSet makes a new pod). Each time during a
// burst of jobs: every node is served again by a live replica (its Lease,
// Node Ready, the replica's pod IP as the node's address), every job
// completes once with its output, and no node loses its heartbeat.
func TestInClusterTakeover(t *testing.T) {
	s := newStack(t)
	if !s.InCluster {
		t.Skip("the stack runs rbn-kubelet as a local process; the local takeover tests (takeover_test.go) cover that mode; bring the stack up with RBN_IN_CLUSTER=1 for this test")
	}
	tk := &takeover{stack: s, falseSince: map[string]time.Time{}, longestFalse: map[string]time.Duration{}}
	hosts, err := s.BuildHosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		tk.nodes = append(tk.nodes, h.Name)
	}
	tk.servedByLiveReplicas(t, "", 2*time.Minute)
	tk.watchReady(t)

	for _, how := range []string{"kill -9", "pod deletion"} {
		victim := tk.holderOf(t, tk.nodes[0])
		ns := s.Namespace(t)
		since := time.Now().Add(-time.Second)
		names := tk.jobs(t, ns, 10, 8)
		tk.halfRunning(t, ns, len(names))
		start := time.Now()
		switch how {
		case "kill -9":
			pid, err := s.RBNPodPID(framework.KubeletApp, victim)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			victim = "" // its container restarts in the same pod, which may serve again
		case "pod deletion":
			if err := s.Client.CoreV1().Pods(framework.RBNNamespace).Delete(context.Background(), victim, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		tk.servedByLiveReplicas(t, victim, 2*time.Minute)
		t.Logf("%s of the replica serving %s -> every node served by a live replica: %s", how, tk.nodes[0], time.Since(start).Round(100*time.Millisecond))
		tk.checkRanOnce(t, ns, names, since)
	}
	tk.stopWatch()
	tk.checkNoEviction(t)
}

// holderOf is the replica (pod name) holding node's Lease.
func (tk *takeover) holderOf(t *testing.T, node string) string {
	t.Helper()
	holders, err := tk.LeaseHolders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if holders[node] == "" {
		t.Fatalf("nobody holds %s's Lease", node)
	}
	return holders[node]
}

// halfRunning waits until half the n pods of ns run.
func (tk *takeover) halfRunning(t *testing.T, ns string, n int) {
	t.Helper()
	framework.Eventually(t, "half the jobs running", 2*time.Minute, func() (bool, string) {
		pods, err := tk.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running >= n/2, fmt.Sprintf("%d running", running)
	})
}

// servedByLiveReplicas waits until every node's Lease is held by a Ready
// replica pod of rbn-kubelet that is not being deleted (nor named not), the
// Node is Ready, and its address is that pod's IP.
func (tk *takeover) servedByLiveReplicas(t *testing.T, not string, timeout time.Duration) {
	t.Helper()
	framework.Eventually(t, "every node served by a live replica", timeout, func() (bool, string) {
		ctx := context.Background()
		pods, err := tk.RBNPods(ctx, framework.KubeletApp)
		if err != nil {
			return false, err.Error()
		}
		live := map[string]string{}
		for _, p := range pods {
			if p.DeletionTimestamp == nil && p.Name != not && podReady(&p) {
				live[p.Name] = p.Status.PodIP
			}
		}
		holders, err := tk.LeaseHolders(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, name := range tk.nodes {
			ip, ok := live[holders[name]]
			if !ok {
				return false, fmt.Sprintf("%s held by %q, not a live replica (%v)", name, holders[name], live)
			}
			n, err := tk.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if c := framework.ReadyCondition(n); c.Status != corev1.ConditionTrue {
				return false, fmt.Sprintf("%s Ready=%s %s", name, c.Status, c.Reason)
			}
			if addrs := internalIPs(n); len(addrs) != 1 || addrs[0] != ip {
				return false, fmt.Sprintf("%s advertises %v, its holder %s is at %s", name, addrs, holders[name], ip)
			}
		}
		return true, ""
	})
}
