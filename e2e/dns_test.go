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
)

// The pod's resolv.conf on a remote build node, as the kubelet forms it:
// dnsPolicy None gives exactly the pod's dnsConfig; dnsPolicy Default
// merges the dnsConfig onto the build host's resolvers, which a pod without
// dnsConfig shows as podman gives them.
func TestPodDNSConfig(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	const dnsConfig = `
  dnsConfig:
    nameservers: [192.0.2.53]
    searches: [rbn-e2e.example]
    options: [{name: ndots, value: "3"}]`
	// Each pod prints its resolv.conf.
	pod := func(name string, policy corev1.DNSPolicy, config string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:%s
  restartPolicy: Never
  dnsPolicy: %s%s
  containers: [{name: main, image: %s, command: [cat, /etc/resolv.conf]}]
`, name, ns, framework.PodSpec, policy, config, framework.TestImage)
	}
	s.Apply(t, strings.Join([]string{
		pod("dns-none", corev1.DNSNone, dnsConfig),
		pod("dns-default", corev1.DNSDefault, dnsConfig),
		pod("dns-host", corev1.DNSDefault, ""),
	}, "---\n"))

	resolvConf := func(name string) string {
		t.Helper()
		s.WaitPodPhase(t, ns, name, corev1.PodSucceeded, 2*time.Minute)
		return s.Kubectl(t, "-n", ns, "logs", name)
	}

	// None: the dnsConfig and nothing of the host's (podman writes the
	// search line first, as containerd does).
	none := resolvConf("dns-none")
	if got, want := lines(none), []string{"search rbn-e2e.example", "nameserver 192.0.2.53", "options ndots:3"}; !slices.Equal(got, want) {
		t.Errorf("dnsPolicy None: resolv.conf\n%s\nwant the lines %q", none, want)
	}

	// Default: the host's resolvers (as the pod without dnsConfig has
	// them), the pod's nameserver and search appended, its ndots winning.
	host := parseResolv(resolvConf("dns-host"))
	merged := resolvConf("dns-default")
	got := parseResolv(merged)
	want := resolv{
		servers: appendNew(host.servers, "192.0.2.53"),
		search:  appendNew(host.search, "rbn-e2e.example"),
		options: withOption(host.options, "ndots:3"),
	}
	if len(want.servers) > 3 {
		want.servers = want.servers[:3] // the kubelet's limit (DNSConfigForming event)
	}
	if slices.Equal(host.servers, []string{"8.8.8.8", "8.8.4.4"}) && slices.Equal(got.servers, []string{"192.0.2.53"}) {
		// podman's fallback for a host without a nameserver a pod can
		// reach: not added to the pod's own.
		want.servers = got.servers
	}
	if !slices.Equal(got.servers, want.servers) || !slices.Equal(got.search, want.search) || !slices.Equal(got.options, want.options) {
		t.Errorf("dnsPolicy Default with dnsConfig: resolv.conf\n%s\nwant nameservers %q, search %q, options %q (the host's as a pod sees them: %+v)",
			merged, want.servers, want.search, want.options, host)
	}
}

// lines are the text's lines, trimmed, without empty ones.
func lines(text string) []string {
	var out []string
	for l := range strings.Lines(text) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// resolv is what a resolv.conf podman wrote says.
type resolv struct{ servers, search, options []string }

func parseResolv(text string) resolv {
	var r resolv
	for _, l := range lines(text) {
		f := strings.Fields(l)
		switch f[0] {
		case "nameserver":
			r.servers = append(r.servers, f[1:]...)
		case "search":
			r.search = f[1:]
		case "options":
			r.options = f[1:]
		}
	}
	return r
}

// appendNew appends v to list unless it is there.
func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return slices.Clone(list)
	}
	return append(slices.Clone(list), v)
}

// withOption sets option (name:value) in options: in place of one of its
// name, else at the end.
func withOption(options []string, option string) []string {
	name, _, _ := strings.Cut(option, ":")
	out := slices.Clone(options)
	if i := slices.IndexFunc(out, func(o string) bool { n, _, _ := strings.Cut(o, ":"); return n == name }); i >= 0 {
		out[i] = option
		return out
	}
	return append(out, option)
}
