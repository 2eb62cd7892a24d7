package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaultsAndStrictness(t *testing.T) {
	c, err := Parse([]byte("apiVersion: rbn.dev/v1alpha1\nkind: KubeletConfiguration\nnodeAddress: 10.0.0.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.KubeletPort != 10250 || c.KubeAPIQPS != 50 || c.KubeAPIBurst != 100 || c.EventRecordQPS != 50 || c.EventBurst != 100 || c.NodeLeaseDurationSeconds != 40 || c.SSH.KeepaliveInterval.Duration != 10*time.Second || c.LogFormat != "text" {
		t.Errorf("defaults not applied: %+v", c)
	}
	if _, err := Parse([]byte("apiVersion: rbn.dev/v1alpha1\nkind: KubeletConfiguration\nnodeAdress: 10.0.0.5\n")); err == nil || !strings.Contains(err.Error(), "nodeAdress") {
		t.Errorf("unknown field not rejected: %v", err)
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
nodeAddress: not-an-ip
kubeletPort: 70000
tlsKeyFile: /does/not/exist
logFormat: xml
logLevel: loud
ssh: {keepaliveInterval: -1s}
kubeAPIQPS: 20
kubeAPIBurst: 10
eventRecordQPS: 20
eventBurst: 10
`))
	if err != nil {
		t.Fatal(err)
	}
	err = ValidateAll(c)
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, want := range []string{"apiVersion", "nodeAddress", "kubeletPort", "tlsCertFile", "tlsKeyFile", "logFormat", "logLevel", "ssh.keepaliveInterval", "kubeAPIBurst", "eventBurst"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	c.APIVersion, c.NodeAddress, c.KubeletPort, c.TLSCertFile, c.TLSKeyFile = APIVersion, "10.0.0.5", 10250, cert, cert
	c.LogFormat, c.LogLevel, c.SSH.KeepaliveInterval.Duration = "json", "debug", time.Second
	c.KubeAPIBurst, c.EventBurst = 40, 40
	if err := ValidateAll(c); err != nil {
		t.Errorf("valid configuration rejected: %v", err)
	}
}
