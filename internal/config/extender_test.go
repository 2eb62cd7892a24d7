package config

import (
	"strings"
	"testing"
	"time"
)

func decodeExtender(t *testing.T, doc string) *ExtenderConfiguration {
	t.Helper()
	return mustDecode[ExtenderConfiguration](t, doc)
}

func TestExtenderDecodeDefaultsAndStrictness(t *testing.T) {
	c := decodeExtender(t, "apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\n")
	if err := ValidateAll(c); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.Port != 10262 || c.ListenAddress != "0.0.0.0" || c.FactsMaxAge.Duration != 2*time.Minute || c.DefaultImageSize.Value() != 0 ||
		*c.LoadTolerance != 2 || c.RecentFailuresLimit != 0 || c.LogFormat != "text" || c.LogLevel != "info" {
		t.Errorf("defaults not applied: %+v", c)
	}
	err := Decode([]byte("apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\nfactsMaxAgee: 1m\n"), &ExtenderConfiguration{})
	if err == nil || !strings.Contains(err.Error(), "factsMaxAgee") {
		t.Errorf("unknown field not rejected: %v", err)
	}
	// 0 is a choice for loadTolerance, not "unset".
	c = decodeExtender(t, "apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\nloadTolerance: 0\ndefaultImageSize: 2Gi\n")
	if *c.LoadTolerance != 0 || c.DefaultImageSize.Value() != 2<<30 {
		t.Errorf("loadTolerance %d, defaultImageSize %s", *c.LoadTolerance, c.DefaultImageSize)
	}
	// A kubelet's configuration is not an extender's.
	err = Decode([]byte("apiVersion: rbn.dev/v1alpha1\nkind: KubeletConfiguration\n"), &ExtenderConfiguration{})
	if err == nil || !strings.Contains(err.Error(), "kind") {
		t.Errorf("another kind accepted: %v", err)
	}
}

func TestExtenderValidateReportsEveryProblem(t *testing.T) {
	cert := existingFile(t)
	c := decodeExtender(t, `listenAddress: localhost
port: 70000
metricsBindAddress: 10.0.0.1:70000
tlsCertFile: `+cert+`
clientCAFile: /does/not/exist
factsMaxAge: -1s
defaultImageSize: -1Gi
loadTolerance: -1
recentFailuresLimit: -2
logFormat: xml
logLevel: loud
`)
	c.APIVersion, c.Kind = "rbn.dev/v1beta9", KubeletKind
	wantInvalid(t, ValidateAll(c), "apiVersion", "kind", "listenAddress", "port", "metricsBindAddress", "tlsKeyFile", "clientCAFile", "factsMaxAge",
		"defaultImageSize", "loadTolerance", "recentFailuresLimit", "logFormat", "logLevel")
	c = decodeExtender(t, "tlsCertFile: "+cert+"\ntlsKeyFile: "+cert+"\nclientCAFile: "+cert+"\nloadTolerance: 1000\nmetricsBindAddress: 127.0.0.1:0\n")
	if err := ValidateAll(c); err != nil {
		t.Errorf("valid configuration rejected: %v", err)
	}
	// Without defaults applied, the pointers are missing, not a panic.
	if errs := (&ExtenderConfiguration{}).Validate(); !hasField(errs.ToAggregate(), "loadTolerance") || !hasField(errs.ToAggregate(), "defaultImageSize") {
		t.Errorf("undefaulted pointers accepted: %v", errs)
	}
}
