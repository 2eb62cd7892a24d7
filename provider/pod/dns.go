package pod

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The pod's resolv.conf, as the kubelet forms it (pkg/kubelet/network/dns):
// for dnsPolicy None, exactly the pod's dnsConfig; for the other policies,
// the dnsConfig merged onto the build host's resolvers (rbn's nodes have no
// cluster DNS, so ClusterFirst is Default, as on a kubelet without
// clusterDNS); then the kubelet's limits. Without a dnsConfig, podman
// writes the pod's resolv.conf from the host's itself, and Plan.DNS is nil.

// WarningDNSConfigForming is the kubelet's reason for the Warning event of
// a resolv.conf cut to its limits.
const WarningDNSConfigForming = "DNSConfigForming"

// The kubelet's limits (k8s.io/kubernetes pkg/apis/core/validation:
// MaxDNSNameservers, MaxDNSSearchPaths, MaxDNSSearchListChars).
const (
	maxDNSNameservers     = 3
	maxDNSSearchPaths     = 32
	maxDNSSearchListChars = 2048
)

// podmanFallbackNameservers are the servers podman writes for a pod whose
// host has no nameserver a pod can reach (libnetwork/resolvconf's
// defaultIPv4Dns).
var podmanFallbackNameservers = []string{"8.8.8.8", "8.8.4.4"}

// ErrNoHostDNS: the pod merges a dnsConfig onto the host's resolvers, but
// the caller passed no Input.HostDNS. A caller bug, like ErrNoRuntimeHandler.
var ErrNoHostDNS = errors.New("pod merges a dnsConfig onto the host's resolv.conf but none was provided")

// ResolvConf is the resolver configuration of a resolv.conf: its
// nameserver, search and options lines.
type ResolvConf struct {
	Nameservers []string
	Searches    []string
	// Options are "name" or "name:value".
	Options []string
}

// ParseResolvConf reads a resolv.conf as the kubelet reads its --resolv-conf
// (parseResolvConf): nameserver lines accumulate (the address, their first
// field); the last search line wins, without its "." entries and with the
// trailing dot of each domain dropped; options accumulate across options
// lines, a later option replacing an earlier one of the same name in its
// place (the kubelet's order is a map's). Lines starting with '#' are
// comments. A nameserver line without an address is skipped, where the
// kubelet fails every pod's sandbox.
func ParseResolvConf(data []byte) ResolvConf {
	var rc ResolvConf
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) >= 2 {
				rc.Nameservers = append(rc.Nameservers, f[1])
			}
		case "search":
			rc.Searches = nil
			for _, s := range f[1:] {
				if s != "." {
					rc.Searches = append(rc.Searches, strings.TrimSuffix(s, "."))
				}
			}
		case "options":
			rc.Options = mergeOptions(rc.Options, f[1:])
		}
	}
	return rc
}

// NeedsHostDNS reports whether Translate needs Input.HostDNS for the pod:
// it has a dnsConfig to merge onto the host's resolvers.
func NeedsHostDNS(pod *corev1.Pod) bool {
	return pod.Spec.DNSPolicy != corev1.DNSNone && hasDNSConfig(pod.Spec.DNSConfig)
}

func hasDNSConfig(c *corev1.PodDNSConfig) bool {
	return c != nil && len(c.Nameservers)+len(c.Searches)+len(c.Options) > 0
}

// dns is the pod's resolver configuration, nil for podman's own (the
// host's). Its DNSConfigForming warnings go to t.warnings.
func (t *translator) dns() (*ResolvConf, error) {
	s := &t.pod.Spec
	if !hasDNSConfig(s.DNSConfig) {
		// dnsPolicy None without one is the kubelet's empty
		// configuration, which the runtime (containerd) answers with a
		// copy of the host's resolv.conf, as podman does.
		return nil, nil
	}
	for i, ns := range s.DNSConfig.Nameservers {
		// Checked again (the API validates it): podman takes IPs.
		if net.ParseIP(ns) == nil {
			return nil, unsupported(fmt.Sprintf("spec.dnsConfig.nameservers[%d]", i), ReasonInvalidSpec, "nameserver %q is not an IP address", ns)
		}
	}
	var base ResolvConf
	none := s.DNSPolicy == corev1.DNSNone
	if !none {
		if t.in.HostDNS == nil {
			return nil, fmt.Errorf("translate pod %s/%s: %w", t.pod.Namespace, t.pod.Name, ErrNoHostDNS)
		}
		base = *t.in.HostDNS
		base.Nameservers = podReachable(base.Nameservers)
	}
	conf, warnings := MergeDNSConfig(base, s.DNSConfig)
	for _, w := range warnings {
		t.warnings = append(t.warnings, Warning{Field: "spec.dnsConfig", Reason: WarningDNSConfigForming, Message: w})
	}
	if len(conf.Nameservers) == 0 && !none {
		// The host has no server a pod reaches and the pod adds none:
		// podman's own choice for the host's resolvers.
		conf.Nameservers = slices.Clone(podmanFallbackNameservers)
	}
	return &conf, nil
}

// podReachable keeps the host's nameservers a pod can reach from its own
// network namespace, as podman keeps them (libnetwork/resolvconf's
// filterResolvDNS): not loopback ones (127.0.0.0/8, ::1), nor what is not
// an IP address (a link-local IPv6 address with a zone, fe80::1%eth0).
func podReachable(servers []string) []string {
	var out []string
	for _, s := range servers {
		if ip := net.ParseIP(s); ip != nil && !ip.IsLoopback() {
			out = append(out, s)
		}
	}
	return out
}

// MergeDNSConfig is the kubelet's appendDNSConfig and
// formDNSConfigFitsLimits: the pod's nameservers and searches appended to
// base's, each list without duplicates; its options merged with base's,
// the pod's value winning for a name base has; then at most 3 nameservers,
// and searches cut to 32 domains of at most 253 characters and 2048
// characters in all, as the kubelet cuts them. The warnings are the
// kubelet's DNSConfigForming messages for what was cut. base is not
// changed.
func MergeDNSConfig(base ResolvConf, c *corev1.PodDNSConfig) (ResolvConf, []string) {
	out := ResolvConf{
		Nameservers: slices.Clone(base.Nameservers),
		Searches:    slices.Clone(base.Searches),
		Options:     slices.Clone(base.Options),
	}
	if c != nil {
		out.Nameservers = omitDuplicates(append(out.Nameservers, c.Nameservers...))
		out.Searches = omitDuplicates(append(out.Searches, c.Searches...))
		opts := make([]string, 0, len(c.Options))
		for _, o := range c.Options {
			if o.Value != nil && *o.Value != "" {
				opts = append(opts, o.Name+":"+*o.Value)
			} else {
				opts = append(opts, o.Name)
			}
		}
		out.Options = mergeOptions(out.Options, opts)
	}
	var warnings []string
	if len(out.Nameservers) > maxDNSNameservers {
		out.Nameservers = out.Nameservers[:maxDNSNameservers]
		warnings = append(warnings, "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: "+
			strings.Join(out.Nameservers, " "))
	}
	var cut bool
	if out.Searches, cut = searchesFitLimits(out.Searches); cut {
		warnings = append(warnings, "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: "+
			strings.Join(out.Searches, " "))
	}
	return out, warnings
}

// searchesFitLimits cuts searches as the kubelet's formDNSSearchFitsLimits:
// to the first 32; without those longer than a DNS subdomain (glibc 2.28
// aborts on a search path over 255 characters); then domains off the end
// until the line fits 2048 characters. It reports whether it cut any.
func searchesFitLimits(searches []string) ([]string, bool) {
	cut := false
	if len(searches) > maxDNSSearchPaths {
		searches, cut = searches[:maxDNSSearchPaths], true
	}
	kept := searches[:0]
	for _, s := range searches {
		if len(s) > validation.DNS1123SubdomainMaxLength {
			cut = true
			continue
		}
		kept = append(kept, s)
	}
	searches = kept
	for len(searches) > 0 && len(strings.Join(searches, " ")) > maxDNSSearchListChars {
		searches, cut = searches[:len(searches)-1], true
	}
	return searches, cut
}

func omitDuplicates(list []string) []string {
	seen := make(map[string]bool, len(list))
	out := list[:0]
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// mergeOptions adds options to existing, each "name" or "name:value"
// (split at the first ':'): one of a name existing has replaces it in its
// place, a new one is appended.
func mergeOptions(existing, options []string) []string {
	out := slices.Clone(existing)
	for _, o := range options {
		name, _, _ := strings.Cut(o, ":")
		if i := slices.IndexFunc(out, func(e string) bool { n, _, _ := strings.Cut(e, ":"); return n == name }); i >= 0 {
			out[i] = o
		} else {
			out = append(out, o)
		}
	}
	return out
}
