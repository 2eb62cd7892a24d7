package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/remote-build-nodes/rbn/internal/egress"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/podnet"
)

// KubeletKind is rbn-kubelet's configuration kind.
const KubeletKind = "KubeletConfiguration"

// KubeletConfiguration configures one rbn-kubelet process, which serves every RemoteBuildNode.
type KubeletConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// Kubeconfig is the path of a kubeconfig; empty means in-cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// KubeAPIQPS and KubeAPIBurst bound this process's requests to the
	// apiserver, for every node it serves together (leases, node and pod
	// status, tokens), events aside. The defaults are kubelet's own for one
	// node: 50 nodes renewing leases take 5/s of it.
	KubeAPIQPS   float32 `json:"kubeAPIQPS,omitempty" default:"50"`
	KubeAPIBurst int32   `json:"kubeAPIBurst,omitempty" default:"100"`
	// EventRecordQPS and EventBurst bound the events it records, with a
	// client of their own as kubelet's, so that events never delay status.
	// The defaults are kubelet's.
	EventRecordQPS float32 `json:"eventRecordQPS,omitempty" default:"50"`
	EventBurst     int32   `json:"eventBurst,omitempty" default:"100"`

	// NodeAddress is the InternalIP every served node advertises: where the
	// apiserver reaches this process's kubelet API (in-cluster: the pod IP).
	NodeAddress string `json:"nodeAddress"`
	// ClusterDomain is the cluster's DNS domain, as kubelet's clusterDomain:
	// the FQDN a pod with setHostnameAsFQDN gets as its hostname ends in it.
	ClusterDomain string `json:"clusterDomain,omitempty" default:"cluster.local"`
	// ListenAddress is the kubelet API's bind address.
	ListenAddress string `json:"listenAddress,omitempty" default:"0.0.0.0"`
	// KubeletPort is the kubelet API's shared port: pod routes (logs, exec,
	// attach, port-forward) of every node.
	KubeletPort int32 `json:"kubeletPort,omitempty" default:"10250"`
	// KubeletPortRange ("first-last", inclusive) is where each node gets its
	// own kubelet API port, the one its Node advertises: the apiserver's
	// node-level requests (/stats/summary, /metrics/resource) do not name
	// the node, so the port must. One port per node; the range bounds how
	// many nodes one process serves. Unset: the 200 ports after KubeletPort
	// (see NodePortRange), derived rather than defaulted so that it follows
	// a configured KubeletPort.
	KubeletPortRange string `json:"kubeletPortRange,omitempty"`
	// TLSCertFile and TLSKeyFile are the kubelet API's serving certificate;
	// its SANs must include NodeAddress for the apiserver to verify it. Read
	// again when the files change (internal/servingcert).
	TLSCertFile string `json:"tlsCertFile"`
	TLSKeyFile  string `json:"tlsKeyFile"`
	// ClientCAFile verifies client certificates (the apiserver's) on the kubelet API.
	ClientCAFile string `json:"clientCAFile,omitempty"`
	// MetricsBindAddress (IP:port) serves rbn-kubelet's own Prometheus
	// metrics at /metrics over plain HTTP; "0" serves none.
	MetricsBindAddress string `json:"metricsBindAddress,omitempty" default:"0.0.0.0:10265"`
	// EnableProfiling also serves Go's profiles (/debug/pprof/) on the
	// metrics address: unauthenticated, so off unless asked for.
	EnableProfiling bool `json:"enableProfiling,omitempty"`

	// NodeIdentities gives each served node a client certificate of its own
	// (user system:node:<name>), which rbn-approver must approve: the pods'
	// statuses, their service account tokens and their Secrets and
	// ConfigMaps are then written, requested and read as the node, fenced
	// by the Node authorizer and NodeRestriction as a kubelet's
	// (internal/nodeidentity, internal/podobjects). Off, rbn-kubelet's own
	// account needs manifests/rbac/without-node-identities.yaml.
	NodeIdentities *bool `json:"nodeIdentities,omitempty" default:"true"`
	// NodeServices gives each served node an address of its own, as every
	// kubelet has: a Service without selector rbn-node-<name> in
	// rbn-kubelet's namespace, whose ClusterIP is the Node's InternalIP and
	// whose port 10250 (the Node's kubelet port) leads, through an
	// EndpointSlice, to the node's port on the replica serving it
	// (internal/nodeservice). Prometheus's kubelet scrape
	// (<InternalIP>:10250), metrics-server and the apiserver then reach each
	// node there. Each node's serving certificate names that ClusterIP: it
	// is requested of the kubernetes.io/kubelet-serving signer, and
	// rbn-approver approves it. The apiserver must reach ClusterIPs (it
	// does where its host runs kube-proxy). Off, every node advertises
	// NodeAddress and its own port of KubeletPortRange, and TLSCertFile
	// serves them all.
	NodeServices bool `json:"nodeServices,omitempty"`
	// NodeLeaseDurationSeconds is the duration of each node's Lease; it is renewed every quarter of it.
	NodeLeaseDurationSeconds int32 `json:"nodeLeaseDurationSeconds,omitempty" default:"40"`
	// NodeStatusReportFrequency is how often a node's status is written when nothing changed.
	NodeStatusReportFrequency metav1.Duration `json:"nodeStatusReportFrequency,omitempty" default:"1m"`
	// HealthCheckInterval is how often each host's podman service is pinged.
	HealthCheckInterval metav1.Duration `json:"healthCheckInterval,omitempty" default:"10s"`
	// HostInfoRefreshInterval is how often capacity and pressure figures are re-read.
	HostInfoRefreshInterval metav1.Duration `json:"hostInfoRefreshInterval,omitempty" default:"30s"`

	SSH SSHConfiguration `json:"ssh,omitempty"`

	Podman PodmanConfiguration `json:"podman,omitempty"`

	PodRetry PodRetryConfiguration `json:"podRetry,omitempty"`

	Sharding ShardingConfiguration `json:"sharding,omitempty"`

	Egress EgressConfiguration `json:"egress,omitempty"`

	PodNetwork PodNetworkConfiguration `json:"podNetwork,omitempty"`

	ClusterServices ClusterServicesConfiguration `json:"clusterServices,omitempty"`

	// LogFormat is text or json. LogLevel is debug, info, warn or error.
	LogFormat string `json:"logFormat,omitempty" default:"text"`
	LogLevel  string `json:"logLevel,omitempty" default:"info"`
}

// SSHConfiguration tunes every host connection.
type SSHConfiguration struct {
	DialTimeout       metav1.Duration `json:"dialTimeout,omitempty" default:"10s"`
	KeepaliveInterval metav1.Duration `json:"keepaliveInterval,omitempty" default:"10s"`
	KeepaliveTimeout  metav1.Duration `json:"keepaliveTimeout,omitempty" default:"15s"`
	MaxBackoff        metav1.Duration `json:"maxBackoff,omitempty" default:"30s"`
}

// PodmanConfiguration bounds the calls to each host's podman service, as
// kubelet's runtime-request-timeout bounds its CRI calls: a hung podman (or
// a helper of it: conmon, the OCI runtime, a pull) must not hold a pod's
// worker, or its deletion, for good. A call past its deadline fails, and
// the pod's worker retries it as any failed step, with a Warning event.
type PodmanConfiguration struct {
	// RequestTimeout bounds each call that does not carry a stream (create,
	// start, inspect, list, info, ping, ...); stopping and removing get the
	// stop timeout they ask for on top. Logs, events, archive copies (the
	// S3 transfers), exec and attach sessions have no such bound.
	RequestTimeout metav1.Duration `json:"requestTimeout,omitempty" default:"2m"`
	// ImagePullTimeout bounds an image pull as a whole. The libpod API
	// reports a pull's progress a line per blob, not by bytes, so a pull
	// cannot be bounded by a lack of progress: one large layer on a slow
	// link shows none for long.
	ImagePullTimeout metav1.Duration `json:"imagePullTimeout,omitempty" default:"1h"`
	// ImagePullProgressDeadline cancels a pull through rbn-kubelet's image
	// relay (imagePull: ThroughKubelet) when the registry sends nothing of a
	// blob for that long, as kubelet's old --image-pull-progress-deadline
	// did: there the bytes pass through rbn-kubelet, which sees them. The
	// pull fails as ErrImagePull, naming the registry and the blob, and
	// backs off. A host's own pulls (Direct) cannot be watched so, and only
	// ImagePullTimeout bounds them.
	ImagePullProgressDeadline metav1.Duration `json:"imagePullProgressDeadline,omitempty" default:"1m"`
}

// PodRetryConfiguration is how soon each pod's worker looks again after
// something did not work, and how often a node's containers are relisted.
// Events and informers drive the work; these are what brings a pod forward
// when nothing happens. The defaults are the values the pod worker has
// had built in (provider.RetryConfig).
type PodRetryConfiguration struct {
	// SyncFailure: after a sync step failed without a retry time of its own
	// (the sandbox could not be set up, the host did not answer).
	SyncFailure metav1.Duration `json:"syncFailure,omitempty" default:"5s"`
	// ConfigError: after a pod's configuration was not usable yet (an
	// object it references is missing, a subPath cannot be resolved):
	// CreateContainerConfigError.
	ConfigError metav1.Duration `json:"configError,omitempty" default:"10s"`
	// CreateFailure: after the host failed to create a container or to fill
	// its volumes: CreateContainerError.
	CreateFailure metav1.Duration `json:"createFailure,omitempty" default:"10s"`
	// EventsReopen: after podman's event stream could not be opened.
	EventsReopen metav1.Duration `json:"eventsReopen,omitempty" default:"2s"`
	// Teardown: after removing a deleted pod's containers and pod failed.
	Teardown metav1.Duration `json:"teardown,omitempty" default:"5s"`
	// Resync: how often a node's containers are relisted, which bounds how
	// long a missed podman event goes unnoticed; the orphan sweep runs
	// every third resync.
	Resync metav1.Duration `json:"resync,omitempty" default:"10s"`
}

// ShardingConfiguration is how the replicas of rbn-kubelet share the nodes:
// each renews a Lease of its own and holds one Lease per node it serves,
// written only when the node changes hands (internal/sharding, docs/ha.md).
// A killed replica's nodes are taken over about LeaseDuration after its last
// renewal; an orderly stop hands them over at once.
type ShardingConfiguration struct {
	// LeaseDuration: a replica's Lease unchanged this long, as another
	// replica observes it, lets that replica take its nodes. Whole seconds.
	LeaseDuration metav1.Duration `json:"leaseDuration,omitempty" default:"10s"`
	// RenewDeadline: a replica that could not renew its Lease for this
	// long stops serving every node. Less than LeaseDuration: the
	// difference is the margin that keeps two replicas from serving one
	// node.
	RenewDeadline metav1.Duration `json:"renewDeadline,omitempty" default:"7s"`
	// RenewInterval: how often a replica renews its Lease.
	RenewInterval metav1.Duration `json:"renewInterval,omitempty" default:"3s"`
	// RetryPeriod: the wait after a failed Lease request.
	RetryPeriod metav1.Duration `json:"retryPeriod,omitempty" default:"1s"`
	// KubeAPIQPS and KubeAPIBurst bound the Lease requests, through a client
	// of their own so that renewals never queue behind pod and node status
	// updates. At rest a replica writes one Lease every RenewInterval; a
	// takeover writes one per node taken, and reads the old holder's Lease
	// once per node: the defaults take the 200 nodes of the default
	// kubeletPortRange in about two seconds.
	KubeAPIQPS   float32 `json:"kubeAPIQPS,omitempty" default:"100"`
	KubeAPIBurst int32   `json:"kubeAPIBurst,omitempty" default:"200"`
}

// EgressConfiguration is where rbn-kubelet may connect on a pod's behalf:
// the S3 endpoint of its transfers and the registry of an image pulled
// through the kubelet are the pod's user's choice, and rbn-kubelet runs in
// the cluster. Loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16,
// fe80::/10: cloud metadata), unspecified (0.0.0.0/8, ::) and multicast
// addresses are always denied; the check is made on the address connected
// to (internal/egress).
type EgressConfiguration struct {
	// DeniedCIDRs are denied besides those: list the cluster's pod and
	// service networks (and the nodes' if need be). CIDRs or single IPs.
	DeniedCIDRs []string `json:"deniedCIDRs,omitempty"`
	// AllowedCIDRs override every denial, built-in ones included: an
	// on-premises S3 service or registry at a private address inside a
	// denied network, a test stack on loopback. CIDRs or single IPs.
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`
}

// ClusterServicesConfiguration is how pods on build hosts reach the cluster
// Services their annotation rbn.dev/cluster-services names
// (docs/services.md, "The other direction").
type ClusterServicesConfiguration struct {
	// ForwarderDir holds rbn-forward, the static program rbn-kubelet runs
	// in such a pod to listen on the Services' addresses, built for each
	// architecture of the build hosts: rbn-forward-linux-<GOARCH>. rbn's
	// image has them there; a host of an architecture with no program
	// fails such pods, saying so.
	ForwarderDir string `json:"forwarderDir,omitempty" default:"/usr/local/lib/rbn"`
}

// PodNetworkConfiguration is the pod network rbn owns (docs/services.md):
// each node gets a block of it, the subnet of a podman network rbn makes on
// its host, so that every pod on a build host has an address no other pod
// in the cluster holds, and Services can reach it (rbn-portal).
type PodNetworkConfiguration struct {
	// CIDR is an IPv4 range that no other network of the cluster, its
	// nodes or the build hosts uses. Empty: pods stay on each host's
	// default podman network, whose addresses hosts share (10.88.0.0/16 by
	// default), so that no Service can reach them.
	CIDR string `json:"cidr,omitempty"`
	// BlockSize is the prefix length of each node's block: a /24 holds 253
	// pods (podman takes the first address for the host's bridge).
	BlockSize int32 `json:"blockSize,omitempty" default:"24"`
}

// Enabled says whether pods get addresses from the rbn pod network.
func (n *PodNetworkConfiguration) Enabled() bool { return n.CIDR != "" }

// Blocks is the network's configuration for internal/podnet; Validate has
// checked it.
func (n *PodNetworkConfiguration) Blocks() (podnet.Config, error) {
	p, err := netip.ParsePrefix(n.CIDR)
	if err != nil {
		return podnet.Config{}, err
	}
	c := podnet.Config{CIDR: p, BlockBits: int(n.BlockSize)}
	return c, c.Validate()
}

func (n *PodNetworkConfiguration) validate(p *field.Path) field.ErrorList {
	if !n.Enabled() {
		return nil
	}
	if _, err := n.Blocks(); err != nil {
		return field.ErrorList{field.Invalid(p, fmt.Sprintf("cidr %s, blockSize %d", n.CIDR, n.BlockSize), err.Error())}
	}
	return nil
}

// Policy is the egress policy the configuration describes; Validate has
// checked the CIDRs.
func (e *EgressConfiguration) Policy() (*egress.Policy, error) {
	return egress.New(egress.Config{DeniedCIDRs: e.DeniedCIDRs, AllowedCIDRs: e.AllowedCIDRs})
}

func (e *EgressConfiguration) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, l := range []struct {
		name  string
		cidrs []string
	}{{"deniedCIDRs", e.DeniedCIDRs}, {"allowedCIDRs", e.AllowedCIDRs}} {
		for i, c := range l.cidrs {
			if _, err := egress.ParseCIDRs([]string{c}); err != nil {
				errs = append(errs, field.Invalid(p.Child(l.name).Index(i), c, "must be a CIDR (10.96.0.0/12) or an IP address"))
			}
		}
	}
	return errs
}

func (c *KubeletConfiguration) typeMeta() (*metav1.TypeMeta, string) { return &c.TypeMeta, KubeletKind }

// Validate reports every problem of a defaulted configuration.
func (c *KubeletConfiguration) Validate() field.ErrorList {
	errs := validateTypeMeta(c.TypeMeta, KubeletKind)
	errs = append(errs, validateIP(field.NewPath("nodeAddress"), c.NodeAddress, "must be the IP address the apiserver reaches this process at")...)
	errs = append(errs, validateIP(field.NewPath("listenAddress"), c.ListenAddress, "must be an IP address")...)
	errs = append(errs, validatePort(field.NewPath("kubeletPort"), c.KubeletPort)...)
	errs = append(errs, validateMetricsAddress(field.NewPath("metricsBindAddress"), c.MetricsBindAddress)...)
	if first, last, err := c.NodePortRange(); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("kubeletPortRange"), c.KubeletPortRange, err.Error()))
	} else if c.KubeletPort >= first && c.KubeletPort <= last {
		errs = append(errs, field.Invalid(field.NewPath("kubeletPortRange"), c.KubeletPortRange, "must not contain kubeletPort"))
	}
	for _, f := range []struct {
		path, value string
		required    bool
	}{
		{"tlsCertFile", c.TLSCertFile, true},
		{"tlsKeyFile", c.TLSKeyFile, true},
		{"clientCAFile", c.ClientCAFile, false},
		{"kubeconfig", c.Kubeconfig, false},
	} {
		if f.value == "" && f.required {
			errs = append(errs, field.Required(field.NewPath(f.path), "the kubelet API is served over TLS only"))
		}
		errs = append(errs, validateFile(field.NewPath(f.path), f.value)...)
	}
	errs = append(errs, validateRate(field.NewPath("kubeAPIQPS"), c.KubeAPIQPS, field.NewPath("kubeAPIBurst"), c.KubeAPIBurst)...)
	errs = append(errs, validateRate(field.NewPath("eventRecordQPS"), c.EventRecordQPS, field.NewPath("eventBurst"), c.EventBurst)...)
	if c.NodeLeaseDurationSeconds < 4 {
		errs = append(errs, field.Invalid(field.NewPath("nodeLeaseDurationSeconds"), c.NodeLeaseDurationSeconds, "must be at least 4"))
	}
	errs = append(errs, validatePositive(field.NewPath("nodeStatusReportFrequency"), c.NodeStatusReportFrequency)...)
	errs = append(errs, validatePositive(field.NewPath("healthCheckInterval"), c.HealthCheckInterval)...)
	errs = append(errs, validatePositive(field.NewPath("hostInfoRefreshInterval"), c.HostInfoRefreshInterval)...)
	ssh := field.NewPath("ssh")
	errs = append(errs, validatePositive(ssh.Child("dialTimeout"), c.SSH.DialTimeout)...)
	errs = append(errs, validatePositive(ssh.Child("keepaliveInterval"), c.SSH.KeepaliveInterval)...)
	errs = append(errs, validatePositive(ssh.Child("keepaliveTimeout"), c.SSH.KeepaliveTimeout)...)
	errs = append(errs, validatePositive(ssh.Child("maxBackoff"), c.SSH.MaxBackoff)...)
	pm := field.NewPath("podman")
	errs = append(errs, validatePositive(pm.Child("requestTimeout"), c.Podman.RequestTimeout)...)
	errs = append(errs, validatePositive(pm.Child("imagePullTimeout"), c.Podman.ImagePullTimeout)...)
	errs = append(errs, validatePositive(pm.Child("imagePullProgressDeadline"), c.Podman.ImagePullProgressDeadline)...)
	retry := field.NewPath("podRetry")
	errs = append(errs, validatePositive(retry.Child("syncFailure"), c.PodRetry.SyncFailure)...)
	errs = append(errs, validatePositive(retry.Child("configError"), c.PodRetry.ConfigError)...)
	errs = append(errs, validatePositive(retry.Child("createFailure"), c.PodRetry.CreateFailure)...)
	errs = append(errs, validatePositive(retry.Child("eventsReopen"), c.PodRetry.EventsReopen)...)
	errs = append(errs, validatePositive(retry.Child("teardown"), c.PodRetry.Teardown)...)
	errs = append(errs, validatePositive(retry.Child("resync"), c.PodRetry.Resync)...)
	errs = append(errs, c.Sharding.validate(field.NewPath("sharding"))...)
	errs = append(errs, c.Egress.validate(field.NewPath("egress"))...)
	errs = append(errs, c.PodNetwork.validate(field.NewPath("podNetwork"))...)
	errs = append(errs, logging.ValidateOptions(c.LogFormat, c.LogLevel)...)
	return errs
}

func (s *ShardingConfiguration) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, d := range []struct {
		name string
		d    metav1.Duration
	}{{"leaseDuration", s.LeaseDuration}, {"renewDeadline", s.RenewDeadline}, {"renewInterval", s.RenewInterval}, {"retryPeriod", s.RetryPeriod}} {
		errs = append(errs, validatePositive(p.Child(d.name), d.d)...)
	}
	if len(errs) > 0 {
		return errs
	}
	if s.LeaseDuration.Duration%time.Second != 0 {
		errs = append(errs, field.Invalid(p.Child("leaseDuration"), s.LeaseDuration.Duration.String(), "must be whole seconds: a Lease counts seconds"))
	}
	if s.RenewDeadline.Duration >= s.LeaseDuration.Duration {
		errs = append(errs, field.Invalid(p.Child("renewDeadline"), s.RenewDeadline.Duration.String(), "must be less than leaseDuration: the difference keeps two replicas from serving one node"))
	}
	if s.RenewInterval.Duration >= s.RenewDeadline.Duration {
		errs = append(errs, field.Invalid(p.Child("renewInterval"), s.RenewInterval.Duration.String(), "must be less than renewDeadline"))
	}
	if s.RetryPeriod.Duration > s.RenewInterval.Duration {
		errs = append(errs, field.Invalid(p.Child("retryPeriod"), s.RetryPeriod.Duration.String(), "must be at most renewInterval"))
	}
	errs = append(errs, validateRate(p.Child("kubeAPIQPS"), s.KubeAPIQPS, p.Child("kubeAPIBurst"), s.KubeAPIBurst)...)
	return errs
}

// nodePortsByDefault is how many ports after kubeletPort nodes get when
// kubeletPortRange is not set.
const nodePortsByDefault = 200

// NodePortRange is the range nodes get their kubelet ports from:
// kubeletPortRange, or the nodePortsByDefault ports after kubeletPort.
func (c *KubeletConfiguration) NodePortRange() (first, last int32, err error) {
	if c.KubeletPortRange == "" {
		if c.KubeletPort < 1 || c.KubeletPort > 65535-nodePortsByDefault {
			return 0, 0, fmt.Errorf("cannot default to the %d ports after kubeletPort %d: set kubeletPortRange", nodePortsByDefault, c.KubeletPort)
		}
		return c.KubeletPort + 1, c.KubeletPort + nodePortsByDefault, nil
	}
	return ParsePortRange(c.KubeletPortRange)
}

// ParsePortRange reads "first-last" (inclusive, 1 <= first <= last <= 65535).
func ParsePortRange(s string) (first, last int32, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("must be first-last, like 10251-10450")
	}
	f, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	l, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || f < 1 || l < f {
		return 0, 0, fmt.Errorf("must be first-last with 1 <= first <= last <= 65535")
	}
	return int32(f), int32(l), nil
}
