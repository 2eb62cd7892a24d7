package provider

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// withRuntimeClass names a RuntimeClass in the pod.
func withRuntimeClass(pd *corev1.Pod, name string) *corev1.Pod {
	pd.Spec.RuntimeClassName = &name
	return pd
}

func (h *harness) addRuntimeClass(name, handler string) {
	h.t.Helper()
	if err := h.objects.Add(&nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler}); err != nil {
		h.t.Fatal(err)
	}
}

// hostWithRuntimes is a host whose podman reports these OCI runtimes.
func hostWithRuntimes(runtimes ...string) *podman.HostInfo {
	return &podman.HostInfo{PodmanVersion: "5.4.0", OCIRuntime: runtimes[0], OCIRuntimes: runtimes}
}

// TestWorkerRuntimeClass: the RuntimeClass is resolved through the lister
// to its handler, which every container (init ones too) runs with.
func TestWorkerRuntimeClass(t *testing.T) {
	t.Run("the handler runs every container", func(t *testing.T) {
		h := newHarness(t, withRuntimeClass(withInit(testPod(corev1.RestartPolicyNever, "main"), "setup"), "fast"))
		h.rt.info = hostWithRuntimes("runc", "crun")
		h.addRuntimeClass("fast", "crun")
		h.rt.images["registry.test/main:1"], h.rt.images["registry.test/setup:1"] = true, true
		h.sync()
		h.rt.exit(ctrName("setup", 0), 0)
		h.sync()
		h.wantPhase(corev1.PodRunning)
		for _, name := range []string{ctrName("setup", 0), ctrName("main", 0)} {
			if got := h.rt.specs[name].OCIRuntime; got != "crun" {
				t.Errorf("%s: OCI runtime %q, want crun", name, got)
			}
		}
	})
	t.Run("a pod without RuntimeClass gets podman's default", func(t *testing.T) {
		h := newHarness(t, testPod(corev1.RestartPolicyNever, "main"))
		h.rt.info = hostWithRuntimes("runc", "crun")
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		if got := h.rt.specs[ctrName("main", 0)].OCIRuntime; got != "" {
			t.Errorf("OCI runtime %q, want podman's default (empty)", got)
		}
	})
	t.Run("a missing RuntimeClass keeps the pod waiting, as on a kubelet", func(t *testing.T) {
		h := newHarness(t, withRuntimeClass(testPod(corev1.RestartPolicyNever, "main"), "fast"))
		h.rt.info = hostWithRuntimes("runc", "crun")
		h.rt.images["registry.test/main:1"] = true
		if r := h.sync(); r.next != 5*time.Second {
			t.Fatalf("next sync in %s, want 5s (the sync retry)", r.next)
		}
		h.wantEvent(h.events(), `Warning FailedCreatePodSandBox failed to look up RuntimeClass: runtimeclass.node.k8s.io "fast" not found`)
		h.wantCalls("create-pod", 0)
		if phase := h.status().Phase; phase == corev1.PodFailed {
			t.Fatalf("phase %s: a missing RuntimeClass must not fail the pod", phase)
		}
		// Created later: the retry finds it.
		h.addRuntimeClass("fast", "crun")
		h.clock.Step(5 * time.Second)
		h.sync()
		h.wantPhase(corev1.PodRunning)
		if got := h.rt.specs[ctrName("main", 0)].OCIRuntime; got != "crun" {
			t.Errorf("OCI runtime %q, want crun", got)
		}
	})
	t.Run("a handler the host lacks fails the pod", func(t *testing.T) {
		h := newHarness(t, withRuntimeClass(testPod(corev1.RestartPolicyNever, "main"), "gvisor"))
		h.rt.info = hostWithRuntimes("runc")
		h.addRuntimeClass("gvisor", "runsc")
		h.sync()
		h.wantPhase(corev1.PodFailed)
		st := h.status()
		if st.Reason != pod.ReasonRuntimeHandlerNotFound || !strings.Contains(st.Message, `handler "runsc"`) || !strings.Contains(st.Message, "it has: runc") {
			t.Errorf("reason %q message %q", st.Reason, st.Message)
		}
		h.wantCalls("create-pod", 0)
	})
	t.Run("the host's runtimes not known yet: retried", func(t *testing.T) {
		h := newHarness(t, withRuntimeClass(testPod(corev1.RestartPolicyNever, "main"), "fast"))
		h.addRuntimeClass("fast", "crun")
		h.rt.noInfo = true
		h.sync()
		h.wantEvent(h.events(), `Warning FailedCreatePodSandBox RuntimeClass "fast": the host's OCI runtimes are not known yet`)
		h.wantCalls("create-pod", 0)
		h.rt.noInfo, h.rt.info = false, hostWithRuntimes("crun")
		h.rt.images["registry.test/main:1"] = true
		h.clock.Step(5 * time.Second)
		h.sync()
		h.wantPhase(corev1.PodRunning)
	})
}

// TestWorkerPodLevelSettings: the pod's /etc/hosts entries, shared PID
// namespace and sysctls reach the podman pod, with the node's
// allowedUnsafeSysctls.
func TestWorkerPodLevelSettings(t *testing.T) {
	share := true
	pd := testPod(corev1.RestartPolicyNever, "main")
	pd.Spec.ShareProcessNamespace = &share
	pd.Spec.HostAliases = []corev1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"cache.local", "db.local"}}}
	pd.Spec.SecurityContext = &corev1.PodSecurityContext{
		SupplementalGroups: []int64{4000},
		Sysctls: []corev1.Sysctl{
			{Name: "net.ipv4.ip_unprivileged_port_start", Value: "80"},
			{Name: "net.core.somaxconn", Value: "1024"},
		},
	}
	t.Run("allowed", func(t *testing.T) {
		h := newHarness(t, pd.DeepCopy())
		h.pods.cfg.Spec.AllowedUnsafeSysctls = []string{"net.core.*"}
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.wantPhase(corev1.PodRunning)
		ps := h.rt.podSpecs[pod.PodName(testUID)]
		if ps == nil {
			t.Fatal("no podman pod created")
		}
		if want := []string{"ipc", "net", "pid", "uts"}; !slices.Equal(ps.SharedNamespaces, want) {
			t.Errorf("shared namespaces %q, want %q", ps.SharedNamespaces, want)
		}
		if want := []string{"cache.local:10.1.2.3", "db.local:10.1.2.3"}; !slices.Equal(ps.HostAdd, want) {
			t.Errorf("host entries %q, want %q", ps.HostAdd, want)
		}
		if ps.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "80" || ps.Sysctl["net.core.somaxconn"] != "1024" || len(ps.Sysctl) != 2 {
			t.Errorf("sysctls %v", ps.Sysctl)
		}
		if got := h.rt.specs[ctrName("main", 0)].Groups; !slices.Equal(got, []string{"4000"}) {
			t.Errorf("groups %q, want [4000]", got)
		}
	})
	t.Run("unsafe sysctl the node does not allow", func(t *testing.T) {
		h := newHarness(t, pd.DeepCopy())
		h.sync()
		h.wantPhase(corev1.PodFailed)
		if st := h.status(); st.Reason != pod.ReasonSysctlForbidden || !strings.Contains(st.Message, `"net.core.somaxconn" not allowlisted`) {
			t.Errorf("reason %q message %q", st.Reason, st.Message)
		}
		h.wantCalls("create-pod", 0)
	})
}

// TestWorkerPodLevelResources: spec.resources bound the podman pod's
// cgroup, and a container without limits of its own gets the pod's; a
// rootless host, where podman creates no pod cgroup, fails the pod.
func TestWorkerPodLevelResources(t *testing.T) {
	withResources := func(pd *corev1.Pod) *corev1.Pod {
		pd.Spec.Resources = &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		}
		return pd
	}
	t.Run("pod cgroup and container defaults", func(t *testing.T) {
		h := newHarness(t, withResources(testPod(corev1.RestartPolicyNever, "main")))
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.wantPhase(corev1.PodRunning)
		ps := h.rt.podSpecs[pod.PodName(testUID)]
		if ps == nil || ps.ResourceLimits == nil || ps.ResourceLimits.Memory == nil || *ps.ResourceLimits.Memory.Limit != 64<<20 ||
			ps.ResourceLimits.CPU == nil || *ps.ResourceLimits.CPU.Quota != 100000 || *ps.ResourceLimits.CPU.Shares != 512 {
			t.Fatalf("pod spec resources %+v, want memory 64Mi, quota 100000, shares 512", ps)
		}
		res := h.rt.specs[ctrName("main", 0)].ResourceLimits
		if res == nil || res.Memory == nil || *res.Memory.Limit != 64<<20 || res.CPU == nil || res.CPU.Quota == nil || *res.CPU.Quota != 100000 {
			t.Errorf("container resources %+v, want the pod's limits", res)
		}
	})
	t.Run("rootless host", func(t *testing.T) {
		h := newHarness(t, withResources(testPod(corev1.RestartPolicyNever, "main")))
		h.rt.info = &podman.HostInfo{PodmanVersion: "5.4.0", Rootless: true}
		h.sync()
		h.wantPhase(corev1.PodFailed)
		if st := h.status(); st.Reason != "UnsupportedField" || !strings.Contains(st.Message, "rootless") {
			t.Errorf("reason %q message %q", st.Reason, st.Message)
		}
		h.wantCalls("create-pod", 0)
	})
}

// TestWorkerDNSConfig: a dnsConfig merged onto the host's resolvers is
// merged onto the resolv.conf podman would read on the host (through a
// systemd-resolved stub to its upstream servers), and the podman pod gets
// the result whole; other pods cost no read of the host's files.
func TestWorkerDNSConfig(t *testing.T) {
	withDNS := func(policy corev1.DNSPolicy, c *corev1.PodDNSConfig) *corev1.Pod {
		pd := testPod(corev1.RestartPolicyNever, "main")
		pd.Spec.DNSPolicy, pd.Spec.DNSConfig = policy, c
		return pd
	}
	ndots := "3"
	config := &corev1.PodDNSConfig{
		Nameservers: []string{"192.0.2.53"}, Searches: []string{"pod.example"},
		Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &ndots}},
	}
	stub := "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
	for _, tc := range []struct {
		name    string
		policy  corev1.DNSPolicy
		files   map[string]string
		servers []string
		search  []string
		options []string
	}{
		{"through the stub to its upstream servers", corev1.DNSClusterFirst,
			map[string]string{"/etc/resolv.conf": stub, "/run/systemd/resolve/resolv.conf": "nameserver 10.0.0.2\nsearch lan\n"},
			[]string{"10.0.0.2", "192.0.2.53"}, []string{"lan", "pod.example"}, []string{"ndots:3"}},
		{"a stub without the upstream file: its servers are not reachable from the pod", corev1.DNSDefault,
			map[string]string{"/etc/resolv.conf": stub},
			[]string{"192.0.2.53"}, []string{"lan", "pod.example"}, []string{"edns0", "trust-ad", "ndots:3"}},
		{"no resolv.conf on the host", corev1.DNSDefault, nil,
			[]string{"192.0.2.53"}, []string{"pod.example"}, []string{"ndots:3"}},
		{"None: the host's is not read", corev1.DNSNone, nil,
			[]string{"192.0.2.53"}, []string{"pod.example"}, []string{"ndots:3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withDNS(tc.policy, config))
			h.rt.images["registry.test/main:1"] = true
			h.rt.contents = tc.files
			h.sync()
			h.wantPhase(corev1.PodRunning)
			ps := h.rt.podSpecs[pod.PodName(testUID)]
			if ps == nil {
				t.Fatal("no podman pod created")
			}
			var servers []string
			for _, ip := range ps.DNSServer {
				servers = append(servers, ip.String())
			}
			if !slices.Equal(servers, tc.servers) || !slices.Equal(ps.DNSSearch, tc.search) || !slices.Equal(ps.DNSOption, tc.options) {
				t.Errorf("DNS servers %q searches %q options %q; want %q %q %q", servers, ps.DNSSearch, ps.DNSOption, tc.servers, tc.search, tc.options)
			}
			if tc.policy == corev1.DNSNone {
				h.wantCalls("file-tail", 0)
			}
		})
	}
	t.Run("without dnsConfig, podman's own and no read", func(t *testing.T) {
		h := newHarness(t, testPod(corev1.RestartPolicyNever, "main"))
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.wantPhase(corev1.PodRunning)
		if ps := h.rt.podSpecs[pod.PodName(testUID)]; ps.DNSServer != nil || ps.DNSSearch != nil || ps.DNSOption != nil {
			t.Errorf("DNS servers %v searches %q options %q, want none", ps.DNSServer, ps.DNSSearch, ps.DNSOption)
		}
		h.wantCalls("file-tail", 0)
	})
	t.Run("limits: a Warning event DNSConfigForming", func(t *testing.T) {
		h := newHarness(t, withDNS(corev1.DNSDefault, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.53"}}))
		h.rt.images["registry.test/main:1"] = true
		h.rt.contents = map[string]string{"/etc/resolv.conf": "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"}
		h.sync()
		h.wantPhase(corev1.PodRunning)
		h.wantEvent(h.events(), "Warning DNSConfigForming Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.0.0.1 10.0.0.2 10.0.0.3")
	})
}
