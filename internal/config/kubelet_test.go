package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func decodeKubelet(t *testing.T, doc string) *KubeletConfiguration {
	t.Helper()
	return mustDecode[KubeletConfiguration](t, doc)
}

func TestKubeletDecodeDefaultsAndStrictness(t *testing.T) {
	c := decodeKubelet(t, "apiVersion: rbn.dev/v1alpha1\nkind: KubeletConfiguration\nnodeAddress: 10.0.0.5\n")
	if c.KubeletPort != 10250 || c.KubeAPIQPS != 50 || c.KubeAPIBurst != 100 || c.EventRecordQPS != 50 || c.EventBurst != 100 || c.NodeLeaseDurationSeconds != 40 || c.SSH.KeepaliveInterval.Duration != 10*time.Second || c.LogFormat != "text" {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.PodRetry.SyncFailure.Duration != 5*time.Second || c.PodRetry.Resync.Duration != 10*time.Second {
		t.Errorf("podRetry defaults not applied: %+v", c.PodRetry)
	}
	err := Decode([]byte("apiVersion: rbn.dev/v1alpha1\nkind: KubeletConfiguration\nnodeAdress: 10.0.0.5\n"), &KubeletConfiguration{})
	if err == nil || !strings.Contains(err.Error(), "nodeAdress") {
		t.Errorf("unknown field not rejected: %v", err)
	}
	// Values given override the defaults, in nested sections too.
	c = decodeKubelet(t, "kubeletPort: 11250\nssh: {dialTimeout: 3s}\npodRetry: {teardown: 1m}\n")
	if c.KubeletPort != 11250 || c.SSH.DialTimeout.Duration != 3*time.Second || c.SSH.MaxBackoff.Duration != 30*time.Second ||
		c.PodRetry.Teardown.Duration != time.Minute || c.PodRetry.EventsReopen.Duration != 2*time.Second {
		t.Errorf("configured values: %+v", c)
	}
}

func TestKubeletValidateReportsEveryProblem(t *testing.T) {
	cert := existingFile(t)
	c := decodeKubelet(t, `apiVersion: rbn.dev/v1alpha1
kind: KubeletConfiguration
nodeAddress: not-an-ip
kubeletPort: 70000
metricsBindAddress: localhost:10265
tlsKeyFile: /does/not/exist
logFormat: xml
logLevel: loud
ssh: {keepaliveInterval: -1s}
podRetry: {syncFailure: -5s, resync: -1s}
kubeAPIQPS: 20
kubeAPIBurst: 10
eventRecordQPS: 20
eventBurst: 10
`)
	c.APIVersion = "rbn.dev/v1beta9" // as a program could set it; files are checked by Decode
	wantInvalid(t, ValidateAll(c), "apiVersion", "nodeAddress", "kubeletPort", "metricsBindAddress", "tlsCertFile", "tlsKeyFile", "logFormat", "logLevel", "ssh.keepaliveInterval",
		"podRetry.syncFailure", "podRetry.resync", "kubeAPIBurst", "eventBurst")
	c.APIVersion, c.NodeAddress, c.KubeletPort, c.TLSCertFile, c.TLSKeyFile = APIVersion, "10.0.0.5", 10250, cert, cert
	c.MetricsBindAddress = "0"
	c.LogFormat, c.LogLevel, c.SSH.KeepaliveInterval.Duration = "json", "debug", time.Second
	c.PodRetry.SyncFailure.Duration, c.PodRetry.Resync.Duration = time.Second, time.Second
	c.KubeAPIBurst, c.EventBurst = 40, 40
	if err := ValidateAll(c); err != nil {
		t.Errorf("valid configuration rejected: %v", err)
	}
}

func TestPodRetryValidated(t *testing.T) {
	for _, f := range []string{"syncFailure", "configError", "createFailure", "eventsReopen", "teardown", "resync"} {
		c := decodeKubelet(t, "podRetry: {"+f+": -1s}\n")
		errs := c.Validate()
		if !hasField(errs.ToAggregate(), "podRetry."+f) {
			t.Errorf("podRetry.%s: -1s accepted: %v", f, errs)
		}
	}
}

// The lease timings keep their order (the margin between renewDeadline and
// leaseDuration is what keeps two replicas from serving one node).
func TestShardingValidated(t *testing.T) {
	for _, tc := range []struct {
		yaml, field string
	}{
		{"sharding: {leaseDuration: -1s}\n", "sharding.leaseDuration"},
		{"sharding: {retryPeriod: -1s}\n", "sharding.retryPeriod"},
		{"sharding: {leaseDuration: 10500ms, renewDeadline: 7s}\n", "sharding.leaseDuration"},
		{"sharding: {leaseDuration: 7s}\n", "sharding.renewDeadline"},
		{"sharding: {renewInterval: 7s}\n", "sharding.renewInterval"},
		{"sharding: {retryPeriod: 4s}\n", "sharding.retryPeriod"},
		{"sharding: {kubeAPIQPS: 300}\n", "sharding.kubeAPIBurst"},
	} {
		c := decodeKubelet(t, tc.yaml)
		if errs := c.Validate(); !hasField(errs.ToAggregate(), tc.field) {
			t.Errorf("%s: %s not reported: %v", strings.TrimSpace(tc.yaml), tc.field, errs)
		}
	}
	c := decodeKubelet(t, "sharding: {leaseDuration: 20s, renewDeadline: 15s, renewInterval: 5s, retryPeriod: 2s}\n")
	for _, e := range c.Validate() {
		if strings.HasPrefix(e.Field, "sharding.") {
			t.Errorf("valid sharding timings rejected: %v", e)
		}
	}
}

// Every bad CIDR is reported with its index; good ones make the policy.
func TestEgressValidated(t *testing.T) {
	c := decodeKubelet(t, "egress: {deniedCIDRs: [10.96.0.0/12, 10.244.0.0/33], allowedCIDRs: [s3.internal, 192.168.7.10, 127.0.0.0/8]}\n")
	errs := c.Validate().ToAggregate()
	for _, f := range []string{"egress.deniedCIDRs[1]", "egress.allowedCIDRs[0]"} {
		if !hasField(errs, f) {
			t.Errorf("%s not reported: %v", f, errs)
		}
	}
	for _, f := range []string{"egress.deniedCIDRs[0]", "egress.allowedCIDRs[1]", "egress.allowedCIDRs[2]"} {
		if hasField(errs, f) {
			t.Errorf("valid %s rejected: %v", f, errs)
		}
	}
	c = decodeKubelet(t, "egress: {deniedCIDRs: [10.96.0.0/12], allowedCIDRs: [10.96.5.5]}\n")
	if errs := c.Validate(); len(errs) > 0 {
		for _, e := range errs {
			if strings.HasPrefix(e.Field, "egress.") {
				t.Errorf("valid egress rejected: %v", e)
			}
		}
	}
	p, err := c.Egress.Policy()
	if err != nil {
		t.Fatal(err)
	}
	if p.Check(netip.MustParseAddr("10.96.0.1"), "x") == nil || p.Check(netip.MustParseAddr("10.96.5.5"), "x") != nil {
		t.Error("the policy does not follow the configuration")
	}
	// Nothing configured: the built-in denials hold.
	p, err = decodeKubelet(t, "nodeAddress: 10.0.0.5\n").Egress.Policy()
	if err != nil || p.Check(netip.MustParseAddr("169.254.169.254"), "x") == nil {
		t.Errorf("default policy lets link-local through (%v)", err)
	}
}

// The pod network is off unless a cidr is set; a bad one is reported.
func TestPodNetworkValidated(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		ok   bool
	}{
		{"podNetwork: {}\n", true},
		{"podNetwork: {cidr: 100.96.0.0/16}\n", true},
		{"podNetwork: {cidr: 100.96.0.0/16, blockSize: 26}\n", true},
		{"podNetwork: {cidr: 100.96.0.0/16, blockSize: 31}\n", false},
		{"podNetwork: {cidr: 100.96.0.0/25}\n", false},
		{"podNetwork: {cidr: 100.96.0.5/16}\n", false},
		{"podNetwork: {cidr: fd00::/48}\n", false},
		{"podNetwork: {cidr: not-a-cidr}\n", false},
	} {
		c := decodeKubelet(t, tc.yaml)
		if got := !hasField(c.Validate().ToAggregate(), "podNetwork"); got != tc.ok {
			t.Errorf("%s: valid = %v, want %v (%v)", tc.yaml, got, tc.ok, c.Validate())
		}
	}
	c := decodeKubelet(t, "podNetwork: {cidr: 100.96.0.0/16}\n")
	b, err := c.PodNetwork.Blocks()
	if !c.PodNetwork.Enabled() || err != nil || b.CIDR.String() != "100.96.0.0/16" || b.BlockBits != 24 {
		t.Errorf("Blocks() = %+v, %v", b, err)
	}
	if c := decodeKubelet(t, "{}\n"); c.PodNetwork.Enabled() {
		t.Error("enabled without a cidr")
	}
}
