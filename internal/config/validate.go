package config

import (
	"net"
	"os"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The checks both kinds' Validate are made of. Each reports the value it
// was given; none stops at the first problem.

// validateTypeMeta reports an apiVersion or kind other than kind's.
func validateTypeMeta(tm metav1.TypeMeta, kind string) field.ErrorList {
	var errs field.ErrorList
	if tm.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), tm.APIVersion, []string{APIVersion}))
	}
	if tm.Kind != kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), tm.Kind, []string{kind}))
	}
	return errs
}

func validateIP(p *field.Path, value, detail string) field.ErrorList {
	if net.ParseIP(value) == nil {
		return field.ErrorList{field.Invalid(p, value, detail)}
	}
	return nil
}

// metricsOff as a metricsBindAddress serves no metrics (metrics.Off).
const metricsOff = "0"

// validateMetricsAddress accepts MetricsDisabled or IP:port (port 0: the
// system picks one, which the log says).
func validateMetricsAddress(p *field.Path, value string) field.ErrorList {
	if value == metricsOff {
		return nil
	}
	host, port, err := net.SplitHostPort(value)
	if err != nil || net.ParseIP(host) == nil {
		return field.ErrorList{field.Invalid(p, value, `must be IP:port, or "0" to serve no metrics`)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return field.ErrorList{field.Invalid(p, value, "the port must be between 0 and 65535")}
	}
	return nil
}

func validatePort(p *field.Path, port int32) field.ErrorList {
	if port < 1 || port > 65535 {
		return field.ErrorList{field.Invalid(p, port, "must be between 1 and 65535")}
	}
	return nil
}

// validateFile reports a path that is set but cannot be read; an empty
// path is the caller's to judge.
func validateFile(p *field.Path, path string) field.ErrorList {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return field.ErrorList{field.Invalid(p, path, err.Error())}
	}
	return nil
}

func validatePositive(p *field.Path, d metav1.Duration) field.ErrorList {
	if d.Duration <= 0 {
		return field.ErrorList{field.Invalid(p, d.Duration.String(), "must be positive")}
	}
	return nil
}

// validateRate reports a negative rate, or a burst below 1 or below the rate.
func validateRate(qpsPath *field.Path, qps float32, burstPath *field.Path, burst int32) field.ErrorList {
	var errs field.ErrorList
	if qps < 0 {
		errs = append(errs, field.Invalid(qpsPath, qps, "must not be negative"))
	}
	if burst < 1 || float32(burst) < qps {
		errs = append(errs, field.Invalid(burstPath, burst, "must be at least 1 and at least "+qpsPath.String()))
	}
	return errs
}
