//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// Pod-level PodSpec fields on a remote build node, seen from inside the
// pod: hostAliases in /etc/hosts, a shared PID namespace, namespaced
// sysctls, supplemental groups, setHostnameAsFQDN; and refusals with the
// kubelet's reasons.
func TestPodLevelFields(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: pod-level, namespace: %[1]s}
spec:%[2]s
  terminationGracePeriodSeconds: 1
  shareProcessNamespace: true
  hostAliases:
    - ip: 10.1.2.3
      hostnames: [foo.local, bar.local]
  securityContext:
    supplementalGroups: [4000, 5000]
    sysctls:
      - {name: net.ipv4.ip_unprivileged_port_start, value: "80"}
      - {name: kernel.shm_rmid_forced, value: "1"}
  containers:
    - name: main
      image: %[3]s
      command: [sleep, "3600"]
      securityContext: {runAsUser: 1000, runAsGroup: 3000}
    - name: peer
      image: %[3]s
      command: [sleep, "3601"]
---
apiVersion: v1
kind: Pod
metadata: {name: unsafe-sysctl, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  securityContext:
    sysctls: [{name: net.core.somaxconn, value: "1024"}]
  containers: [{name: main, image: %[3]s, command: ["true"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: strict-groups, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  securityContext:
    supplementalGroupsPolicy: Strict
    supplementalGroups: [4000]
  containers: [{name: main, image: %[3]s, command: ["true"], securityContext: {runAsUser: 1000}}]
---
apiVersion: v1
kind: Pod
metadata: {name: fqdn, namespace: %[1]s}
spec:%[2]s
  terminationGracePeriodSeconds: 1
  hostname: ims
  subdomain: customize
  setHostnameAsFQDN: true
  containers: [{name: main, image: %[3]s, command: [sleep, "3600"]}]
`, ns, framework.PodSpec, framework.TestImage))

	s.WaitPodPhase(t, ns, "pod-level", corev1.PodRunning, 2*time.Minute)
	in := func(container string, cmd ...string) string {
		t.Helper()
		return s.Kubectl(t, append([]string{"-n", ns, "exec", "pod-level", "-c", container, "--"}, cmd...)...)
	}
	hosts := in("main", "cat", "/etc/hosts")
	foo, bar := strings.Index(hosts, "10.1.2.3\tfoo.local"), strings.Index(hosts, "10.1.2.3\tbar.local")
	if foo < 0 || bar < foo {
		t.Errorf("/etc/hosts lacks the pod's hostAliases in order:\n%s", hosts)
	}
	if ps := in("main", "ps", "-o", "pid,args"); !strings.Contains(ps, "sleep 3601") {
		t.Errorf("main does not see peer's process (shareProcessNamespace):\n%s", ps)
	}
	for _, c := range []string{"main", "peer"} {
		if got := strings.TrimSpace(in(c, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start")); got != "80" {
			t.Errorf("%s: net.ipv4.ip_unprivileged_port_start = %s, want 80", c, got)
		}
		if got := strings.TrimSpace(in(c, "cat", "/proc/sys/kernel/shm_rmid_forced")); got != "1" {
			t.Errorf("%s: kernel.shm_rmid_forced = %s, want 1", c, got)
		}
	}
	if got := strings.Fields(in("main", "id", "-G")); !slices.Equal(got, []string{"3000", "4000", "5000"}) {
		t.Errorf("main's groups %v, want [3000 4000 5000]", got)
	}

	// The FQDN is the hostname, and resolves in the pod's /etc/hosts.
	s.WaitPodPhase(t, ns, "fqdn", corev1.PodRunning, 2*time.Minute)
	fqdn := "ims.customize." + ns + ".svc.cluster.local"
	if got := strings.TrimSpace(s.Kubectl(t, "-n", ns, "exec", "fqdn", "--", "hostname")); got != fqdn {
		t.Errorf("setHostnameAsFQDN: hostname %q, want %q", got, fqdn)
	}
	if hosts := s.Kubectl(t, "-n", ns, "exec", "fqdn", "--", "cat", "/etc/hosts"); !strings.Contains(hosts, fqdn) {
		t.Errorf("setHostnameAsFQDN: /etc/hosts does not name %s:\n%s", fqdn, hosts)
	}

	for name, reason := range map[string]string{"unsafe-sysctl": "SysctlForbidden", "strict-groups": pod.ReasonUnsupportedField} {
		p := s.WaitPodPhase(t, ns, name, corev1.PodFailed, 2*time.Minute)
		if p.Status.Reason != reason {
			t.Errorf("%s: reason %q (%s), want %s", name, p.Status.Reason, p.Status.Message, reason)
		}
	}
}

// RuntimeClasses on remote build nodes: the node lists the handlers its
// host's podman has; a pod's RuntimeClass picks the OCI runtime of its
// containers, and one the host lacks fails the pod with a clear reason.
func TestRuntimeClass(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	nodes := s.buildNodes(t)
	n, _ := s.Node(t, nodes[0])
	var handlers []string
	for _, h := range n.Status.RuntimeHandlers {
		handlers = append(handlers, h.Name)
	}
	if !slices.Contains(handlers, "runc") {
		t.Fatalf("node %s runtime handlers %q, want runc (the hosts' podman default)", n.Name, handlers)
	}
	suffix := strings.TrimPrefix(ns, "e2e-")
	s.Apply(t, fmt.Sprintf(`apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: runc-%[4]s}
handler: runc
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: crun-%[4]s}
handler: crun
---
apiVersion: v1
kind: Pod
metadata: {name: runc, namespace: %[1]s}
spec:%[2]s
  runtimeClassName: runc-%[4]s
  restartPolicy: Never
  containers: [{name: main, image: %[3]s, command: ["true"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: crun, namespace: %[1]s}
spec:%[2]s
  runtimeClassName: crun-%[4]s
  restartPolicy: Never
  containers: [{name: main, image: %[3]s, command: ["true"]}]
`, ns, framework.PodSpec, framework.TestImage, suffix))
	t.Cleanup(func() {
		_, _ = s.KubectlErr("delete", "runtimeclass", "runc-"+suffix, "crun-"+suffix)
	})
	p := s.WaitPodPhase(t, ns, "runc", corev1.PodSucceeded, 2*time.Minute)
	host := s.HostIndex(t, p.Spec.NodeName)
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "podman://")
	if got := strings.TrimSpace(s.MustHostPodman(t, host, "inspect", "--format", "{{.OCIRuntime}}", id)); got != "runc" {
		t.Errorf("the container ran with %q, want runc", got)
	}
	p = s.WaitPodPhase(t, ns, "crun", corev1.PodFailed, 2*time.Minute)
	if p.Status.Reason != "RuntimeHandlerNotFound" || !strings.Contains(p.Status.Message, `"crun"`) {
		t.Errorf("crun: reason %q, message %q; want RuntimeHandlerNotFound naming crun", p.Status.Reason, p.Status.Message)
	}
}
