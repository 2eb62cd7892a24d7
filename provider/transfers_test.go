package provider

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

func TestS3Endpoint(t *testing.T) {
	secret := func(kv ...string) *corev1.Secret {
		s := &corev1.Secret{Data: map[string][]byte{}}
		for i := 0; i < len(kv); i += 2 {
			s.Data[kv[i]] = []byte(kv[i+1])
		}
		return s
	}
	creds := []string{rbnv1.S3KeyAccessKeyID, "AK", rbnv1.S3KeySecretAccessKey, "SK"}
	for _, tc := range []struct {
		name      string
		s         *corev1.Secret
		pathStyle bool
		region    string
		err       string
	}{
		{name: "aws defaults", s: secret(creds...), region: "us-east-1"},
		{name: "own endpoint: path style", s: secret(append(creds, rbnv1.S3KeyEndpoint, "http://127.0.0.1:9000", rbnv1.S3KeyRegion, "eu-1")...), pathStyle: true, region: "eu-1"},
		{name: "path style off", s: secret(append(creds, rbnv1.S3KeyEndpoint, "https://s3.example.org", rbnv1.S3KeyForcePathStyle, "false")...), region: "us-east-1"},
		{name: "bad boolean", s: secret(append(creds, rbnv1.S3KeyForcePathStyle, "yes please")...), err: "not a boolean"},
		{name: "bad endpoint", s: secret(append(creds, rbnv1.S3KeyEndpoint, "s3.example.org")...), err: "want http(s)://host"},
		{name: "no credentials", s: secret(), err: "access key ID and secret access key are required"},
		{name: "bad CA", s: secret(append(creds, rbnv1.S3KeyCABundle, "not PEM")...), err: "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := s3Endpoint(tc.s)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || e.PathStyle != tc.pathStyle || e.Region != tc.region || e.AccessKeyID != "AK" {
				t.Errorf("%+v, %v", e, err)
			}
		})
	}
}

func TestOutputsConditionHoldsBackSucceeded(t *testing.T) {
	o := outputsState{Planned: true}
	st := &corev1.PodStatus{Phase: corev1.PodSucceeded}
	if c, awaiting := outputsCondition(st, o); st.Phase != corev1.PodRunning || c.Status != corev1.ConditionFalse || !awaiting {
		t.Errorf("pending: phase %s, condition %+v", st.Phase, c)
	}
	o.Failure = &reason{pod.ReasonOutputTransferFailed, "upload s3://b/k: boom"}
	st = &corev1.PodStatus{Phase: corev1.PodSucceeded}
	if c, _ := outputsCondition(st, o); st.Phase != corev1.PodFailed || st.Reason != pod.ReasonOutputTransferFailed || c.Reason != pod.ReasonOutputTransferFailed {
		t.Errorf("failed: %+v, condition %+v", st, c)
	}
	o.Failure, o.Done = nil, true
	st = &corev1.PodStatus{Phase: corev1.PodSucceeded}
	if c, _ := outputsCondition(st, o); st.Phase != corev1.PodSucceeded || c.Status != corev1.ConditionTrue {
		t.Errorf("done: phase %s, condition %+v", st.Phase, c)
	}
	st = &corev1.PodStatus{Phase: corev1.PodFailed}
	if c, _ := outputsCondition(st, o); c != nil || st.Phase != corev1.PodFailed {
		t.Errorf("a failed pod uploads nothing: %+v", c)
	}
}

// An input's bounds: the volume's sizeLimit or the podman store's free
// space, whichever is smaller, for an emptyDir on disk; the entry bound
// only for a tmpfs without sizeLimit and for a hostPath.
func TestInputLimits(t *testing.T) {
	rt := newFakeRuntime(nil)
	rt.info = &podman.HostInfo{StorageTotal: 100 << 30, StorageUsed: 90 << 30, StorageAvailable: 10 << 30}
	tr := &podTransfers{rt: rt}
	plan := &pod.Plan{Volumes: []pod.Volume{
		{K8sName: "small", Kind: pod.VolumeEmptyDir, SizeLimitBytes: 1 << 30},
		{K8sName: "big", Kind: pod.VolumeEmptyDir, SizeLimitBytes: 50 << 30},
		{K8sName: "unsized", Kind: pod.VolumeEmptyDir},
		{K8sName: "ram", Kind: pod.VolumeEmptyDir, Tmpfs: true},
		{K8sName: "host", Kind: pod.VolumeHostPath, HostPath: "/srv/cache"},
	}}
	for vol, want := range map[string]int64{"small": 1 << 30, "big": 10 << 30, "unsized": 10 << 30, "ram": 0, "host": 0} {
		lim := tr.inputLimits(plan, vol)
		if lim.MaxBytes != want || lim.MaxEntries != maxUnpackEntries {
			t.Errorf("%s: %+v, want %d bytes and %d entries", vol, lim, want, maxUnpackEntries)
		}
	}
	if s := tr.inputLimits(plan, "big").String(); !strings.Contains(s, "free space of the host's podman store") {
		t.Errorf("the store's bound does not say so: %s", s)
	}
}
