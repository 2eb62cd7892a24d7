package config

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

// ExtenderKind is rbn-extender's configuration kind.
const ExtenderKind = "ExtenderConfiguration"

// ExtenderConfiguration configures rbn-extender.
type ExtenderConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// Kubeconfig is the path of a kubeconfig; empty means in-cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// ListenAddress is the bind address.
	ListenAddress string `json:"listenAddress,omitempty" default:"0.0.0.0"`
	// Port is the extender's port (kube-scheduler's urlPrefix).
	Port int32 `json:"port,omitempty" default:"10262"`
	// TLSCertFile and TLSKeyFile serve HTTPS; both or neither, read again
	// when they change. Without them the extender speaks plain HTTP (only
	// for loopback: scheduling requests carry whole pod specs).
	TLSCertFile string `json:"tlsCertFile,omitempty"`
	TLSKeyFile  string `json:"tlsKeyFile,omitempty"`
	// ClientCAFile, when set, requires callers (kube-scheduler) to present a
	// client certificate it signed. Needs TLS.
	ClientCAFile string `json:"clientCAFile,omitempty"`
	// MetricsBindAddress (IP:port) serves rbn-extender's own Prometheus
	// metrics at /metrics over plain HTTP; "0" serves none.
	MetricsBindAddress string `json:"metricsBindAddress,omitempty" default:"0.0.0.0:10266"`
	// EnableProfiling also serves Go's profiles (/debug/pprof/) on the
	// metrics address: unauthenticated, so off unless asked for.
	EnableProfiling bool `json:"enableProfiling,omitempty"`

	// FactsMaxAge: published host facts older than this are treated as
	// unknown (no disk filter, no image preference); a
	// stale "unhealthy" still excludes the host.
	FactsMaxAge metav1.Duration `json:"factsMaxAge,omitempty" default:"2m"`
	// DefaultImageSize is the disk assumed for each of a pod's images that a
	// host does not have, in the disk check: host facts carry no image
	// sizes. 0: only the pod's declared ephemeral-storage counts.
	DefaultImageSize *resource.Quantity `json:"defaultImageSize,omitempty" default:"0"`
	// LoadTolerance: hosts whose job counts are within this many of the
	// least loaded candidate count as equally loaded, leaving the fine
	// spreading of a burst to kube-scheduler's own accounting. A pointer:
	// 0 is a choice.
	LoadTolerance *int32 `json:"loadTolerance,omitempty" default:"2"`
	// RecentFailuresLimit excludes hosts with at least this many host-caused
	// pod failures in rbn-kubelet's window (10 minutes). 0, the default, is
	// off, because image-pull failures count and a bad image name in one
	// job would otherwise close a host to every job.
	RecentFailuresLimit int32 `json:"recentFailuresLimit,omitempty"`

	// LogFormat is text or json. LogLevel is debug, info, warn or error.
	LogFormat string `json:"logFormat,omitempty" default:"text"`
	LogLevel  string `json:"logLevel,omitempty" default:"info"`
}

func (c *ExtenderConfiguration) typeMeta() (*metav1.TypeMeta, string) {
	return &c.TypeMeta, ExtenderKind
}

// Validate reports every problem of a defaulted configuration.
func (c *ExtenderConfiguration) Validate() field.ErrorList {
	errs := validateTypeMeta(c.TypeMeta, ExtenderKind)
	errs = append(errs, validateIP(field.NewPath("listenAddress"), c.ListenAddress, "must be an IP address")...)
	errs = append(errs, validatePort(field.NewPath("port"), c.Port)...)
	errs = append(errs, validateMetricsAddress(field.NewPath("metricsBindAddress"), c.MetricsBindAddress)...)
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, field.Invalid(field.NewPath("tlsKeyFile"), c.TLSKeyFile, "tlsCertFile and tlsKeyFile go together"))
	}
	if c.ClientCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, field.Invalid(field.NewPath("clientCAFile"), c.ClientCAFile, "client certificates need TLS: set tlsCertFile and tlsKeyFile"))
	}
	errs = append(errs, validateFile(field.NewPath("kubeconfig"), c.Kubeconfig)...)
	errs = append(errs, validateFile(field.NewPath("tlsCertFile"), c.TLSCertFile)...)
	errs = append(errs, validateFile(field.NewPath("tlsKeyFile"), c.TLSKeyFile)...)
	errs = append(errs, validateFile(field.NewPath("clientCAFile"), c.ClientCAFile)...)
	errs = append(errs, validatePositive(field.NewPath("factsMaxAge"), c.FactsMaxAge)...)
	// nil only when SetDefaults was not applied.
	switch p := field.NewPath("defaultImageSize"); {
	case c.DefaultImageSize == nil:
		errs = append(errs, field.Required(p, ""))
	case c.DefaultImageSize.Sign() < 0:
		errs = append(errs, field.Invalid(p, c.DefaultImageSize.String(), "must not be negative"))
	}
	switch p := field.NewPath("loadTolerance"); {
	case c.LoadTolerance == nil:
		errs = append(errs, field.Required(p, ""))
	case *c.LoadTolerance < 0 || *c.LoadTolerance > 1000:
		errs = append(errs, field.Invalid(p, *c.LoadTolerance, "must be between 0 and 1000"))
	}
	if c.RecentFailuresLimit < 0 {
		errs = append(errs, field.Invalid(field.NewPath("recentFailuresLimit"), c.RecentFailuresLimit, "must not be negative (0 disables the check)"))
	}
	errs = append(errs, logging.ValidateOptions(c.LogFormat, c.LogLevel)...)
	return errs
}
