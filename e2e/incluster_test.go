//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/internal/nodeservice"
	"github.com/remote-build-nodes/rbn/scheduler/server"
)

// rbn installed as an operator installs it (hack/dev-up.sh, the default mode:
// rbn's images, `kubectl apply -k` of the local overlay of manifests/):
// rbn-kubelet and rbn-extender run as pods on the worker node, the build
// nodes advertise rbn-kubelet's pod IP, the apiserver reaches it there for
// logs and exec, and kube-scheduler consults rbn-extender through its Service.

// TestInClusterRBN runs a job on a build node through the in-cluster
// rbn-kubelet, with the in-cluster rbn-extender consulted for its placement.
func TestInClusterRBN(t *testing.T) {
	s := newInClusterStack(t)
	ctx := context.Background()
	w := s.worker(t)

	// rbn's own pods: Ready, on the worker node, on the pod network.
	kubeletIPs := map[string]string{} // pod name (a replica's identity) -> pod IP
	for _, app := range []string{framework.KubeletApp, framework.ExtenderApp, framework.ApproverApp} {
		pods, err := s.RBNPods(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		if len(pods) == 0 {
			t.Fatalf("no pods of %s in %s", app, framework.RBNNamespace)
		}
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				continue
			}
			ip := net.ParseIP(p.Status.PodIP)
			if p.Spec.NodeName != w.name || !podReady(&p) || ip == nil || !w.podCIDR.Contains(ip) {
				t.Fatalf("pod %s: node %q, ready %v, IP %q: want Ready on %s with an IP of %s", p.Name, p.Spec.NodeName, podReady(&p), p.Status.PodIP, w.name, w.podCIDR)
			}
			if app == framework.KubeletApp {
				kubeletIPs[p.Name] = p.Status.PodIP
			}
			t.Logf("%s: pod %s Ready on %s at %s", app, p.Name, p.Spec.NodeName, p.Status.PodIP)
		}
	}

	// Every build node has an address of its own (config nodeServices, as
	// manifests/ sets it): its InternalIP is the ClusterIP of its Service
	// rbn-system/rbn-node-<name>, its kubelet port 10250, and the Service's
	// EndpointSlice leads to the pod IP of the replica holding its Lease.
	nodes := s.buildNodes(t)
	holders, err := s.LeaseHolders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addresses := map[string]string{}
	for _, name := range nodes {
		n, _ := s.Node(t, name)
		svc, err := s.Client.CoreV1().Services(framework.RBNNamespace).Get(ctx, nodeservice.Name(name), metav1.GetOptions{})
		if err != nil {
			t.Errorf("node %s: its Service: %v", name, err)
			continue
		}
		if addrs, port := internalIPs(n), n.Status.DaemonEndpoints.KubeletEndpoint.Port; len(addrs) != 1 || addrs[0] != svc.Spec.ClusterIP || port != 10250 {
			t.Errorf("node %s: InternalIP %v port %d, want its Service's ClusterIP %s and 10250", name, addrs, port, svc.Spec.ClusterIP)
		}
		if other, ok := addresses[svc.Spec.ClusterIP]; ok {
			t.Errorf("nodes %s and %s share address %s", name, other, svc.Spec.ClusterIP)
		}
		addresses[svc.Spec.ClusterIP] = name
		ip, port, viaService, err := s.KubeletTarget(ctx, n)
		if want := kubeletIPs[holders[name]]; err != nil || !viaService || ip != want || port == 10250 {
			t.Errorf("node %s: served at %s:%d (via its Service %v, %v), want the node's own port at the pod IP %q of its Lease's holder %q (replicas %v)",
				name, ip, port, viaService, err, want, holders[name], kubeletIPs)
		}
	}

	// rbn-extender is consulted: a pod pinned to a host it reports unhealthy
	// stays pending with its reason (kube-scheduler alone would bind it: the
	// extender is ignorable).
	sick, target := nodes[0], nodes[1]
	s.override(t, sick, `{"healthy": false}`)
	s.waitExtender(t, sick, "unhealthy", func(d server.NodeDebug) bool { return d.Facts.Healthy != nil && !*d.Facts.Healthy })
	ns := s.Namespace(t)
	s.createAtOnce(t, ns, []*corev1.Pod{jobPod{name: "on-sick", command: []string{"true"}, onlyNode: sick}.pod(ns)})
	t.Logf("FailedScheduling: %s", s.waitFailedScheduling(t, ns, "on-sick", "rbn: build host fails its health checks"))

	// A job on another build node: it waits for a file that `kubectl exec`
	// creates, then finishes; its output comes back through `kubectl logs`.
	job := framework.JobPod(ns, "job", target, nil, []string{"sh", "-c",
		"echo job started; while [ ! -f /tmp/go ]; do sleep 0.1; done; echo job done: $(cat /tmp/go)"})
	if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitPodPhase(t, ns, "job", corev1.PodRunning, 2*time.Minute)
	framework.Eventually(t, "the job's first line in kubectl logs", time.Minute, func() (bool, string) {
		out, err := s.KubectlErr("-n", ns, "logs", "job")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, "job started"), out
	})
	token := framework.UniqueName("exec")
	if out := s.Kubectl(t, "-n", ns, "exec", "job", "--", "sh", "-c", fmt.Sprintf("echo %s >/tmp/go && echo exec says hi", token)); strings.TrimSpace(out) != "exec says hi" {
		t.Errorf("kubectl exec printed %q, want %q", out, "exec says hi")
	}
	p := s.WaitPodPhase(t, ns, "job", corev1.PodSucceeded, 2*time.Minute)
	if p.Spec.NodeName != target {
		t.Errorf("job ran on %s, want %s", p.Spec.NodeName, target)
	}
	if out := s.Kubectl(t, "-n", ns, "logs", "job"); !strings.Contains(out, "job done: "+token) {
		t.Errorf("kubectl logs of the finished job: %q, want the line %q", out, "job done: "+token)
	}

	// rbn-kubelet's pod served it: once the job is deleted, the log of that
	// pod (kubectl logs) says it removed the job's containers from the host.
	if err := s.Client.CoreV1().Pods(ns).Delete(ctx, "job", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`"pod":"%s/job"`, ns)
	framework.Eventually(t, "rbn-kubelet's log naming the deleted job", time.Minute, func() (bool, string) {
		logs, err := s.KubeletLogs(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, want) && strings.Contains(line, "removed from host") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no line with %s and 'removed from host' in kubectl logs -n %s deployment/%s", want, framework.RBNNamespace, framework.KubeletApp)
	})
}

// newInClusterStack is the stack, for a test of the in-cluster mode.
func newInClusterStack(t *testing.T) *stack {
	s := newStack(t)
	if !s.InCluster {
		t.Skip("the stack runs rbn-kubelet and rbn-extender as local processes; bring it up in the in-cluster mode (the default of hack/dev-up.sh and hack/test.sh e2e) for this test")
	}
	return s
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestInClusterWrongImage: rbn-extender's Deployment as installed, copied
// into a test namespace with an image tag the registry does not have, says
// why it does not start: its pod waits with ErrImagePull or
// ImagePullBackOff, naming the image, and an event says so.
func TestInClusterWrongImage(t *testing.T) {
	s := newInClusterStack(t)
	ctx := context.Background()
	ns := s.Namespace(t)
	var wrong string
	s.copyDeployment(t, ns, framework.ExtenderApp, "wrong-image", func(spec *corev1.PodSpec) {
		// Without rbn-system's service account, priority and volumes (a missing
		// volume would hold the pod before its image is pulled).
		spec.ServiceAccountName, spec.DeprecatedServiceAccount = "", ""
		spec.Volumes, spec.Containers[0].VolumeMounts = nil, nil
		image := spec.Containers[0].Image
		wrong = image[:strings.LastIndex(image, ":")] + ":does-not-exist"
		spec.Containers[0].Image = wrong
	})
	framework.Eventually(t, "the wrong image's pod waiting with an image pull error", 2*time.Minute, func() (bool, string) {
		pods, err := s.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=wrong-image"})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods.Items {
			for _, c := range p.Status.ContainerStatuses {
				if w := c.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, wrong) {
					t.Logf("pod %s: %s: %s", p.Name, w.Reason, w.Message)
					return true, ""
				}
			}
		}
		return false, fmt.Sprint(len(pods.Items), " pods, none waiting on the image")
	})
	framework.Eventually(t, "a Failed event naming the image", time.Minute, func() (bool, string) {
		out, err := s.KubectlErr("-n", ns, "get", "events", "--field-selector", "reason=Failed", "-o", "jsonpath={.items[*].message}")
		return err == nil && strings.Contains(out, wrong), out
	})
}

// copyDeployment copies rbn's Deployment app into ns as one replica named
// name, with the registry's pull Secret, and mutate applied to its pod spec.
func (s *stack) copyDeployment(t *testing.T, ns, app, name string, mutate func(*corev1.PodSpec)) {
	t.Helper()
	ctx := context.Background()
	orig, err := s.Client.AppsV1().Deployments(framework.RBNNamespace).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.copySecret(t, "rbn-registry", ns)
	d := orig.DeepCopy()
	d.ObjectMeta = metav1.ObjectMeta{Name: name, Namespace: ns}
	d.Spec.Replicas = ptr.To[int32](1)
	d.Spec.Selector.MatchLabels = map[string]string{"app": name}
	d.Spec.Template.Labels = map[string]string{"app": name}
	d.Spec.Template.Spec.PriorityClassName = ""
	mutate(&d.Spec.Template.Spec)
	if _, err := s.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// copySecret copies a Secret of rbn's namespace into ns.
func (s *stack) copySecret(t *testing.T, name, ns string) {
	t.Helper()
	ctx := context.Background()
	secret, err := s.Client.CoreV1().Secrets(framework.RBNNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret.ObjectMeta = metav1.ObjectMeta{Name: secret.Name, Namespace: ns}
	if _, err := s.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestInClusterMissingRBAC: rbn-kubelet as installed, copied into a test
// namespace under a service account no Role or ClusterRole is bound to,
// says why it cannot serve: it exits at start with the apiserver's refusal
// of the node Leases, in its log and its container's last state, and
// restarts with back-off; it never holds a node.
func TestInClusterMissingRBAC(t *testing.T) {
	s := newInClusterStack(t)
	ctx := context.Background()
	ns := s.Namespace(t)
	if _, err := s.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "no-rbac"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.copyDeployment(t, ns, framework.KubeletApp, "no-rbac", func(spec *corev1.PodSpec) {
		spec.ServiceAccountName, spec.DeprecatedServiceAccount = "no-rbac", ""
		// Its configuration and certificates, as installed.
		for _, v := range spec.Volumes {
			switch {
			case v.ConfigMap != nil:
				cm, err := s.Client.CoreV1().ConfigMaps(framework.RBNNamespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				cm.ObjectMeta = metav1.ObjectMeta{Name: cm.Name, Namespace: ns}
				if _, err := s.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			case v.Secret != nil:
				s.copySecret(t, v.Secret.SecretName, ns)
			}
		}
	})
	says := func(text string) bool {
		return strings.Contains(text, "not allowed to list and watch the node Leases") && strings.Contains(text, "forbidden")
	}
	var pod string
	framework.Eventually(t, "the replica without RBAC exiting with the apiserver's refusal in its last state", 3*time.Minute, func() (bool, string) {
		pods, err := s.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=no-rbac"})
		if err != nil || len(pods.Items) == 0 {
			return false, fmt.Sprint("no pod yet ", err)
		}
		p := pods.Items[0]
		pod = p.Name
		for _, c := range p.Status.ContainerStatuses {
			if term := c.LastTerminationState.Terminated; term != nil && c.RestartCount > 0 {
				if says(term.Message) {
					return true, ""
				}
				return false, fmt.Sprintf("last state %s, exit %d, message %q", term.Reason, term.ExitCode, term.Message)
			}
		}
		return false, framework.DescribeStatus(&p)
	})
	// The previous container's log says the same. Kubelet keeps one dead
	// container; when a back-off restart ends another attempt between the
	// status read and the log read, the log of the one named is gone
	// ("unable to retrieve container logs"), so read again.
	framework.Eventually(t, "the previous container's log saying why it stopped", time.Minute, func() (bool, string) {
		logs, err := s.KubectlErr("-n", ns, "logs", pod, "--previous")
		if err != nil {
			return false, err.Error()
		}
		return says(logs), logs
	})
	holders, err := s.LeaseHolders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for node, h := range holders {
		if h == pod {
			t.Errorf("the replica without RBAC holds %s's Lease", node)
		}
	}
}

// internalIPs are a Node's InternalIP addresses.
func internalIPs(n *corev1.Node) []string {
	var addrs []string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addrs = append(addrs, a.Address)
		}
	}
	return addrs
}

// TestInClusterOwnMetrics scrapes rbn's own metrics where a Prometheus in
// the cluster would, at each pod's IP and metrics port: every rbn-kubelet
// replica reports its SSH connection to every build host up (the standby
// keeps them warm), its podman calls and the S3 relay's totals; rbn-extender counts the
// scheduler's calls once a pod was placed.
func TestInClusterOwnMetrics(t *testing.T) {
	s := newInClusterStack(t)
	ctx := context.Background()
	hosts, err := s.BuildHosts()
	if err != nil {
		t.Fatal(err)
	}
	// A pod placed through the extender.
	ns := s.Namespace(t)
	p := framework.JobPod(ns, "job", "", nil, []string{"true"})
	if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitPodPhase(t, ns, "job", corev1.PodSucceeded, 2*time.Minute)

	scrape := framework.ScrapeMetrics
	for _, app := range []string{framework.KubeletApp, framework.ExtenderApp, framework.ApproverApp} {
		pods, err := s.RBNPods(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		filters := 0
		for _, pd := range pods {
			if pd.DeletionTimestamp != nil || !podReady(&pd) {
				continue
			}
			switch app {
			case framework.KubeletApp:
				framework.Eventually(t, pd.Name+"'s metrics: every build host connected", time.Minute, func() (bool, string) {
					out, err := scrape(pd.Status.PodIP, 10265)
					if err != nil {
						return false, err.Error()
					}
					up := 0
					for _, line := range strings.Split(out, "\n") {
						if strings.HasPrefix(line, "rbn_ssh_connection_up{") && strings.HasSuffix(line, "} 1") {
							up++
						}
					}
					if up != len(hosts) {
						return false, fmt.Sprintf("%d SSH connections up, want one per build host (%d)", up, len(hosts))
					}
					for _, want := range []string{`rbn_s3_transfers_total{direction="upload",result="success"}`, `operation="system_info",result="success"}`,
						"process_resident_memory_bytes ", "go_goroutines "} {
						if !strings.Contains(out, want) {
							return false, "no " + want
						}
					}
					return true, ""
				})
			case framework.ExtenderApp:
				out, err := scrape(pd.Status.PodIP, 10266)
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range strings.Split(out, "\n") {
					if strings.HasPrefix(line, `rbn_extender_requests_total{code="200",verb="filter"} `) {
						filters++
					}
				}
			}
		}
		if app == framework.ExtenderApp && filters == 0 {
			t.Errorf("no rbn-extender replica counted a filter call, yet a pod was placed through it")
		}
	}
}
