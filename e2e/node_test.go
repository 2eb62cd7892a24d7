//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/nodeservice"
	"github.com/remote-build-nodes/rbn/internal/podnet"
	"github.com/remote-build-nodes/rbn/provider"
)

// The local build hosts run on this machine, so the facts the node shows
// must be this machine's: read them here independently of podman.
func TestNodeShowsTheHostsFacts(t *testing.T) {
	s := newStack(t)
	for i := 1; i <= 2; i++ {
		name := s.Host(t, i)["NAME"]
		n, ok := s.Node(t, name)
		if !ok {
			t.Fatalf("node %s missing", name)
		}
		if got := n.Labels[corev1.LabelArchStable]; got != runtime.GOARCH {
			t.Errorf("%s: arch label %q, want %q", name, got, runtime.GOARCH)
		}
		if got := n.Labels[corev1.LabelOSStable]; got != "linux" {
			t.Errorf("%s: os label %q", name, got)
		}
		hostname, _ := os.Hostname()
		if got := n.Labels[corev1.LabelHostname]; got != hostname {
			t.Errorf("%s: hostname label %q, want %q", name, got, hostname)
		}
		if n.Labels["rbn.dev/local-test-host"] != "true" {
			t.Errorf("%s: operator label missing: %v", name, n.Labels)
		}
		if got := n.Status.Capacity.Cpu().Value(); got != int64(runtime.NumCPU()) {
			t.Errorf("%s: cpu capacity %d, want %d", name, got, runtime.NumCPU())
		}
		memTotal := framework.Meminfo()["MemTotal"] * 1024
		if memTotal == 0 {
			t.Fatal("no MemTotal in /proc/meminfo")
		}
		if got := n.Status.Capacity.Memory().Value(); got != memTotal {
			t.Errorf("%s: memory capacity %d, want MemTotal %d", name, got, memTotal)
		}
		if got := n.Status.Allocatable.StorageEphemeral().Value(); got <= 0 {
			t.Errorf("%s: no ephemeral-storage allocatable", name)
		}
		if got := n.Status.Allocatable.Pods().Value(); got != int64(rbnv1.DefaultMaxPods) {
			t.Errorf("%s: pods allocatable %d", name, got)
		}
		if !strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "podman://") {
			t.Errorf("%s: runtime %q", name, n.Status.NodeInfo.ContainerRuntimeVersion)
		}
		uname, err := framework.KernelRelease()
		if err != nil {
			t.Fatal(err)
		}
		if n.Status.NodeInfo.KernelVersion != uname {
			t.Errorf("%s: kernel %q, want %q", name, n.Status.NodeInfo.KernelVersion, uname)
		}
		found := false
		for _, taint := range n.Spec.Taints {
			found = found || (taint.Key == rbnv1.TaintRemoteBuildNode && taint.Effect == corev1.TaintEffectNoSchedule)
		}
		if !found {
			t.Errorf("%s: default taint missing: %v", name, n.Spec.Taints)
		}
		if c := framework.ReadyCondition(n); c.Status != corev1.ConditionTrue {
			t.Errorf("%s: not Ready: %+v", name, c)
		}
		// Memory pressure is judged on MemAvailable, read from the host.
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeMemoryPressure && (c.Status != corev1.ConditionFalse || !strings.HasSuffix(c.Message, " bytes available")) {
				t.Errorf("%s: MemoryPressure %s %q, want False from MemAvailable", name, c.Status, c.Message)
			}
		}
		r, _ := s.RBN(t, name)
		if r.Status.Phase != rbnv1.PhaseReady || r.Status.Host == nil || r.Status.Host.Architecture != runtime.GOARCH {
			t.Errorf("%s: RemoteBuildNode status %+v", name, r.Status)
		}
		// The printer columns show phase, arch and podman version.
		out := s.Kubectl(t, "get", "remotebuildnodes", name, "--no-headers")
		if !strings.Contains(out, "Ready") || !strings.Contains(out, runtime.GOARCH) || !strings.Contains(out, strings.TrimPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "podman://")) {
			t.Errorf("%s: printer columns %q", name, out)
		}
	}
}

func TestNodeLeaseIsRenewed(t *testing.T) {
	s := newStack(t)
	name := s.Host(t, 1)["NAME"]
	lease, err := s.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := lease.Spec.RenewTime.Time
	framework.Eventually(t, "lease "+name+" renewed", 30*time.Second, func() (bool, string) {
		l, err := s.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return l.Spec.RenewTime.After(first), l.Spec.RenewTime.String()
	})
}

// A host whose sshd dies goes NotReady with the reason, and comes back.
func TestSSHDownThenBack(t *testing.T) {
	s := newStack(t)
	name := s.Host(t, 2)["NAME"]
	s.WaitNodeReady(t, name, corev1.ConditionTrue, nil, time.Minute)

	restoreSSH := s.cutSSH(t, 2)
	start := time.Now()
	c := s.WaitNodeReady(t, name, corev1.ConditionFalse, []string{"SSHConnectionLost", "SSHUnreachable"}, 40*time.Second)
	t.Logf("NotReady after %s: %s: %s", time.Since(start).Round(time.Millisecond), c.Reason, c.Message)

	framework.Eventually(t, "RemoteBuildNode "+name+" NotReady with lastError", 20*time.Second, func() (bool, string) {
		r, _ := s.RBN(t, name)
		if r.Status.Phase != rbnv1.PhaseNotReady || r.Status.LastError == nil {
			return false, fmt.Sprintf("%+v", r.Status)
		}
		return strings.HasPrefix(r.Status.LastError.Reason, "SSH"), r.Status.LastError.Reason
	})
	// The other host is unaffected.
	other := s.Host(t, 1)["NAME"]
	if n, _ := s.Node(t, other); framework.ReadyCondition(n).Status != corev1.ConditionTrue {
		t.Errorf("node %s not Ready while only %s was cut", other, name)
	}

	restoreSSH()
	// Redial backoff is capped at 30 s by default.
	s.WaitNodeReady(t, name, corev1.ConditionTrue, nil, 60*time.Second)
	framework.Eventually(t, "RemoteBuildNode "+name+" Ready again", 20*time.Second, func() (bool, string) {
		r, _ := s.RBN(t, name)
		return r.Status.Phase == rbnv1.PhaseReady, string(r.Status.Phase)
	})
}

// A host whose podman service is down is NotReady with PodmanUnavailable.
func TestPodmanDownThenBack(t *testing.T) {
	s := newStack(t)
	name := s.Host(t, 1)["NAME"]
	fault := framework.RecordFault(t, "podman stopped")
	s.HostsSh(t, "stop-podman", "1")
	stopped := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			s.HostsSh(t, "start-podman", "1")
		}
	})
	s.WaitNodeReady(t, name, corev1.ConditionFalse, []string{"PodmanUnavailable"}, 40*time.Second)
	fault.Figure(fmt.Sprintf("NotReady with PodmanUnavailable %.1f s after the stop", time.Since(stopped).Seconds()))
	s.HostsSh(t, "start-podman", "1")
	restarted = true
	started := time.Now()
	s.WaitNodeReady(t, name, corev1.ConditionTrue, nil, 40*time.Second)
	fault.Figure(fmt.Sprintf("podman stopped for %.1f s; Ready %.1f s after its start", started.Sub(stopped).Seconds(), time.Since(started).Seconds()))
}

// registerExtra registers host i again under another name with the given
// known_hosts, and removes it at the end of the test.
func (s *stack) registerExtra(t *testing.T, name string, i int, knownHosts string, extraSpec string) {
	t.Helper()
	h := s.Host(t, i)
	key := framework.ReadFile(t, h["PRIVATE_KEY"])
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: %[1]s-ssh, namespace: rbn-system}
type: kubernetes.io/ssh-auth
stringData:
  ssh-privatekey: |
%[2]s
  known_hosts: |
%[3]s
---
apiVersion: rbn.dev/v1alpha1
kind: RemoteBuildNode
metadata: {name: %[1]s}
spec:
  address: %[4]s
  port: %[5]s
  podmanSocket: %[6]s
  sshSecretRef: {name: %[1]s-ssh, namespace: rbn-system}
%[7]s
`, name, indent(key, 4), indent(knownHosts, 4), h["ADDRESS"], h["PORT"], h["PODMAN_SOCKET"], extraSpec))
	t.Cleanup(func() {
		_, _ = s.KubectlErr("delete", "remotebuildnode", name, "--ignore-not-found", "--wait=true", "--timeout=60s")
		_, _ = s.KubectlErr("-n", "rbn-system", "delete", "secret", name+"-ssh", "--ignore-not-found")
	})
}

// registerAs registers RemoteBuildNode name with the spec of build host
// i's (its Secret included), deleted when the test ends.
func (s *stack) registerAs(t *testing.T, name string, i int) {
	t.Helper()
	host, ok := s.RBN(t, s.Host(t, i)["NAME"])
	if !ok {
		t.Fatalf("no RemoteBuildNode for build host %d", i)
	}
	spec, err := json.Marshal(host.Spec)
	if err != nil {
		t.Fatal(err)
	}
	s.Apply(t, fmt.Sprintf(`{"apiVersion": "rbn.dev/v1alpha1", "kind": "RemoteBuildNode", "metadata": {"name": %q}, "spec": %s}`, name, spec))
	t.Cleanup(func() {
		_, _ = s.KubectlErr("delete", "remotebuildnode", name, "--ignore-not-found", "--wait=true", "--timeout=60s")
	})
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n")
}

// A known_hosts line with another host's key for this address: the host key
// check fails, nothing is ever connected, and the reason is visible.
func TestWrongHostKeyNeverConnects(t *testing.T) {
	s := newStack(t)
	h1, h2 := s.Host(t, 1), s.Host(t, 2)
	// host 2's key, claimed for host 1's address.
	_, key, ok := strings.Cut(strings.TrimSpace(framework.ReadFile(t, h2["KNOWN_HOSTS"])), " ")
	if !ok {
		t.Fatal("unexpected known_hosts format")
	}
	line := fmt.Sprintf("[%s]:%s %s", h1["ADDRESS"], h1["PORT"], key)
	name := framework.UniqueName("e2e-wrong-key")
	s.registerExtra(t, name, 1, line, "")

	fault := framework.RecordFault(t, "host key changed")
	registered := time.Now()
	c := s.WaitNodeReady(t, name, corev1.ConditionFalse, []string{"HostKeyMismatch"}, 30*time.Second)
	t.Logf("node condition: %s: %s", c.Reason, c.Message)
	fault.Figure(fmt.Sprintf("NotReady with HostKeyMismatch %.1f s after the registration", time.Since(registered).Seconds()))
	framework.Eventually(t, "RemoteBuildNode "+name+" NotReady with HostKeyMismatch", 20*time.Second, func() (bool, string) {
		r, _ := s.RBN(t, name)
		return r.Status.Phase == rbnv1.PhaseNotReady && r.Status.LastError != nil && r.Status.LastError.Reason == "HostKeyMismatch",
			fmt.Sprintf("%+v", r.Status)
	})
	r, _ := s.RBN(t, name)
	if r.Status.Host != nil {
		t.Errorf("host facts were read through an untrusted connection: %+v", r.Status.Host)
	}
	n, _ := s.Node(t, name)
	if n.Status.Allocatable.Pods().Value() != 0 {
		t.Errorf("a never-connected node offers pods: %v", n.Status.Allocatable)
	}
	// Host 1's own node is unaffected.
	s.WaitNodeReady(t, h1["NAME"], corev1.ConditionTrue, nil, 10*time.Second)
}

func TestUnreachableAddress(t *testing.T) {
	s := newStack(t)
	name := framework.UniqueName("e2e-unreachable")
	h := s.Host(t, 1)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: %[1]s-ssh, namespace: rbn-system}
type: kubernetes.io/ssh-auth
stringData:
  ssh-privatekey: |
%[2]s
  known_hosts: "[127.0.9.9]:2222 %[3]s"
---
apiVersion: rbn.dev/v1alpha1
kind: RemoteBuildNode
metadata: {name: %[1]s}
spec:
  address: 127.0.9.9
  port: 2222
  sshSecretRef: {name: %[1]s-ssh, namespace: rbn-system}
`, name, indent(framework.ReadFile(t, h["PRIVATE_KEY"]), 4), strings.SplitN(strings.TrimSpace(framework.ReadFile(t, h["KNOWN_HOSTS"])), " ", 2)[1]))
	t.Cleanup(func() {
		_, _ = s.KubectlErr("delete", "remotebuildnode", name, "--ignore-not-found", "--wait=true", "--timeout=60s")
		_, _ = s.KubectlErr("-n", "rbn-system", "delete", "secret", name+"-ssh", "--ignore-not-found")
	})
	s.WaitNodeReady(t, name, corev1.ConditionFalse, []string{"SSHUnreachable"}, 30*time.Second)
}

// A missing Secret, one outside rbn-kubelet's namespace and an invalid
// spec: a clear reason and an event, and the other nodes keep being served.
func TestBadInputIsReported(t *testing.T) {
	s := newStack(t)
	missing := framework.UniqueName("e2e-no-secret")
	outside := framework.UniqueName("e2e-secret-outside")
	invalid := framework.UniqueName("e2e-invalid")
	s.Apply(t, fmt.Sprintf(`apiVersion: rbn.dev/v1alpha1
kind: RemoteBuildNode
metadata: {name: %s}
spec:
  address: 127.0.1.1
  sshSecretRef: {name: does-not-exist, namespace: rbn-system}
---
apiVersion: rbn.dev/v1alpha1
kind: RemoteBuildNode
metadata: {name: %s}
spec:
  address: 127.0.1.1
  sshSecretRef: {name: ssh, namespace: default}
---
apiVersion: rbn.dev/v1alpha1
kind: RemoteBuildNode
metadata: {name: %s}
spec:
  address: 127.0.1.1
  podmanSocket: relative/podman.sock
  sshSecretRef: {name: x, namespace: rbn-system}
  labels: {kubernetes.io/arch: arm64}
  hostPathAllowlist: [/]
`, missing, outside, invalid))
	t.Cleanup(func() {
		_, _ = s.KubectlErr("delete", "remotebuildnode", missing, outside, invalid, "--ignore-not-found", "--wait=true", "--timeout=60s")
	})
	framework.Eventually(t, missing+" Invalid: secret not found", 20*time.Second, func() (bool, string) {
		r, _ := s.RBN(t, missing)
		return r.Status.Phase == rbnv1.PhaseInvalid && r.Status.LastError != nil && r.Status.LastError.Reason == "SSHSecretNotFound", fmt.Sprintf("%+v", r.Status)
	})
	framework.Eventually(t, outside+" Invalid: secret outside rbn's namespace", 20*time.Second, func() (bool, string) {
		r, _ := s.RBN(t, outside)
		return r.Status.Phase == rbnv1.PhaseInvalid && r.Status.LastError != nil && r.Status.LastError.Reason == "SSHSecretOutsideNamespace" &&
			strings.Contains(r.Status.LastError.Message, "default/ssh"), fmt.Sprintf("%+v", r.Status)
	})
	var msg string
	framework.Eventually(t, invalid+" Invalid: every problem listed", 20*time.Second, func() (bool, string) {
		r, _ := s.RBN(t, invalid)
		if r.Status.Phase != rbnv1.PhaseInvalid || r.Status.LastError == nil {
			return false, fmt.Sprintf("%+v", r.Status)
		}
		msg = r.Status.LastError.Message
		return true, ""
	})
	for _, want := range []string{"spec.podmanSocket", "spec.labels[kubernetes.io/arch]", "spec.hostPathAllowlist[0]"} {
		if !strings.Contains(msg, want) {
			t.Errorf("invalid spec message lacks %s: %s", want, msg)
		}
	}
	framework.Eventually(t, "InvalidSpec event on "+invalid, 60*time.Second, func() (bool, string) {
		for _, e := range s.Events(t, "default", "RemoteBuildNode", invalid) {
			if e.Reason == "InvalidSpec" && e.Type == corev1.EventTypeWarning {
				return true, ""
			}
		}
		return false, "no event"
	})
	if _, ok := s.Node(t, invalid); ok {
		t.Errorf("a node was registered for an invalid RemoteBuildNode")
	}
	for i := 1; i <= 2; i++ {
		s.WaitNodeReady(t, s.Host(t, i)["NAME"], corev1.ConditionTrue, nil, 10*time.Second)
	}
}

// A RemoteBuildNode named like a Node that is not a remote build node
// (another kubelet's) is refused: the Node keeps its labels, taints and
// pods, and deleting the RemoteBuildNode leaves the Node alone.
func TestNodeNameTakenRefused(t *testing.T) {
	s := newStack(t)
	name := framework.UniqueName("e2e-taken")
	// A Node another agent registered: no rbn label, one pod bound to it.
	s.Apply(t, fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata: {name: %s, labels: {e2e: other-kubelet}}\n", name))
	t.Cleanup(func() { _, _ = s.KubectlErr("delete", "node", name, "--ignore-not-found") })
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: bound, namespace: %s}\nspec:\n  nodeName: %s\n  containers: [{name: c, image: %s}]\n", ns, name, framework.TestImage))
	// No kubelet confirms its deletion: force it, before the namespace goes.
	t.Cleanup(func() {
		_, _ = s.KubectlErr("-n", ns, "delete", "pod", "bound", "--force", "--grace-period=0", "--ignore-not-found")
	})
	// The same spec as build host 1's node: a working host, which rbn
	// would serve under that name if it took the Node over.
	s.registerAs(t, name, 1)
	framework.Eventually(t, name+" Invalid: NodeNameTaken", 60*time.Second, func() (bool, string) {
		r, _ := s.RBN(t, name)
		return r.Status.Phase == rbnv1.PhaseInvalid && r.Status.LastError != nil && r.Status.LastError.Reason == "NodeNameTaken", fmt.Sprintf("%+v", r.Status)
	})
	untouched := func(when string) {
		t.Helper()
		n, ok := s.Node(t, name)
		if !ok {
			t.Fatalf("%s: the other Node is gone", when)
		}
		// (The node lifecycle controller may taint it: it has no kubelet.)
		rbnTaint := slices.ContainsFunc(n.Spec.Taints, func(tn corev1.Taint) bool { return strings.HasPrefix(tn.Key, "rbn.dev/") })
		if n.Labels["e2e"] != "other-kubelet" || n.Labels[rbnv1.LabelRemoteBuildNode] != "" || rbnTaint {
			t.Errorf("%s: the other Node was changed: labels %v, taints %v", when, n.Labels, n.Spec.Taints)
		}
		if _, err := s.Client.CoreV1().Pods(ns).Get(context.Background(), "bound", metav1.GetOptions{}); err != nil {
			t.Errorf("%s: its pod: %v", when, err)
		}
	}
	untouched("refused")
	s.Kubectl(t, "delete", "remotebuildnode", name, "--wait=true", "--timeout=60s")
	untouched("after the RemoteBuildNode's deletion")
}

// Deleting a RemoteBuildNode removes its node and lease, and what its pods
// left on the host.
func TestDeleteRemoteBuildNodeRemovesNode(t *testing.T) {
	s := newStack(t)
	name := framework.UniqueName("e2e-delete")
	s.registerExtra(t, name, 2, framework.ReadFile(t, s.Host(t, 2)["KNOWN_HOSTS"]), "")
	s.WaitNodeReady(t, name, corev1.ConditionTrue, nil, 30*time.Second)
	// A pod running on it, with a volume: its podman pod, containers and
	// volume are on the host when the node goes.
	ns := s.Namespace(t)
	p := framework.JobPod(ns, "left", name, nil, []string{"sleep", "3600"})
	p.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitPodPhase(t, ns, "left", corev1.PodRunning, 2*time.Minute)
	onHost := func() string {
		t.Helper()
		label := "label=rbn.dev/node=" + name
		return strings.TrimSpace(s.MustHostPodman(t, 2, "ps", "-a", "--filter", label, "--format", "{{.Names}}") +
			s.MustHostPodman(t, 2, "volume", "ls", "--filter", label, "--format", "{{.Name}}") +
			s.MustHostPodman(t, 2, "network", "ls", "--filter", label, "--format", "{{.Name}}"))
	}
	if left := onHost(); !strings.Contains(left, provider.PodNetworkName(name)) || !strings.Contains(left, "\n") {
		t.Fatalf("the pod's containers, volume and the node's network are not on host 2 under the node's label:\n%s", left)
	}
	blocks := func() map[string]string {
		cm, err := s.Client.CoreV1().ConfigMaps(framework.RBNNamespace).Get(context.Background(), podnet.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data
	}
	if _, ok := blocks()[name]; !ok {
		t.Fatalf("node %s has no block of the pod network: %v", name, blocks())
	}

	fault := framework.RecordFault(t, "RemoteBuildNode deleted with running pods")
	fault.Jobs(1)
	deleted := time.Now()
	s.Kubectl(t, "delete", "remotebuildnode", name, "--wait=true", "--timeout=60s")
	framework.Eventually(t, "node "+name+" gone", 30*time.Second, func() (bool, string) {
		_, ok := s.Node(t, name)
		return !ok, "still there"
	})
	fault.Figure(fmt.Sprintf("Node gone %.1f s after the deletion", time.Since(deleted).Seconds()))
	_, err := s.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(context.Background(), name, metav1.GetOptions{})
	if err == nil {
		t.Errorf("lease %s left behind", name)
	}
	if s.InCluster { // nodeServices, as manifests/ sets it
		if _, err := s.Client.CoreV1().Services(framework.RBNNamespace).Get(context.Background(), nodeservice.Name(name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("node Service %s left behind (%v)", nodeservice.Name(name), err)
		}
		if _, err := s.Client.DiscoveryV1().EndpointSlices(framework.RBNNamespace).Get(context.Background(), nodeservice.Name(name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("node EndpointSlice %s left behind (%v)", nodeservice.Name(name), err)
		}
	}
	// Nothing would sweep them later: they go with the node.
	left := onHost()
	fault.Orphans(len(strings.Fields(left)))
	if left != "" {
		t.Errorf("left on host 2 after the RemoteBuildNode's deletion:\n%s", left)
	}
	if b, ok := blocks()[name]; ok {
		t.Errorf("node %s's block %s not released", name, b)
	}
}

// Two RemoteBuildNodes naming one host (same address, port, user, key and
// known_hosts) share one SSH connection; deleting one leaves the other's
// node and the connection as they were.
func TestNodesOnOneHostShareItsConnection(t *testing.T) {
	s := newStack(t)
	h := s.Host(t, 2)
	name := framework.UniqueName("e2e-shared")
	s.Apply(t, fmt.Sprintf(`apiVersion: rbn.dev/v1alpha1
kind: RemoteBuildNode
metadata: {name: %s}
spec:
  address: %s
  port: %s
  podmanSocket: %s
  sshSecretRef: {name: %s-ssh, namespace: rbn-system}
`, name, h["ADDRESS"], h["PORT"], h["PODMAN_SOCKET"], h["NAME"]))
	t.Cleanup(func() {
		_, _ = s.KubectlErr("delete", "remotebuildnode", name, "--ignore-not-found", "--wait=true", "--timeout=60s")
	})
	s.WaitNodeReady(t, name, corev1.ConditionTrue, nil, 30*time.Second)
	s.WaitNodeReady(t, h["NAME"], corev1.ConditionTrue, nil, 10*time.Second)
	peer := h["ADDRESS"] + ":" + h["PORT"]
	before := s.kubeletConnections(t, peer)
	for pid, conns := range before {
		if len(conns) != 1 {
			t.Fatalf("rbn-kubelet (pid %d) holds %d connections to %s for two nodes on it, want 1: %v", pid, len(conns), peer, conns)
		}
	}
	s.Kubectl(t, "delete", "remotebuildnode", name, "--wait=true", "--timeout=60s")
	framework.Eventually(t, "node "+name+" gone", 30*time.Second, func() (bool, string) {
		_, ok := s.Node(t, name)
		return !ok, "still there"
	})
	s.WaitNodeReady(t, h["NAME"], corev1.ConditionTrue, nil, 10*time.Second)
	after := s.kubeletConnections(t, peer)
	for pid, conns := range before {
		if len(after[pid]) != 1 || after[pid][0] != conns[0] {
			t.Errorf("after deleting the other node, rbn-kubelet (pid %d) has connections %v, want the same one %v", pid, after[pid], conns)
		}
	}
}

// kubeletConnections lists, per rbn-kubelet process (one per replica in
// the in-cluster mode: each keeps every node's host warm), the local ends
// of its established TCP connections to peer (host:port), from ss.
func (s *stack) kubeletConnections(t *testing.T, peer string) map[int][]string {
	t.Helper()
	pids, err := s.KubeletPIDs()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]string{}
	for _, pid := range pids {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conns, err := framework.TCPConns(ctx, pid)
		cancel()
		if err != nil {
			t.Fatalf("ss: %v", err)
		}
		out[pid] = nil
		for _, c := range conns {
			if c.Peer == peer {
				out[pid] = append(out[pid], c.Local)
			}
		}
	}
	return out
}

// A node's labels and taints follow its RemoteBuildNode's spec, removals
// included, while labels and taints others put on the Node stay.
func TestNodeLabelsAndTaintsFollowSpec(t *testing.T) {
	s := newStack(t)
	name := framework.UniqueName("e2e-labels")
	spec := func(labels, taints string) string {
		return "  labels: {" + labels + "}\n  taints: [" + taints + "]"
	}
	s.registerExtra(t, name, 2, framework.ReadFile(t, s.Host(t, 2)["KNOWN_HOSTS"]),
		spec("team: a, tier: fast", "{key: rbn.dev/dedicated, value: a, effect: NoSchedule}, {key: drain, effect: NoExecute}"))
	s.WaitNodeReady(t, name, corev1.ConditionTrue, nil, 30*time.Second)
	s.Kubectl(t, "label", "node", name, "owner=someone-else")
	s.Kubectl(t, "taint", "node", name, "other=x:PreferNoSchedule")

	s.registerExtra(t, name, 2, framework.ReadFile(t, s.Host(t, 2)["KNOWN_HOSTS"]),
		spec("team: b", "{key: rbn.dev/dedicated, value: b, effect: NoSchedule}"))
	framework.Eventually(t, "node "+name+" to follow the new spec", 60*time.Second, func() (bool, string) {
		n, ok := s.Node(t, name)
		if !ok {
			return false, "no node"
		}
		taints := map[string]string{}
		for _, tn := range n.Spec.Taints {
			taints[tn.Key] = tn.Value + ":" + string(tn.Effect)
		}
		_, tier := n.Labels["tier"]
		_, drain := taints["drain"]
		state := fmt.Sprintf("labels %v, taints %v", n.Labels, taints)
		return n.Labels["team"] == "b" && !tier && n.Labels["owner"] == "someone-else" &&
			taints["rbn.dev/dedicated"] == "b:NoSchedule" && !drain && taints["other"] == "x:PreferNoSchedule", state
	})
}
