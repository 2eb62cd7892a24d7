//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// The Deployment's replicas take over from each other as operators meet it,
// each time during a burst of 20 jobs and with exec, followed logs and
// port-forward sessions open to a pod of a node the serving replica holds:
//   - its process killed with SIGKILL (its container restarts in the same pod);
//   - its pod deleted (SIGTERM: it releases its Leases; the ReplicaSet makes
//     a new pod);
//   - cut off from the apiserver (its requests dropped in its network
//     namespace; its Leases lapse, it stops serving and ends its sessions);
//   - the Deployment rolled to a new image (maxSurge 1, maxUnavailable 0).
//
// Every node is served again by a live replica (its Lease, Node Ready, the
// replica's pod IP as the node's address), the old sessions end and a new
// exec works at once, every job completes once with its output, and no
// node loses its heartbeat.
func TestInClusterTakeover(t *testing.T) {
	tk := newInClusterTakeover(t)
	s := tk.stack
	tk.servedByLiveReplicas(t, "", 2*time.Minute)
	tk.checkLeasesAtRest(t)
	tk.watchReady(t)

	for _, how := range []string{"kill -9", "pod deletion", "partition", "rollout"} {
		victim := tk.holderOf(t, tk.nodes[0])
		ns := s.Namespace(t)
		var rolledTo string
		if how == "rollout" {
			// Built and pushed before the burst: a new image of the same binaries.
			rolledTo = tk.newKubeletImage(t)
		}
		sess := tk.openSessions(t, ns, tk.nodes[0])
		tk.takeGaps()
		since := time.Now().Add(-time.Second)
		names := tk.jobs(t, ns, 20, 8)
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

		case "partition":
			heal := tk.partition(t, victim)
			// The victim serves nothing while cut off; the other replica
			// holds every node and the victim's sessions end.
			tk.servedByLiveReplicas(t, victim, 2*time.Minute)
			sess.ended(t, time.Minute)
			heal()
			victim = "" // back in touch, it stands by
		case "rollout":
			tk.roll(t, rolledTo)
			victim = ""
		}
		tk.servedByLiveReplicas(t, victim, 2*time.Minute)
		t.Logf("%s of the replica serving %s -> every node served by a live replica: %s; now through %s, Lease holder %s",
			how, tk.nodes[0], time.Since(start).Round(100*time.Millisecond), tk.kubeletEndpoint(t, tk.nodes[0]), tk.holderOf(t, tk.nodes[0]))
		if how == "pod deletion" {
			// On its way out it released its nodes, then deleted its own Lease.
			framework.Eventually(t, "the deleted replica's lease gone", time.Minute, func() (bool, string) {
				_, err := s.Client.CoordinationV1().Leases(framework.ShardingNamespace).Get(context.Background(), "rbn-replica-"+victim, metav1.GetOptions{})
				return apierrors.IsNotFound(err), fmt.Sprint(err)
			})
			t.Logf("pod deletion: the deleted replica's own Lease gone %s after the deletion", time.Since(start).Round(100*time.Millisecond))
		}
		sess.ended(t, time.Minute)
		// A new session works at once, through the replica serving the node now.
		if out, err := s.KubectlErr("exec", "-n", ns, sess.pod, "--", "echo", "again"); err != nil || strings.TrimSpace(out) != "again" {
			t.Errorf("a new exec after the %s: %q, %v", how, out, err)
		}
		tk.checkRanOnce(t, ns, names, since)
		if rolledTo != "" {
			tk.checkReplicasRun(t, rolledTo)
		}
		// Every 10 s when healthy; Ready=Unknown past 40 s (checkNoEviction).
		t.Logf("%s: longest node heartbeat gap: %s", how, tk.takeGaps())
	}
	tk.stopWatch()
	tk.checkNoEviction(t)
}

// checkLeasesAtRest: each live replica renews a Lease of its own, and the
// nodes' Leases are written only when a node changes hands: while every
// replica renews its Lease twice, no node Lease changes.
func (tk *takeover) checkLeasesAtRest(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	leases := tk.Client.CoordinationV1().Leases(framework.ShardingNamespace)
	versions := func(kind string) map[string]string {
		l, err := leases.List(ctx, metav1.ListOptions{LabelSelector: "rbn.dev/lease=" + kind})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, x := range l.Items {
			out[x.Name] = x.ResourceVersion + " " + ptr.Deref(x.Spec.HolderIdentity, "")
		}
		return out
	}
	nodes := versions("node")
	pods, err := tk.RBNPods(ctx, framework.KubeletApp)
	if err != nil {
		t.Fatal(err)
	}
	renewals := map[string]int{}
	last := versions("replica")
	framework.Eventually(t, "every live replica to renew its lease twice", time.Minute, func() (bool, string) {
		now := versions("replica")
		var waiting []string
		for _, p := range pods {
			name := "rbn-replica-" + p.Name
			if p.DeletionTimestamp != nil || !containersRunning(&p) {
				continue
			}
			if v, ok := now[name]; ok && !strings.HasSuffix(v, " "+p.Name) {
				t.Fatalf("%s names %q", name, v)
			}
			if now[name] != "" && now[name] != last[name] {
				renewals[name]++
			}
			if renewals[name] < 2 {
				waiting = append(waiting, fmt.Sprintf("%s (%d renewals seen)", name, renewals[name]))
			}
		}
		last = now
		return len(waiting) == 0, strings.Join(waiting, ", ")
	})
	if now := versions("node"); !maps.Equal(now, nodes) {
		t.Errorf("node leases written at rest: before %v, after %v", nodes, now)
	}
}

// sessions are kubectl exec (stdin open), logs -f and port-forward
// processes to one pod, through the apiserver to the replica serving its node.
type sessions struct {
	pod   string
	procs map[string]*exec.Cmd
	outs  map[string]*output
	done  map[string]chan error
}

// openSessions starts a long-running pod on node and opens the sessions to it.
func (tk *takeover) openSessions(t *testing.T, ns, node string) *sessions {
	t.Helper()
	p := framework.JobPod(ns, "shell", node, nil, []string{"sh", "-c", "echo ready; exec sleep 3600"})
	if _, err := tk.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tk.WaitPodPhase(t, ns, "shell", corev1.PodRunning, 2*time.Minute)
	ss := &sessions{pod: "shell", procs: map[string]*exec.Cmd{}, outs: map[string]*output{}, done: map[string]chan error{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		for _, d := range ss.done {
			<-d
		}
	})
	for what, args := range map[string][]string{
		"exec":         {"exec", "-i", "-n", ns, "shell", "--", "cat"},
		"logs -f":      {"logs", "-f", "-n", ns, "shell"},
		"port-forward": {"port-forward", "-n", ns, "pod/shell", ":8080", "--address=127.0.0.1"},
	} {
		cmd := tk.KubectlCmd(ctx, args...)
		out := &output{}
		cmd.Stdout, cmd.Stderr = out, out
		var stdin io.WriteCloser
		if what == "exec" {
			var err error
			if stdin, err = cmd.StdinPipe(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		ss.procs[what], ss.outs[what], ss.done[what] = cmd, out, done
		// Each session is up: it has answered once.
		switch what {
		case "exec":
			if _, err := io.WriteString(stdin, "hello\n"); err != nil {
				t.Fatal(err)
			}
			out.waitFor(t, "hello", 0, time.Minute)
		case "logs -f":
			out.waitFor(t, "ready", 0, time.Minute)
		case "port-forward":
			out.waitFor(t, "Forwarding from", 0, time.Minute)
		}
	}
	// Which replica the sessions went to (the apiserver dials the Node's
	// address), for a session that outlives its replica.
	t.Logf("sessions to %s opened through %s, Lease holder %s", node, tk.kubeletEndpoint(t, node), tk.holderOf(t, node))
	return ss
}

// kubeletEndpoint is the address and port the apiserver reaches node's
// kubelet API at.
func (tk *takeover) kubeletEndpoint(t *testing.T, node string) string {
	t.Helper()
	n, err := tk.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	advertised := framework.NodeKubeletAddress(n)
	ip, port, viaService, err := tk.KubeletTarget(context.Background(), n)
	if err != nil || !viaService {
		return advertised
	}
	return advertised + " -> " + net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// ended waits until every session's kubectl has exited.
func (ss *sessions) ended(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	expired := false
	var running []string
	for what, done := range ss.done {
		var err error
		ended := false
		if expired { // only look at the others
			select {
			case err = <-done:
				ended = true
			default:
			}
		} else {
			select {
			case err = <-done:
				ended = true
			case <-deadline.C:
				expired = true
			}
		}
		if !ended {
			running = append(running, what)
			continue
		}
		done <- err // ended may be called again
		t.Logf("kubectl %s ended (%v): %s", what, err, strings.TrimSpace(ss.outs[what].String()))
	}
	if running != nil {
		for _, what := range running {
			t.Logf("kubectl %s, still running, printed: %s", what, strings.TrimSpace(ss.outs[what].String()))
		}
		t.Fatalf("kubectl %v to %s still running %s after the takeover: the old replica kept its sessions", running, ss.pod, timeout)
	}
}

// partition cuts the replica's pod off from the apiserver: its requests
// to the apiserver (the kubernetes Service and the apiserver's own
// address) are dropped in its network namespace; the apiserver still
// reaches its kubelet API. The returned function heals it, and so does the
// test's end.
func (tk *takeover) partition(t *testing.T, pod string) (heal func()) {
	t.Helper()
	pid, err := tk.RBNPodPID(framework.KubeletApp, pod)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(tk.Rest.Host)
	if err != nil {
		t.Fatal(err)
	}
	rules := [][]string{
		{"-d", "10.0.0.1/32", "-p", "tcp", "--dport", "443", "-j", "DROP"},
		{"-d", u.Hostname() + "/32", "-p", "tcp", "--dport", u.Port(), "-j", "DROP"},
	}
	iptables := func(op string, rule []string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := framework.Run(ctx, append([]string{"nsenter", "-t", strconv.Itoa(pid), "-n", "iptables", "-w", op, "OUTPUT"}, rule...), nil)
		return err
	}
	for _, r := range rules {
		if err := iptables("-I", r); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	heal = func() {
		once.Do(func() {
			for _, r := range rules {
				// The pod may be gone, and its network namespace with the rules.
				if err := iptables("-D", r); err != nil {
					t.Logf("healing the partition of %s: %v", pod, err)
				}
			}
		})
	}
	t.Cleanup(heal)
	return heal
}

// newKubeletImage builds rbn-kubelet's image again under a new tag (the
// Deployment's tag with "-rolled" added, or taken off), pushes it to the
// stack's registry and returns its reference.
func (tk *takeover) newKubeletImage(t *testing.T) string {
	t.Helper()
	d, err := tk.Client.AppsV1().Deployments(framework.RBNNamespace).Get(context.Background(), framework.KubeletApp, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	image := d.Spec.Template.Spec.Containers[0].Image
	tag := image[strings.LastIndex(image, ":")+1:]
	if strings.HasSuffix(tag, "-rolled") {
		tag = strings.TrimSuffix(tag, "-rolled")
	} else {
		tag += "-rolled"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := tk.Script(ctx, "image.sh", "push")
	cmd.Env = append(cmd.Env, "RBN_IMAGE_VERSION="+tag)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/image.sh push (RBN_IMAGE_VERSION=%s): %v", tag, err)
	}
	for _, ref := range strings.Fields(string(out)) {
		if strings.HasSuffix(ref, "/rbn/"+framework.KubeletApp+":"+tag) {
			return image[:strings.LastIndex(image, "/rbn/")] + ref[strings.LastIndex(ref, "/rbn/"):]
		}
	}
	t.Fatalf("hack/image.sh push did not push rbn-kubelet:%s:\n%s", tag, out)
	return ""
}

// roll sets the Deployment's image and waits for the rollout to finish.
func (tk *takeover) roll(t *testing.T, image string) {
	t.Helper()
	tk.Kubectl(t, "-n", framework.RBNNamespace, "set", "image", "deployment/"+framework.KubeletApp, framework.KubeletApp+"="+image)
	tk.Kubectl(t, "-n", framework.RBNNamespace, "rollout", "status", "deployment/"+framework.KubeletApp, "--timeout=3m")
}

// checkReplicasRun checks that every live replica runs image.
func (tk *takeover) checkReplicasRun(t *testing.T, image string) {
	t.Helper()
	pods, err := tk.RBNPods(context.Background(), framework.KubeletApp)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Spec.Containers[0].Image != image {
			t.Errorf("replica %s runs %s after the rollout to %s", p.Name, p.Spec.Containers[0].Image, image)
		}
	}
}

// newInClusterTakeover is the in-cluster stack's replicas and build nodes.
func newInClusterTakeover(t *testing.T) *takeover {
	s := newStack(t)
	if !s.InCluster {
		t.Skip("the stack runs rbn-kubelet as a local process; the local takeover tests (takeover_test.go) cover that mode; bring the stack up in the in-cluster mode (the default) for this test")
	}
	tk := &takeover{stack: s, falseSince: map[string]time.Time{}, longestFalse: map[string]time.Duration{}, renewed: map[string]time.Time{}}
	hosts, err := s.BuildHosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		tk.nodes = append(tk.nodes, h.Name)
	}
	return tk
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

// servedByLiveReplicas waits until every node's Lease is held by a replica
// pod of rbn-kubelet whose container runs and that is not being deleted (nor
// named not), the Node is Ready, its address is that pod's IP and its
// kubelet port there accepts connections. Not the pod's readiness: a
// replica is Ready once its build hosts' first connection has ended, while
// it serves the nodes it holds from its start.
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
			if p.DeletionTimestamp == nil && p.Name != not && containersRunning(&p) {
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
			target, port, viaService, err := tk.KubeletTarget(ctx, n)
			if err != nil {
				return false, err.Error()
			}
			if target != ip {
				return false, fmt.Sprintf("%s is served at %s, its holder %s is at %s", name, target, holders[name], ip)
			}
			// A restarted container keeps its pod's IP and identity (so the
			// Lease and the Node look served already): the node's kubelet
			// port must accept connections too.
			addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
			if err := framework.Accepts(addr); err != nil {
				return false, fmt.Sprintf("%s's kubelet port %s: %v", name, addr, err)
			}
			if viaService {
				// The apiserver dials the Node's address, the node's Service:
				// kube-proxy (on this machine) must lead it to the new
				// target too, or `kubectl logs` finds the port refused (the
				// clean-clone run at 7f9c688 failed so).
				advertised := framework.NodeKubeletAddress(n)
				if err := framework.Accepts(advertised); err != nil {
					return false, fmt.Sprintf("%s's address %s (its Service, to %s): %v", name, advertised, addr, err)
				}
			}
		}
		return true, ""
	})
}

// The Deployment scaled to 3 replicas, then to 0 and back:
//   - 3: every node is still served by exactly one live replica (its Lease
//     holder, whose pod IP the Node advertises) and jobs run on every node;
//     back to 2, the nodes of a removed replica are taken over.
//   - 0: nobody serves the nodes, and they say so the standard way (Ready
//     Unknown, NodeStatusUnknown, once the node lifecycle controller's
//     grace period passes), while the jobs on the hosts go on; scaled back,
//     a replica adopts them and they complete once, with their output.
func TestInClusterReplicaCounts(t *testing.T) {
	tk := newInClusterTakeover(t)
	s := tk.stack
	scale := func(n int) {
		t.Helper()
		s.Kubectl(t, "-n", framework.RBNNamespace, "scale", "deployment/"+framework.KubeletApp, fmt.Sprintf("--replicas=%d", n))
		s.Kubectl(t, "-n", framework.RBNNamespace, "rollout", "status", "deployment/"+framework.KubeletApp, "--timeout=3m")
	}
	t.Cleanup(func() { scale(2); tk.servedByLiveReplicas(t, "", 2*time.Minute) })

	scale(3)
	tk.servedByLiveReplicas(t, "", 2*time.Minute)
	ns := s.Namespace(t)
	since := time.Now().Add(-time.Second)
	tk.checkRanOnce(t, ns, tk.jobs(t, ns, len(tk.nodes), 1), since)
	scale(2)
	tk.servedByLiveReplicas(t, "", 2*time.Minute)

	// No replica: the jobs on the hosts go on, the nodes go Unknown.
	ns = s.Namespace(t)
	since = time.Now().Add(-time.Second)
	names := tk.jobs(t, ns, len(tk.nodes), 75)
	for _, name := range names {
		s.WaitPodPhase(t, ns, name, corev1.PodRunning, 2*time.Minute)
	}
	s.KubeletSh(t, "stop") // scales to 0, remembering 2
	framework.Eventually(t, "every node Ready=Unknown (NodeStatusUnknown)", 2*time.Minute, func() (bool, string) {
		for _, name := range tk.nodes {
			n, err := s.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if c := framework.ReadyCondition(n); c.Status != corev1.ConditionUnknown || c.Reason != "NodeStatusUnknown" {
				return false, fmt.Sprintf("%s Ready=%s %s", name, c.Status, c.Reason)
			}
		}
		return true, ""
	})
	for _, name := range names {
		p := s.Pod(t, ns, name)
		host := s.HostIndex(t, p.Spec.NodeName)
		out := s.MustHostPodman(t, host, "ps", "--filter", "label=rbn.dev/pod-uid="+string(p.UID), "--format", "{{.Names}}")
		if !strings.Contains(out, "-main-") {
			t.Errorf("%s: its container is not running on %s while no replica serves the node: %q", name, p.Spec.NodeName, out)
		}
	}
	s.KubeletSh(t, "start")
	tk.servedByLiveReplicas(t, "", 2*time.Minute)
	tk.checkRanOnce(t, ns, names, since)
}

// containersRunning says whether every container of p is running.
func containersRunning(p *corev1.Pod) bool {
	if len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running == nil {
			return false
		}
	}
	return true
}

// The replica serving a node killed (SIGKILL) at each step of a pod's
// start, as soon as the step's event is seen: right after the pod is bound
// (its sandbox under way), once its image is there (Pulled), once its
// container is created (Created), once it started (Started). Whoever serves
// the node next (the other replica, or the killed one back) completes the
// start: each job runs its container once, with its output.
func TestKubeletKilledAtEachStartStep(t *testing.T) {
	tk := newInClusterTakeover(t)
	s := tk.stack
	tk.servedByLiveReplicas(t, "", 2*time.Minute)
	// The killed containers restart with the kubelet's crash back-off
	// (10 s, 20 s, 40 s, ...): the Deployment is left as found, every
	// replica Ready, for the tests after this one.
	t.Cleanup(func() { tk.replicasReady(t, 3*time.Minute) })
	node := s.directX86Host(t)
	fault := framework.RecordFault(t, "rbn-kubelet killed at each step of a pod's start")
	ns := s.Namespace(t)
	steps := []string{"bound", "Pulled", "Created", "Started"}
	fault.Jobs(len(steps))
	lost, duplicated := 0, 0
	for _, step := range steps {
		name := "start-" + strings.ToLower(step)
		since := time.Now().Add(-time.Second)
		victim := tk.holderOf(t, node)
		events, err := s.Client.CoreV1().Events(ns).Watch(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		p := framework.JobPod(ns, name, node, nil, []string{"sh", "-c", "echo started; sleep 3; echo done " + name})
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		seen := "the pod's creation"
		if step != "bound" {
			seen = waitEventReason(t, events.ResultChan(), step, 2*time.Minute)
		}
		events.Stop()
		pid, err := s.RBNPodPID(framework.KubeletApp, victim)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		tk.servedByLiveReplicas(t, "", 2*time.Minute)
		done := s.WaitPodPhase(t, ns, name, corev1.PodSucceeded, 3*time.Minute)
		starts := s.mainStarts(t, done, since)
		switch {
		case len(starts) == 0:
			lost++
			t.Errorf("%s: the main container never started on the host", name)
		case len(starts) > 1:
			duplicated++
			t.Errorf("%s: the main container started %d times: %v", name, len(starts), starts)
		}
		// The Node's address (its Service) reaches the new replica once
		// kube-proxy follows it: not yet, at times, when the pod ends.
		s.WaitKubeletReachable(t, done.Spec.NodeName, time.Minute)
		if logs := s.Kubectl(t, "logs", "-n", ns, name); !strings.Contains(logs, "done "+name) {
			t.Errorf("%s: logs %q, want its output", name, logs)
		}
		fault.Figure(fmt.Sprintf("killed after %s: the job succeeded %.1f s later", seen, time.Since(killed).Seconds()))
	}
	fault.Lost(lost)
	fault.Duplicated(duplicated)
}

// replicasReady waits until every rbn-kubelet pod is Ready.
func (tk *takeover) replicasReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	framework.Eventually(t, "every rbn-kubelet replica Ready", timeout, func() (bool, string) {
		pods, err := tk.RBNPods(context.Background(), framework.KubeletApp)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods {
			if p.DeletionTimestamp == nil && !podReady(&p) {
				return false, p.Name + " not Ready"
			}
		}
		return len(pods) > 0, fmt.Sprint(len(pods), " pods")
	})
}

// waitEventReason waits on an event watch for an event of reason and
// returns what was seen.
func waitEventReason(t *testing.T, ch <-chan watch.Event, reason string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the event watch ended before a %s event", reason)
			}
			if e, isEvent := ev.Object.(*corev1.Event); isEvent && e.Reason == reason {
				return "the " + reason + " event"
			}
		case <-deadline:
			t.Fatalf("no %s event within %s", reason, timeout)
		}
	}
}
