package extender

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaultsAndStrictness(t *testing.T) {
	c, err := Parse([]byte("apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateAll(c); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	p := c.Policy()
	if c.Port != 10262 || c.ListenAddress != "0.0.0.0" || p.MaxFactsAge != 2*time.Minute || p.DefaultImageSizeBytes != 0 ||
		p.LoadTolerance != 2 || p.RecentFailuresLimit != 0 || c.LogFormat != "text" || c.LogLevel != "info" {
		t.Errorf("defaults not applied: %+v / %+v", c, p)
	}
	if _, err := Parse([]byte("apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\nfactsMaxAgee: 1m\n")); err == nil || !strings.Contains(err.Error(), "factsMaxAgee") {
		t.Errorf("unknown field not rejected: %v", err)
	}
	// 0 is a choice for loadTolerance, not "unset".
	c, err = Parse([]byte("apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\nloadTolerance: 0\ndefaultImageSize: 2Gi\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Policy(); p.LoadTolerance != 0 || p.DefaultImageSizeBytes != 2<<30 {
		t.Errorf("policy %+v", p)
	}
	if c, err := Load(""); err != nil || c.Port != 10262 {
		t.Errorf("Load(\"\") = %+v, %v", c, err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "c.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(`apiVersion: rbn.dev/v1beta9
kind: KubeletConfiguration
listenAddress: localhost
port: 70000
tlsCertFile: ` + cert + `
clientCAFile: /does/not/exist
factsMaxAge: -1s
defaultImageSize: -1Gi
loadTolerance: -1
recentFailuresLimit: -2
logFormat: xml
logLevel: loud
`))
	if err != nil {
		t.Fatal(err)
	}
	err = ValidateAll(c)
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, want := range []string{"apiVersion", "kind", "listenAddress", "port", "tlsKeyFile", "clientCAFile", "factsMaxAge",
		"defaultImageSize", "loadTolerance", "recentFailuresLimit", "logFormat", "logLevel"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestRunRejectsBadInvocations(t *testing.T) {
	var out strings.Builder
	if err := Run(t.Context(), []string{"--version"}, &out); err != nil || !strings.Contains(out.String(), "rbn-extender") {
		t.Errorf("--version: %v %q", err, out.String())
	}
	if err := Run(t.Context(), []string{"--config=/does/not/exist"}, &out); err == nil {
		t.Error("missing config accepted")
	}
	if err := Run(t.Context(), []string{"stray"}, &out); err == nil {
		t.Error("stray argument accepted")
	}
}
