package pod

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/component-helpers/node/util/sysctl"
)

// The pod-level settings the kubelet gives a pod's sandbox, which rbn gives
// its podman pod: /etc/hosts entries, a shared PID namespace, sysctls, the
// OCI runtime of its RuntimeClass and its resolv.conf (dns.go).

const (
	// ReasonSysctlForbidden is the kubelet's reason for a pod it rejects for
	// a sysctl the node does not allow.
	ReasonSysctlForbidden = "SysctlForbidden"
	// ReasonRuntimeHandlerNotFound: the handler of the pod's RuntimeClass is
	// not an OCI runtime of the host's podman. (A kubelet retries such a pod
	// forever, with FailedCreatePodSandBox events; the handlers of a build
	// host do not change under a running rbn, so the pod fails instead.)
	ReasonRuntimeHandlerNotFound = "RuntimeHandlerNotFound"
)

// ErrNoRuntimeHandler: the pod names a RuntimeClass but the caller passed
// no Input.RuntimeHandler. A caller bug, like ErrNoServiceAccountToken.
var ErrNoRuntimeHandler = errors.New("pod names a RuntimeClass but no runtime handler was provided")

// safeSysctls is the kubelet's safe set (pkg/kubelet/sysctl, Kubernetes
// 1.32 and later): namespaced, and isolated from the other pods of the node,
// so every kubelet allows them. The kubelet leaves out
// ip_local_reserved_ports, tcp_keepalive_* and tcp_fin_timeout on kernels
// older than 3.16 to 4.6, where they are not namespaced; build hosts run
// newer ones, and rbn does not read the host's kernel version here.
var safeSysctls = []string{
	"kernel.shm_rmid_forced",
	"net.ipv4.ip_local_port_range",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.ping_group_range",
	"net.ipv4.ip_unprivileged_port_start",
	"net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes",
	"net.ipv4.tcp_rmem",
	"net.ipv4.tcp_wmem",
}

// sandbox fills the plan's pod-level settings.
func (t *translator) sandbox(plan *Plan) error {
	s := &t.pod.Spec
	var err error
	if plan.HostAliases, err = hostAliases(s.HostAliases); err != nil {
		return err
	}
	if err := t.clusterServices(plan); err != nil {
		return err
	}
	plan.ShareProcessNamespace = s.ShareProcessNamespace != nil && *s.ShareProcessNamespace
	if plan.Resources, err = podResources(s.Resources); err != nil {
		return err
	}
	if plan.Resources != nil && t.in.RootlessHost {
		// podman silently skips a rootless pod's cgroup (and its limits)
		// with cgroupfs, and cannot delegate cpu limits on cgroup v1.
		return unsupported("spec.resources", ReasonUnsupportedField,
			"pod-level resources cannot be enforced on this build host: its podman runs rootless and creates no pod cgroup")
	}
	if s.SecurityContext != nil {
		plan.FSGroup = s.SecurityContext.FSGroup
		if plan.Sysctls, err = sysctls(s.SecurityContext.Sysctls, t.in.AllowedUnsafeSysctls); err != nil {
			return err
		}
	}
	plan.ContainerLogMaxBytes = t.in.ContainerLogMaxBytes
	if plan.OCIRuntime, err = t.runtimeHandler(); err != nil {
		return err
	}
	plan.DNS, err = t.dns()
	return err
}

// hostAliases renders spec.hostAliases as podman's host entries, one
// "hostname:ip" per hostname: the kubelet writes one line per alias, its
// hostnames after the IP, in the pod's order, and a line per hostname
// resolves the same. An alias without hostnames adds nothing to resolve.
//
// podman writes these entries at the top of /etc/hosts, before its own
// (localhost, the pod's hostname), where the kubelet writes them after its
// own: an alias for one of those names wins on rbn, and loses on a kubelet.
func hostAliases(aliases []corev1.HostAlias) ([]string, error) {
	var out []string
	for i, a := range aliases {
		field := fmt.Sprintf("spec.hostAliases[%d]", i)
		// Checked again (the API validates both) because podman splits
		// an entry at its first ':' and hostnames at ';'.
		if _, err := netip.ParseAddr(a.IP); err != nil {
			return nil, unsupported(field+".ip", ReasonInvalidSpec, "hostAlias IP %q is not an IP address", a.IP)
		}
		for j, h := range a.Hostnames {
			if errs := validation.IsDNS1123Subdomain(h); len(errs) > 0 {
				return nil, unsupported(fmt.Sprintf("%s.hostnames[%d]", field, j), ReasonInvalidSpec,
					"hostAlias hostname %q is invalid: %s", h, strings.Join(errs, "; "))
			}
			out = append(out, h+":"+a.IP)
		}
	}
	return out, nil
}

// sysctls checks the pod's sysctls as the kubelet's admission does: the
// safe ones, and those the node allows (allowedUnsafe: names, or prefixes
// ending in "*"); any other fails the pod (SysctlForbidden). Names are
// returned dotted, as the kubelet passes them to the runtime.
func sysctls(in []corev1.Sysctl, allowedUnsafe []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for i, sc := range in {
		name := sysctl.NormalizeName(sc.Name)
		if !sysctlAllowed(name, allowedUnsafe) {
			return nil, unsupported(fmt.Sprintf("spec.securityContext.sysctls[%d]", i), ReasonSysctlForbidden,
				"forbidden sysctl: %q not allowlisted (remote build nodes allow the kubelet's safe sysctls and the node's allowedUnsafeSysctls)", name)
		}
		out[name] = sc.Value
	}
	return out, nil
}

func sysctlAllowed(name string, allowedUnsafe []string) bool {
	if slices.Contains(safeSysctls, name) {
		return true
	}
	for _, a := range allowedUnsafe {
		prefix, isPattern := strings.CutSuffix(sysctl.NormalizeName(a), "*")
		if isPattern && strings.HasPrefix(name, prefix) || !isPattern && name == prefix {
			return true
		}
	}
	return false
}

// runtimeHandler is the OCI runtime of the pod's RuntimeClass, which must
// be one of the host's.
func (t *translator) runtimeHandler() (string, error) {
	name := t.pod.Spec.RuntimeClassName
	if name == nil || *name == "" {
		return "", nil
	}
	h := t.in.RuntimeHandler
	if h == "" {
		return "", fmt.Errorf("translate pod %s/%s: RuntimeClass %q: %w", t.pod.Namespace, t.pod.Name, *name, ErrNoRuntimeHandler)
	}
	if !slices.Contains(t.in.HostRuntimes, h) {
		have := "none known"
		if len(t.in.HostRuntimes) > 0 {
			have = strings.Join(t.in.HostRuntimes, ", ")
		}
		return "", unsupported("spec.runtimeClassName", ReasonRuntimeHandlerNotFound,
			"RuntimeClass %q has handler %q, which is not an OCI runtime of the build host's podman (it has: %s)", *name, h, have)
	}
	return h, nil
}
