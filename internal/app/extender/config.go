package extender

import (
	"fmt"
	"net"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/scheduler"
)

const (
	APIVersion = "rbn.dev/v1alpha1"
	Kind       = "ExtenderConfiguration"
)

// ExtenderConfiguration configures rbn-extender.
type ExtenderConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// Kubeconfig is the path of a kubeconfig; empty means in-cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// ListenAddress is the bind address. Default 0.0.0.0.
	ListenAddress string `json:"listenAddress,omitempty"`
	// Port is the extender's port (kube-scheduler's urlPrefix). Default 10262.
	Port int32 `json:"port,omitempty"`
	// TLSCertFile and TLSKeyFile serve HTTPS; both or neither. Without them
	// the extender speaks plain HTTP (only for loopback: scheduling requests
	// carry whole pod specs).
	TLSCertFile string `json:"tlsCertFile,omitempty"`
	TLSKeyFile  string `json:"tlsKeyFile,omitempty"`
	// ClientCAFile, when set, requires callers (kube-scheduler) to present a
	// client certificate it signed. Needs TLS.
	ClientCAFile string `json:"clientCAFile,omitempty"`

	// FactsMaxAge: published host facts older than this are treated as
	// unknown (no disk filter, no image preference); a
	// stale "unhealthy" still excludes the host. Default 2m.
	FactsMaxAge metav1.Duration `json:"factsMaxAge,omitempty"`
	// DefaultImageSize is the disk assumed for each of a pod's images that a
	// host does not have, in the disk check: host facts carry no image
	// sizes. Default 0: only the pod's declared ephemeral-storage counts.
	DefaultImageSize *resource.Quantity `json:"defaultImageSize,omitempty"`
	// LoadTolerance: hosts whose job counts are within this many of the
	// least loaded candidate count as equally loaded, leaving the fine
	// spreading of a burst to kube-scheduler's own accounting. Default 2.
	LoadTolerance *int32 `json:"loadTolerance,omitempty"`
	// RecentFailuresLimit excludes hosts with at least this many host-caused
	// pod failures in rbn-kubelet's window (10 minutes). Default 0: off,
	// because image-pull failures count and a bad image name in one job
	// would otherwise close a host to every job.
	RecentFailuresLimit int32 `json:"recentFailuresLimit,omitempty"`

	// LogFormat is text or json. LogLevel is debug, info, warn or error.
	LogFormat string `json:"logFormat,omitempty"`
	LogLevel  string `json:"logLevel,omitempty"`
}

// SetDefaults fills every unset field: the one place defaults live.
func SetDefaults(c *ExtenderConfiguration) {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = Kind
	}
	if c.ListenAddress == "" {
		c.ListenAddress = "0.0.0.0"
	}
	if c.Port == 0 {
		c.Port = 10262
	}
	if c.FactsMaxAge.Duration == 0 {
		c.FactsMaxAge.Duration = 2 * time.Minute
	}
	if c.DefaultImageSize == nil {
		q := resource.MustParse("0")
		c.DefaultImageSize = &q
	}
	if c.LoadTolerance == nil {
		t := int32(2)
		c.LoadTolerance = &t
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
}

// Validate reports every problem of a defaulted configuration.
func Validate(c *ExtenderConfiguration) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, config.ValidateTypeMeta(c.TypeMeta, APIVersion, Kind)...)
	if net.ParseIP(c.ListenAddress) == nil {
		errs = append(errs, field.Invalid(field.NewPath("listenAddress"), c.ListenAddress, "must be an IP address"))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, field.Invalid(field.NewPath("port"), c.Port, "must be between 1 and 65535"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, field.Invalid(field.NewPath("tlsKeyFile"), c.TLSKeyFile, "tlsCertFile and tlsKeyFile go together"))
	}
	if c.ClientCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, field.Invalid(field.NewPath("clientCAFile"), c.ClientCAFile, "client certificates need TLS: set tlsCertFile and tlsKeyFile"))
	}
	for _, f := range []struct{ path, value string }{
		{"kubeconfig", c.Kubeconfig},
		{"tlsCertFile", c.TLSCertFile},
		{"tlsKeyFile", c.TLSKeyFile},
		{"clientCAFile", c.ClientCAFile},
	} {
		if f.value == "" {
			continue
		}
		if _, err := os.Stat(f.value); err != nil {
			errs = append(errs, field.Invalid(field.NewPath(f.path), f.value, err.Error()))
		}
	}
	if c.FactsMaxAge.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("factsMaxAge"), c.FactsMaxAge.Duration.String(), "must be positive"))
	}
	if c.DefaultImageSize != nil && c.DefaultImageSize.Sign() < 0 {
		errs = append(errs, field.Invalid(field.NewPath("defaultImageSize"), c.DefaultImageSize.String(), "must not be negative"))
	}
	if c.LoadTolerance != nil && (*c.LoadTolerance < 0 || *c.LoadTolerance > 1000) {
		errs = append(errs, field.Invalid(field.NewPath("loadTolerance"), *c.LoadTolerance, "must be between 0 and 1000"))
	}
	if c.RecentFailuresLimit < 0 {
		errs = append(errs, field.Invalid(field.NewPath("recentFailuresLimit"), c.RecentFailuresLimit, "must not be negative (0 disables the check)"))
	}
	errs = append(errs, logging.ValidateOptions(c.LogFormat, c.LogLevel)...)
	return errs
}

// ValidateAll is Validate as one error listing every problem, or nil.
func ValidateAll(c *ExtenderConfiguration) error {
	if errs := Validate(c); len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %w", errs.ToAggregate())
	}
	return nil
}

// Load reads a configuration file strictly (unknown fields are errors) and
// applies defaults. An empty path gives the defaults.
func Load(path string) (*ExtenderConfiguration, error) {
	if path == "" {
		c := &ExtenderConfiguration{}
		SetDefaults(c)
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data)
}

// Parse is Load for bytes.
func Parse(data []byte) (*ExtenderConfiguration, error) {
	c := &ExtenderConfiguration{}
	if err := config.DecodeStrict(data, c); err != nil {
		return nil, err
	}
	SetDefaults(c)
	return c, nil
}

// Policy is the decisions' part of a defaulted configuration.
func (c *ExtenderConfiguration) Policy() scheduler.Policy {
	return scheduler.Policy{
		MaxFactsAge:           c.FactsMaxAge.Duration,
		DefaultImageSizeBytes: c.DefaultImageSize.Value(),
		LoadTolerance:         int(*c.LoadTolerance),
		RecentFailuresLimit:   int(c.RecentFailuresLimit),
	}
}
