// Package config is rbn-kubelet's versioned configuration
// (apiVersion rbn.dev/v1alpha1, kind KubeletConfiguration): its types, the one
// place defaults are set, strict loading and validation that reports every
// problem at once.
package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

const (
	APIVersion = "rbn.dev/v1alpha1"
	Kind       = "KubeletConfiguration"
)

// KubeletConfiguration configures one rbn-kubelet process, which serves every RemoteBuildNode.
type KubeletConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// Kubeconfig is the path of a kubeconfig; empty means in-cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// KubeAPIQPS and KubeAPIBurst bound this process's requests to the
	// apiserver, for every node it serves together (leases, node and pod
	// status, tokens), events aside. Defaults 50 and 100, kubelet's own for
	// one node: 50 nodes renewing leases take 5/s of it.
	KubeAPIQPS   float32 `json:"kubeAPIQPS,omitempty"`
	KubeAPIBurst int32   `json:"kubeAPIBurst,omitempty"`
	// EventRecordQPS and EventBurst bound the events it records, with a
	// client of their own as kubelet's, so that events never delay status.
	// Defaults 50 and 100, kubelet's.
	EventRecordQPS float32 `json:"eventRecordQPS,omitempty"`
	EventBurst     int32   `json:"eventBurst,omitempty"`

	// NodeAddress is the InternalIP every served node advertises: where the
	// apiserver reaches this process's kubelet API (in-cluster: the pod IP).
	NodeAddress string `json:"nodeAddress"`
	// ListenAddress is the kubelet API's bind address. Default 0.0.0.0.
	ListenAddress string `json:"listenAddress,omitempty"`
	// KubeletPort is the kubelet API's shared port: pod routes (logs, exec,
	// attach, port-forward) of every node. Default 10250.
	KubeletPort int32 `json:"kubeletPort,omitempty"`
	// KubeletPortRange ("first-last", inclusive) is where each node gets its
	// own kubelet API port, the one its Node advertises: the apiserver's
	// node-level requests (/stats/summary, /metrics/resource) do not name
	// the node, so the port must. One port per node; the range bounds how
	// many nodes one process serves. Default: the 200 ports after KubeletPort
	// (see NodePortRange).
	KubeletPortRange string `json:"kubeletPortRange,omitempty"`
	// TLSCertFile and TLSKeyFile are the kubelet API's serving certificate;
	// its SANs must include NodeAddress for the apiserver to verify it.
	TLSCertFile string `json:"tlsCertFile"`
	TLSKeyFile  string `json:"tlsKeyFile"`
	// ClientCAFile verifies client certificates (the apiserver's) on the kubelet API.
	ClientCAFile string `json:"clientCAFile,omitempty"`

	// NodeLeaseDurationSeconds is the duration of each node's Lease; it is renewed every quarter of it. Default 40.
	NodeLeaseDurationSeconds int32 `json:"nodeLeaseDurationSeconds,omitempty"`
	// NodeStatusReportFrequency is how often a node's status is written when nothing changed. Default 1m.
	NodeStatusReportFrequency metav1.Duration `json:"nodeStatusReportFrequency,omitempty"`
	// HealthCheckInterval is how often each host's podman service is pinged. Default 10s.
	HealthCheckInterval metav1.Duration `json:"healthCheckInterval,omitempty"`
	// HostInfoRefreshInterval is how often capacity and pressure figures are re-read. Default 30s.
	HostInfoRefreshInterval metav1.Duration `json:"hostInfoRefreshInterval,omitempty"`

	SSH SSHConfiguration `json:"ssh,omitempty"`

	// LogFormat is text or json. LogLevel is debug, info, warn or error.
	LogFormat string `json:"logFormat,omitempty"`
	LogLevel  string `json:"logLevel,omitempty"`
}

// SSHConfiguration tunes every host connection.
type SSHConfiguration struct {
	DialTimeout       metav1.Duration `json:"dialTimeout,omitempty"`
	KeepaliveInterval metav1.Duration `json:"keepaliveInterval,omitempty"`
	KeepaliveTimeout  metav1.Duration `json:"keepaliveTimeout,omitempty"`
	MaxBackoff        metav1.Duration `json:"maxBackoff,omitempty"`
}

// SetDefaults fills every unset field.
func SetDefaults(c *KubeletConfiguration) {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = Kind
	}
	if c.ListenAddress == "" {
		c.ListenAddress = "0.0.0.0"
	}
	if c.KubeletPort == 0 {
		c.KubeletPort = 10250
	}
	if c.KubeAPIQPS == 0 {
		c.KubeAPIQPS = 50
	}
	if c.KubeAPIBurst == 0 {
		c.KubeAPIBurst = 100
	}
	if c.EventRecordQPS == 0 {
		c.EventRecordQPS = 50
	}
	if c.EventBurst == 0 {
		c.EventBurst = 100
	}

	if c.NodeLeaseDurationSeconds == 0 {
		c.NodeLeaseDurationSeconds = 40
	}
	dur := func(d *metav1.Duration, def time.Duration) {
		if d.Duration == 0 {
			d.Duration = def
		}
	}
	dur(&c.NodeStatusReportFrequency, time.Minute)
	dur(&c.HealthCheckInterval, 10*time.Second)
	dur(&c.HostInfoRefreshInterval, 30*time.Second)
	dur(&c.SSH.DialTimeout, 10*time.Second)
	dur(&c.SSH.KeepaliveInterval, 10*time.Second)
	dur(&c.SSH.KeepaliveTimeout, 15*time.Second)
	dur(&c.SSH.MaxBackoff, 30*time.Second)
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
}

// Validate reports every problem of a defaulted configuration.
func Validate(c *KubeletConfiguration) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, ValidateTypeMeta(c.TypeMeta, APIVersion, Kind)...)
	if net.ParseIP(c.NodeAddress) == nil {
		errs = append(errs, field.Invalid(field.NewPath("nodeAddress"), c.NodeAddress, "must be the IP address the apiserver reaches this process at"))
	}
	if net.ParseIP(c.ListenAddress) == nil {
		errs = append(errs, field.Invalid(field.NewPath("listenAddress"), c.ListenAddress, "must be an IP address"))
	}
	if c.KubeletPort < 1 || c.KubeletPort > 65535 {
		errs = append(errs, field.Invalid(field.NewPath("kubeletPort"), c.KubeletPort, "must be between 1 and 65535"))
	}
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
		if f.value == "" {
			if f.required {
				errs = append(errs, field.Required(field.NewPath(f.path), "the kubelet API is served over TLS only"))
			}
			continue
		}
		if _, err := os.Stat(f.value); err != nil {
			errs = append(errs, field.Invalid(field.NewPath(f.path), f.value, err.Error()))
		}
	}
	if c.KubeAPIQPS < 0 {
		errs = append(errs, field.Invalid(field.NewPath("kubeAPIQPS"), c.KubeAPIQPS, "must not be negative"))
	}
	if c.KubeAPIBurst < 1 || float32(c.KubeAPIBurst) < c.KubeAPIQPS {
		errs = append(errs, field.Invalid(field.NewPath("kubeAPIBurst"), c.KubeAPIBurst, "must be at least 1 and at least kubeAPIQPS"))
	}
	if c.EventRecordQPS < 0 {
		errs = append(errs, field.Invalid(field.NewPath("eventRecordQPS"), c.EventRecordQPS, "must not be negative"))
	}
	if c.EventBurst < 1 || float32(c.EventBurst) < c.EventRecordQPS {
		errs = append(errs, field.Invalid(field.NewPath("eventBurst"), c.EventBurst, "must be at least 1 and at least eventRecordQPS"))
	}
	if c.NodeLeaseDurationSeconds < 4 {
		errs = append(errs, field.Invalid(field.NewPath("nodeLeaseDurationSeconds"), c.NodeLeaseDurationSeconds, "must be at least 4"))
	}
	positive := func(p *field.Path, d metav1.Duration) {
		if d.Duration <= 0 {
			errs = append(errs, field.Invalid(p, d.Duration.String(), "must be positive"))
		}
	}
	positive(field.NewPath("nodeStatusReportFrequency"), c.NodeStatusReportFrequency)
	positive(field.NewPath("healthCheckInterval"), c.HealthCheckInterval)
	positive(field.NewPath("hostInfoRefreshInterval"), c.HostInfoRefreshInterval)
	ssh := field.NewPath("ssh")
	positive(ssh.Child("dialTimeout"), c.SSH.DialTimeout)
	positive(ssh.Child("keepaliveInterval"), c.SSH.KeepaliveInterval)
	positive(ssh.Child("keepaliveTimeout"), c.SSH.KeepaliveTimeout)
	positive(ssh.Child("maxBackoff"), c.SSH.MaxBackoff)
	errs = append(errs, logging.ValidateOptions(c.LogFormat, c.LogLevel)...)
	return errs
}

// Load reads a configuration file strictly (unknown fields are errors) and
// applies defaults. Callers apply flag overrides, then call Validate.
func Load(path string) (*KubeletConfiguration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data)
}

// Parse is Load for bytes.
func Parse(data []byte) (*KubeletConfiguration, error) {
	c := &KubeletConfiguration{}
	if err := DecodeStrict(data, c); err != nil {
		return nil, err
	}
	SetDefaults(c)
	return c, nil
}

// ValidateAll is Validate as one error listing every problem, or nil.
func ValidateAll(c *KubeletConfiguration) error {
	if errs := Validate(c); len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %w", errs.ToAggregate())
	}
	return nil
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

// ValidateTypeMeta reports an apiVersion or kind other than the ones a
// configuration file must name.
func ValidateTypeMeta(tm metav1.TypeMeta, apiVersion, kind string) field.ErrorList {
	var errs field.ErrorList
	if tm.APIVersion != apiVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), tm.APIVersion, []string{apiVersion}))
	}
	if tm.Kind != kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), tm.Kind, []string{kind}))
	}
	return errs
}

// DecodeStrict decodes a YAML or JSON configuration into out; unknown
// fields are errors.
func DecodeStrict(data []byte, out any) error {
	if err := yaml.UnmarshalStrict(data, out); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	return nil
}
