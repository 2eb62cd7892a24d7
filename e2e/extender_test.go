//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/scheduler/server"
)

// These tests run against the stack's real kube-scheduler, configured by
// hack/dev-up.sh with rbn-extender (its URL in $RBN_STATE/extender/url: a
// local process, or its Service in the in-cluster mode).
// Facts a test needs that rbn-kubelet does not measure (low disk, an image
// on one host only) are set with the operator override annotation
// rbn.dev/host-facts-override, which rbn-kubelet's periodic rewrites of
// rbn.dev/host-facts do not touch. Before creating pods, a test waits until
// rbn-extender's own view (GET /debug/nodes/NAME) shows the change.

// extenderView is rbn-extender's view of a node.
func (s *stack) extenderView(t *testing.T, node string) (server.NodeDebug, error) {
	t.Helper()
	var d server.NodeDebug
	resp, err := s.ExtenderGet(t, "/debug/nodes/"+node)
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("GET /debug/nodes/%s: %d %s", node, resp.StatusCode, b)
	}
	return d, json.Unmarshal(b, &d)
}

// waitExtender waits until rbn-extender's view of node satisfies cond.
func (s *stack) waitExtender(t *testing.T, node, what string, cond func(server.NodeDebug) bool) {
	t.Helper()
	framework.Eventually(t, fmt.Sprintf("rbn-extender to see %s on %s", what, node), 30*time.Second, func() (bool, string) {
		d, err := s.extenderView(t, node)
		if err != nil {
			return false, err.Error()
		}
		b, _ := json.Marshal(d)
		return cond(d), string(b)
	})
}

// buildNodes returns the names of the build hosts' nodes, sorted, waiting
// until each is Ready.
func (s *stack) buildNodes(t *testing.T) []string {
	t.Helper()
	list, err := s.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: rbnv1.LabelRemoteBuildNode + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	if len(names) < 2 {
		t.Fatalf("need at least 2 build hosts, have %v (run the stack with NODES=4)", names)
	}
	for _, n := range names {
		s.WaitNodeReady(t, n, corev1.ConditionTrue, nil, 90*time.Second)
	}
	return names
}

// override sets the facts override on node for the rest of the test.
func (s *stack) override(t *testing.T, node, facts string) {
	t.Helper()
	s.Kubectl(t, "annotate", "--overwrite", "node", node, rbnv1.AnnotationHostFactsOverride+"="+facts)
	t.Cleanup(func() { _, _ = s.KubectlErr("annotate", "node", node, rbnv1.AnnotationHostFactsOverride+"-") })
}

// waitIdle waits until no pod holds any build host, in the apiserver and in
// rbn-extender's view, so that earlier tests do not weigh on placements.
func (s *stack) waitIdle(t *testing.T, nodes []string) {
	t.Helper()
	framework.Eventually(t, "no pods on the build hosts", 3*time.Minute, func() (bool, string) {
		pods, err := s.Client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var busy []string
		for _, p := range pods.Items {
			if slices.Contains(nodes, p.Spec.NodeName) && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				busy = append(busy, p.Namespace+"/"+p.Name+"@"+p.Spec.NodeName)
			}
		}
		return len(busy) == 0, fmt.Sprint(busy)
	})
	// Identical hosts, as the extender sees them: no pods, fresh facts of a
	// healthy host holding the jobs' image (facts are published by the
	// replica serving the node, up to a refresh interval after it took it).
	for _, n := range nodes {
		s.waitExtender(t, n, "no bound pods and fresh facts with the test image", func(d server.NodeDebug) bool {
			return d.BoundPods == 0 && !d.Facts.Stale && d.Facts.Healthy != nil && *d.Facts.Healthy &&
				slices.Contains(d.Facts.Images, framework.TestImage)
		})
	}
}

type jobPod struct {
	name, image string
	command     []string
	requests    corev1.ResourceList
	onlyNode    string // required node affinity on metadata.name
}

func (j jobPod) pod(ns string) *corev1.Pod {
	grace := int64(1)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: j.name, Namespace: ns, Labels: map[string]string{"app": "extender-e2e"}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "job", Image: j.image, Command: j.command,
				Resources: corev1.ResourceRequirements{Requests: j.requests},
			}},
		},
	}
	framework.RemoteNodePlacement(&p.Spec)
	if p.Spec.Containers[0].Image == "" {
		p.Spec.Containers[0].Image = framework.TestImage
	}
	if j.onlyNode != "" {
		framework.OnNode(&p.Spec, j.onlyNode)
	}
	return p
}

// createAtOnce creates the pods concurrently, as a burst, with a client
// whose rate limit lets them all through at once.
func (s *stack) createAtOnce(t *testing.T, ns string, pods []*corev1.Pod) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(pods))
	start := make(chan struct{})
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitBound waits until every pod of ns has a node and returns pods per node.
func (s *stack) waitBound(t *testing.T, ns string, n int) map[string]int {
	t.Helper()
	perNode := map[string]int{}
	framework.Eventually(t, fmt.Sprintf("%d pods of %s bound", n, ns), 3*time.Minute, func() (bool, string) {
		pods, err := s.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		clear(perNode)
		bound := 0
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				perNode[p.Spec.NodeName]++
				bound++
			}
		}
		return bound == n, fmt.Sprintf("%d of %d bound: %v", bound, len(pods.Items), perNode)
	})
	return perNode
}

// waitFailedScheduling waits for the pod's FailedScheduling event to contain want.
func (s *stack) waitFailedScheduling(t *testing.T, ns, pod, want string) string {
	t.Helper()
	var msg string
	framework.Eventually(t, fmt.Sprintf("FailedScheduling event of %s/%s containing %q", ns, pod, want), time.Minute, func() (bool, string) {
		var seen []string
		for _, e := range s.Events(t, ns, "Pod", pod) {
			if e.Reason == "FailedScheduling" {
				if strings.Contains(e.Message, want) {
					msg = e.Message
					return true, ""
				}
				seen = append(seen, e.Message)
			}
		}
		return false, fmt.Sprint(seen)
	})
	return msg
}

// extenderSkips counts the times kube-scheduler went on without rbn-extender
// (it is configured ignorable: an error would go unnoticed otherwise).
func (s *stack) extenderSkips(t *testing.T) int {
	t.Helper()
	return strings.Count(framework.ReadFile(t, filepath.Join(s.State, "cluster", "logs", "kube-scheduler.log")), "Skipping extender")
}

// TestExtenderBurstSpread: 40 identical job pods created at once spread
// evenly over the build hosts (4 with NODES=4): max - min <= 1. Once with
// requests, once without (the scheduler then accounts its non-zero
// defaults), and once as just after the nodes turned Ready, when only one
// host has published its images (the others' are made unknown with the
// facts override): that host must not draw the burst (a burst right after
// the nodes turned Ready was spread 9/12/9/10 so).
func TestExtenderBurstSpread(t *testing.T) {
	s := newStack(t)
	nodes := s.buildNodes(t)
	const pods = 40
	requests := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	for _, tc := range []struct {
		name      string
		requests  corev1.ResourceList
		factsOnly bool // only nodes[0]'s images are known
	}{
		{"with requests", requests, false},
		{"without requests", nil, false},
		{"one host's images known", requests, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.waitIdle(t, nodes)
			if tc.factsOnly {
				for _, n := range nodes[1:] {
					s.override(t, n, `{"images": null}`)
					s.waitExtender(t, n, "images unknown", func(d server.NodeDebug) bool { return d.Facts.Images == nil })
				}
			}
			ns := s.Namespace(t)
			var burst []*corev1.Pod
			for i := range pods {
				burst = append(burst, jobPod{name: fmt.Sprintf("job-%02d", i), command: []string{"sleep", "120"}, requests: tc.requests}.pod(ns))
			}
			skips := s.extenderSkips(t)
			start := time.Now()
			s.createAtOnce(t, ns, burst)
			perNode := s.waitBound(t, ns, pods)
			if n := s.extenderSkips(t) - skips; n > 0 {
				t.Errorf("kube-scheduler skipped rbn-extender %d time(s) during the burst (see its log)", n)
			}
			counts := make([]int, len(nodes))
			for i, n := range nodes {
				counts[i] = perNode[n]
			}
			spread := slices.Max(counts) - slices.Min(counts)
			t.Logf("%d pods on %d build hosts %v: %v, spread %d (all bound %s after the burst)",
				pods, len(nodes), nodes, counts, spread, time.Since(start).Round(time.Millisecond))
			if spread > 1 {
				t.Errorf("pods per host %v: spread %d > 1", counts, spread)
			}
			// Free the hosts now rather than when the namespace goes.
			_, _ = s.KubectlErr("delete", "pods", "--all", "-n", ns, "--wait=false")
		})
	}
}

// TestExtenderLowDiskHost: a host whose free podman storage is below a pod's
// ephemeral-storage is never chosen, and the pod's event says why.
func TestExtenderLowDiskHost(t *testing.T) {
	s := newStack(t)
	nodes := s.buildNodes(t)
	low := nodes[0]
	s.waitIdle(t, nodes)
	s.override(t, low, `{"storageFreeBytes": 1073741824}`) // 1 GiB
	s.waitExtender(t, low, "1GiB free", func(d server.NodeDebug) bool {
		return d.Facts.StorageFreeBytes != nil && *d.Facts.StorageFreeBytes == 1<<30
	})
	ns := s.Namespace(t)
	need := corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("2Gi")}

	// Without the extender, evenly spread pods would put 2 of 8 on every host.
	n := 2 * len(nodes)
	var pods []*corev1.Pod
	for i := range n {
		pods = append(pods, jobPod{name: fmt.Sprintf("disk-%02d", i), command: []string{"sleep", "60"}, requests: need}.pod(ns))
	}
	s.createAtOnce(t, ns, pods)
	perNode := s.waitBound(t, ns, n)
	t.Logf("%d pods needing 2GiB, %s has 1GiB free: %v", n, low, perNode)
	if perNode[low] != 0 {
		t.Errorf("%d pod(s) placed on %s, which has 1GiB free for 2GiB each", perNode[low], low)
	}

	// A pod that may only go to the low host stays pending, and says why.
	pinned := jobPod{name: "pinned", command: []string{"true"}, requests: need, onlyNode: low}.pod(ns)
	s.createAtOnce(t, ns, []*corev1.Pod{pinned})
	msg := s.waitFailedScheduling(t, ns, "pinned", "rbn: podman storage has 1.0GiB free, the pod needs 2.0GiB")
	t.Logf("FailedScheduling: %s", msg)
	if p := s.Pod(t, ns, "pinned"); p.Spec.NodeName != "" {
		t.Errorf("pinned pod bound to %s", p.Spec.NodeName)
	}

	// Room again: the scheduler retries on the Node update and places it.
	s.override(t, low, `{"storageFreeBytes": 107374182400}`) // 100 GiB
	s.WaitPodPhase(t, ns, "pinned", corev1.PodSucceeded, 2*time.Minute)
	_, _ = s.KubectlErr("delete", "pods", "--all", "-n", ns, "--wait=false")
}

// TestExtenderPrefersHostWithImage: a pod whose image is present on one host
// only lands there, for each host in turn, and runs from the local image.
func TestExtenderPrefersHostWithImage(t *testing.T) {
	s := newStack(t)
	nodes := s.buildNodes(t)
	s.waitIdle(t, nodes)
	ns := s.Namespace(t)
	for _, node := range nodes {
		i := s.HostIndex(t, node)
		image := "localhost/rbn/e2e-only-on-" + node + ":1.0"
		s.HostsSh(t, "podman", fmt.Sprint(i), "tag", framework.TestImage, image)
		t.Cleanup(func() {
			// untag, not rmi: the image stays in use by the pod's container until the namespace goes.
			if _, err := s.HostPodman(i, "untag", image, image); err != nil {
				t.Logf("untag %s: %v", image, err)
			}
		})
		// rbn-kubelet's published image list will carry the new tag too; the
		// override makes the test independent of when it is republished.
		s.override(t, node, fmt.Sprintf(`{"images": [%q]}`, image))
		s.waitExtender(t, node, image, func(d server.NodeDebug) bool { return slices.Contains(d.Facts.Images, image) })

		name := "image-on-" + node
		s.createAtOnce(t, ns, []*corev1.Pod{jobPod{name: name, image: image, command: []string{"true"}}.pod(ns)})
		p := s.WaitPodPhase(t, ns, name, corev1.PodSucceeded, 2*time.Minute)
		t.Logf("pod with %s placed on %s", image, p.Spec.NodeName)
		if p.Spec.NodeName != node {
			t.Errorf("pod with an image only %s has landed on %s", node, p.Spec.NodeName)
		}
	}
}

// TestExtenderDrainingAndUnhealthyHosts: a draining host and a host whose
// facts say unhealthy get no pods, with the reason in the event.
func TestExtenderDrainingAndUnhealthyHosts(t *testing.T) {
	s := newStack(t)
	nodes := s.buildNodes(t)
	draining, sick := nodes[0], nodes[1]
	s.Kubectl(t, "label", "--overwrite", "node", draining, rbnv1.LabelDraining+"=true")
	t.Cleanup(func() { _, _ = s.KubectlErr("label", "node", draining, rbnv1.LabelDraining+"-") })
	s.override(t, sick, `{"healthy": false}`)
	s.waitExtender(t, draining, "draining", func(d server.NodeDebug) bool { return d.Draining })
	s.waitExtender(t, sick, "unhealthy", func(d server.NodeDebug) bool { return d.Facts.Healthy != nil && !*d.Facts.Healthy })

	ns := s.Namespace(t)
	for node, want := range map[string]string{
		draining: "rbn: build host is draining (label rbn.dev/draining=true)",
		sick:     "rbn: build host fails its health checks",
	} {
		name := "only-" + node
		s.createAtOnce(t, ns, []*corev1.Pod{jobPod{name: name, command: []string{"true"}, onlyNode: node}.pod(ns)})
		t.Logf("FailedScheduling: %s", s.waitFailedScheduling(t, ns, name, want))
	}
	if len(nodes) > 2 {
		n := 2 * len(nodes)
		var pods []*corev1.Pod
		for i := range n {
			pods = append(pods, jobPod{name: fmt.Sprintf("any-%02d", i), command: []string{"sleep", "30"}}.pod(ns))
		}
		s.createAtOnce(t, ns, pods)
		perNode := s.waitBound(t, ns, n) // the two pinned pods stay pending
		t.Logf("%d pods: %v", n, perNode)
		if perNode[draining]+perNode[sick] != 0 {
			t.Errorf("pods placed on the draining or unhealthy host: %v", perNode)
		}
	}
	_, _ = s.KubectlErr("delete", "pods", "--all", "-n", ns, "--wait=false")
}

// TestExtenderDownIsIgnored: with ignorable: true (dev-up's default), a hung
// rbn-extender delays scheduling by the scheduler's httpTimeout but does not
// stop it. The extender is paused (SIGSTOP), not killed, and resumed after:
// the local process, or every pod's process in the in-cluster mode.
func TestExtenderDownIsIgnored(t *testing.T) {
	s := newStack(t)
	if !strings.Contains(framework.ReadFile(t, filepath.Join(s.State, "cluster", "kube-scheduler.yaml")), "ignorable: true") {
		t.Skip("the stack's scheduler has rbn-extender with ignorable: false: scheduling waits for it by design")
	}
	nodes := s.buildNodes(t)
	// The local process, or in the in-cluster mode every pod's process.
	var pids []int
	if s.InCluster {
		var err error
		if pids, err = s.RBNPIDs(framework.ExtenderApp); err != nil {
			t.Fatal(err)
		}
	} else {
		var pid int
		if _, err := fmt.Sscan(framework.ReadFile(t, filepath.Join(s.State, "pids", "rbn-extender.pid")), &pid); err != nil {
			t.Fatal(err)
		}
		pids = []int{pid}
	}
	signal := func(sig syscall.Signal) error {
		for _, pid := range pids {
			if err := syscall.Kill(pid, sig); err != nil {
				return fmt.Errorf("rbn-extender (pid %d): %w", pid, err)
			}
		}
		return nil
	}
	if err := signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("pause: %v", err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := signal(syscall.SIGCONT); err != nil {
				t.Errorf("resume: %v", err)
			}
		}
	}
	t.Cleanup(resume)

	ns := s.Namespace(t)
	skips := s.extenderSkips(t)
	start := time.Now()
	s.createAtOnce(t, ns, []*corev1.Pod{jobPod{name: "while-down", command: []string{"true"}}.pod(ns)})
	// Bound, not completed: the extender is resumed at once, before the
	// kubelet of the worker node restarts its paused pods (their liveness
	// probes fail after 30 s), and how long the pod takes to run on its
	// host is not what this test is about.
	perNode := s.waitBound(t, ns, 1)
	t.Logf("bound without rbn-extender %s after creation: %v", time.Since(start).Round(time.Millisecond), perNode)
	if s.extenderSkips(t) == skips {
		t.Error("kube-scheduler's log does not say it skipped rbn-extender")
	}
	resume()
	p := s.WaitPodPhase(t, ns, "while-down", corev1.PodSucceeded, 2*time.Minute)
	if !slices.Contains(nodes, p.Spec.NodeName) {
		t.Errorf("pod on %s", p.Spec.NodeName)
	}
	framework.Eventually(t, "rbn-extender ready again", 30*time.Second, func() (bool, string) {
		resp, err := s.ExtenderGet(t, "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}
