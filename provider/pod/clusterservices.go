package pod

import (
	"fmt"
	"maps"
	"net"
	"strconv"

	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// ReasonInvalidClusterServices: the annotation rbn.dev/cluster-services is
// unusable, or names a Service rbn cannot relay to.
const ReasonInvalidClusterServices = "InvalidClusterServices"

// ClusterService is a cluster Service the pod reaches through rbn
// (annotation rbn.dev/cluster-services): the pod's /etc/hosts gives the
// Service's names a loopback address of the pod's own network namespace,
// where rbn-forward listens on the Service's TCP ports and relays each
// connection to rbn-kubelet, which connects to the Service from inside the
// cluster.
type ClusterService struct {
	Namespace, Name string
	// Address is the Service's loopback address in the pod, 127.0.100.N
	// for the pod's Nth Service.
	Address string
	// Ports are the Service's TCP ports, in the Service's order.
	Ports []int32
}

// Listen is the forwarder's listen addresses of s, "ip:port" each.
func (s ClusterService) Listen() []string {
	out := make([]string, len(s.Ports))
	for i, p := range s.Ports {
		out[i] = net.JoinHostPort(s.Address, strconv.Itoa(int(p)))
	}
	return out
}

// ReferencedServices names the Services the pod's annotation lists, for the
// caller to fetch into Input.Services; nil when it names none or the
// annotation is invalid (Translate says why).
func ReferencedServices(pd *corev1.Pod) []types.NamespacedName {
	v, ok := pd.Annotations[rbnv1.AnnotationClusterServices]
	if !ok {
		return nil
	}
	refs, _ := rbnv1.ParseClusterServices(v, pd.Namespace)
	return refs
}

// clusterServices fills plan.ClusterServices from the annotation and the
// Services in the input, and gives each Service's names an /etc/hosts entry
// with its address: the names the pod's DNS search path would resolve
// (name, for a Service of the pod's namespace; name.namespace,
// name.namespace.svc and the fully qualified name), since /etc/hosts is
// looked up without the search path. A Service not seen yet keeps the pod
// waiting, as a missing ConfigMap does; one without a cluster IP or a TCP
// port fails it: there is nothing to relay to.
func (t *translator) clusterServices(plan *Plan) error {
	v, ok := t.pod.Annotations[rbnv1.AnnotationClusterServices]
	if !ok {
		return nil
	}
	field := "metadata.annotations[" + rbnv1.AnnotationClusterServices + "]"
	refs, errs := rbnv1.ParseClusterServices(v, t.pod.Namespace)
	if len(errs) > 0 {
		return unsupported(field, ReasonInvalidClusterServices, "%s", errs.ToAggregate().Error())
	}
	for i, ref := range refs {
		svc := t.in.Services[ref]
		if svc == nil {
			return missingObject("Service", ref.Namespace, ref.Name, "")
		}
		if ip := svc.Spec.ClusterIP; ip == "" || ip == corev1.ClusterIPNone {
			return unsupported(field, ReasonInvalidClusterServices,
				"Service %s has no cluster IP (headless or ExternalName): rbn relays to a Service's cluster IP", ref)
		}
		cs := ClusterService{Namespace: ref.Namespace, Name: ref.Name, Address: fmt.Sprintf("127.0.100.%d", i+1)}
		for _, p := range svc.Spec.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				cs.Ports = append(cs.Ports, p.Port)
			}
		}
		if len(cs.Ports) == 0 {
			return unsupported(field, ReasonInvalidClusterServices, "Service %s has no TCP port: rbn relays TCP only", ref)
		}
		for _, h := range t.serviceHostnames(ref) {
			plan.HostAliases = append(plan.HostAliases, h+":"+cs.Address)
		}
		plan.ClusterServices = append(plan.ClusterServices, cs)
	}
	return nil
}

// serviceHostnames are the names of a Service that the pod's resolver
// would find through cluster DNS and its search path.
func (t *translator) serviceHostnames(ref types.NamespacedName) []string {
	var out []string
	if ref.Namespace == t.pod.Namespace {
		out = append(out, ref.Name)
	}
	out = append(out, ref.Name+"."+ref.Namespace, ref.Name+"."+ref.Namespace+".svc")
	if t.in.ClusterDomain != "" {
		out = append(out, ref.Name+"."+ref.Namespace+".svc."+t.in.ClusterDomain)
	}
	return out
}

// The forwarder container: rbn-forward, in the pod's podman pod (so in its
// network namespace), from the pod's infra image (always on the host: the
// program is static and needs nothing of an image), with the pod's
// directory of the host that holds the socket rbn-kubelet listens on over
// SSH bind-mounted at ForwarderDir.
const (
	// RoleServices is the forwarder container's LabelRole.
	RoleServices = "services"
	// ForwarderPath is where the program is copied into the container.
	ForwarderPath = "/rbn-forward"
	// ForwarderDir is where the pod's socket directory is mounted in it,
	// and ForwarderSocket the socket there.
	ForwarderDir    = "/run/rbn"
	ForwarderSocket = ForwarderDir + "/forward.sock"
)

// ForwarderName is the name of the pod's forwarder container.
func ForwarderName(uid types.UID) string { return PodName(uid) + "-" + RoleServices }

// ForwarderSpec is the pod's forwarder container: image is the infra
// container's, hostDir the pod's socket directory on the host. podman
// restarts it if it ends while the pod runs.
func ForwarderSpec(plan *Plan, uid types.UID, image, hostDir string) *specgen.SpecGenerator {
	s := specgen.NewSpecGenerator(image, false)
	s.Name = ForwarderName(uid)
	s.Pod = plan.PodName
	s.Labels = maps.Clone(plan.Labels)
	s.Labels[LabelRole] = RoleServices
	s.Entrypoint = []string{ForwarderPath}
	s.Command = []string{"--socket=" + ForwarderSocket}
	for _, cs := range plan.ClusterServices {
		for _, l := range cs.Listen() {
			s.Command = append(s.Command, "--listen="+l)
		}
	}
	s.Mounts = []spec.Mount{bindMount(hostDir, ForwarderDir, "rw")}
	s.RestartPolicy = "always"
	// k8s-file, whatever the host's default, so that the size holds.
	s.LogConfiguration = &specgen.LogConfig{Driver: "k8s-file", Size: forwarderLogBytes}
	return s
}

// forwarderLogBytes bounds the forwarder's log (a line per failed
// connection) on the host.
const forwarderLogBytes = 1 << 20
