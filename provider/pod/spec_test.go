package pod

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// minimalPod is a valid pod for tests that change one thing in it.
func minimalPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.36"}}},
	}
}

func TestContainerSpecErrors(t *testing.T) {
	pod := minimalPod()
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data", SubPath: "sub"}}
	plan, err := Translate(Input{Pod: pod, NodeName: "n"})
	if err != nil {
		t.Fatal(err)
	}
	c := plan.Containers[0]

	tests := []struct {
		name        string
		plan        *Plan
		mountpoints map[string]string
		wantIs      error
	}{
		{name: "subPath without mountpoint", plan: plan, mountpoints: nil, wantIs: ErrNoMountpoint},
		{name: "subPath with empty mountpoint", plan: plan, mountpoints: map[string]string{"data": ""}, wantIs: ErrNoMountpoint},
		{name: "plan without uid label", plan: &Plan{Labels: map[string]string{}, Volumes: plan.Volumes}, mountpoints: map[string]string{"data": "/m"}},
		{name: "plan lacking the volume", plan: &Plan{Labels: plan.Labels}, mountpoints: map[string]string{"data": "/m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ContainerSpec(c, tt.plan, 0, "POD", tt.mountpoints)
			if err == nil {
				t.Fatal("want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}

	t.Run("attempt names and labels the container", func(t *testing.T) {
		s, err := ContainerSpec(c, plan, 3, "POD", map[string]string{"data": "/m"})
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != "rbn-uid-1-c-3" || s.Labels[LabelAttempt] != "3" {
			t.Errorf("name %q attempt label %q", s.Name, s.Labels[LabelAttempt])
		}
		if _, ok := s.Labels[LabelInit]; ok {
			t.Error("an app container must not carry the init label")
		}
		if plan.Labels[LabelContainer] != "" {
			t.Error("ContainerSpec must not write into the plan's labels")
		}
	})
}

func TestTranslateErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     func() Input
		wantIs error
	}{
		{name: "no pod", in: func() Input { return Input{} }},
		{name: "no uid", in: func() Input {
			p := minimalPod()
			p.UID = ""
			return Input{Pod: p}
		}},
		{name: "token projected but not provided", wantIs: ErrNoServiceAccountToken, in: func() Input {
			p := minimalPod()
			p.Spec.Volumes = []corev1.Volume{{Name: "sa", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}},
			}}}}
			return Input{Pod: p}
		}},
		{name: "RuntimeClass but no handler resolved", wantIs: ErrNoRuntimeHandler, in: func() Input {
			p := minimalPod()
			rc := "gvisor"
			p.Spec.RuntimeClassName = &rc
			return Input{Pod: p, HostRuntimes: []string{"runc"}}
		}},
		{name: "dnsConfig to merge but no host resolv.conf", wantIs: ErrNoHostDNS, in: func() Input {
			p := minimalPod()
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Searches: []string{"corp.example"}}
			return Input{Pod: p}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Translate(tt.in())
			if err == nil {
				t.Fatal("want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

// TestTranslateRefusals checks the refusals that have no golden case of
// their own: each one names its field and reason.
func TestTranslateRefusals(t *testing.T) {
	ptrTo := func(b bool) *bool { return &b }
	ptrTo64 := func(n int64) *int64 { return &n }
	tests := []struct {
		name       string
		mutate     func(*corev1.Pod)
		wantField  string
		wantReason string
	}{
		{"hostPID", func(p *corev1.Pod) { p.Spec.HostPID = true }, "spec.hostPID", ReasonUnsupportedField},
		{"hostIPC", func(p *corev1.Pod) { p.Spec.HostIPC = true }, "spec.hostIPC", ReasonUnsupportedField},
		{"ephemeral container without an image", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug"}}}
		}, "spec.ephemeralContainers[0].image", ReasonInvalidImageName},
		{"windows", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }, "spec.os.name", ReasonUnsupportedField},
		{"hostUsers false", func(p *corev1.Pod) { p.Spec.HostUsers = ptrTo(false) }, "spec.hostUsers", ReasonUnsupportedField},
		{"unsafe sysctl", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
				{Name: "net.ipv4.tcp_syncookies", Value: "1"}, {Name: "net.core.somaxconn", Value: "1024"},
			}}
		}, "spec.securityContext.sysctls[1]", ReasonSysctlForbidden},
		{"unsafe sysctl with slashes", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel/msgmax", Value: "1024"}}}
		}, "spec.securityContext.sysctls[0]", ReasonSysctlForbidden},
		{"hostAlias IP invalid", func(p *corev1.Pod) {
			p.Spec.HostAliases = []corev1.HostAlias{{IP: "10.0.0.1:80", Hostnames: []string{"a"}}}
		}, "spec.hostAliases[0].ip", ReasonInvalidSpec},
		{"hostAlias hostname invalid", func(p *corev1.Pod) {
			p.Spec.HostAliases = []corev1.HostAlias{{IP: "10.0.0.1", Hostnames: []string{"a", "b;c"}}}
		}, "spec.hostAliases[0].hostnames[1]", ReasonInvalidSpec},
		{"runAsGroup without runAsUser", func(p *corev1.Pod) {
			g := int64(5)
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsGroup: &g}
		}, "spec.containers[0].securityContext.runAsGroup", ReasonUnsupportedField},
		{"runAsNonRoot with uid 0", func(p *corev1.Pod) {
			u := int64(0)
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: &u, RunAsNonRoot: ptrTo(true)}
		}, "spec.containers[0].securityContext.runAsNonRoot", ReasonCreateContainerConfigError},
		{"seccomp unconfined", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}
		}, "spec.containers[0].securityContext.seccompProfile", ReasonUnsupportedField},
		{"mount propagation", func(p *corev1.Pod) {
			mp := corev1.MountPropagationBidirectional
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "d", MountPath: "/d", MountPropagation: &mp}}
		}, "spec.containers[0].volumeMounts[0].mountPropagation", ReasonUnsupportedField},
		{"subPath escaping", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "d", MountPath: "/d", SubPath: "../../etc"}}
		}, "spec.containers[0].volumeMounts[0].subPath", ReasonInvalidSpec},
		{"empty image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }, "spec.containers[0].image", ReasonInvalidImageName},
		{"invalid image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "Bad:Image:Name" }, "spec.containers[0].image", ReasonInvalidImageName},
		{"envFrom without source", func(p *corev1.Pod) {
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{Prefix: "X"}}
		}, "spec.containers[0].envFrom[0]", ReasonInvalidSpec},
		{"env fileKeyRef", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i", Image: "busybox:1.36", Env: []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{
				FileKeyRef: &corev1.FileKeySelector{VolumeName: "v", Path: "env", Key: "A"},
			}}}}}
		}, "spec.initContainers[0].env[0].valueFrom.fileKeyRef", ReasonUnsupportedField},
		{"env valueFrom without source", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{}}}
		}, "spec.containers[0].env[0].valueFrom", ReasonUnsupportedField},
		{"env fieldRef apiVersion", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v2", FieldPath: "metadata.name"},
			}}}
		}, "spec.containers[0].env[0].valueFrom.fieldRef.apiVersion", ReasonUnsupportedField},
		{"env fieldRef whole labels", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"},
			}}}
		}, "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", ReasonUnsupportedField},
		{"env resourceFieldRef to another container", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{
				ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "nope", Resource: "limits.cpu"},
			}}}
		}, "spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName", ReasonInvalidSpec},
		{"csi volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "x"}}}}
		}, "spec.volumes[0].csi", ReasonUnsupportedVolume},
		{"image volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "x"}}}}
		}, "spec.volumes[0].image", ReasonUnsupportedVolume},
		{"supplementalGroupsPolicy Strict without a user", func(p *corev1.Pod) {
			strict := corev1.SupplementalGroupsPolicyStrict
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroupsPolicy: &strict}
		}, "spec.securityContext.supplementalGroupsPolicy", ReasonUnsupportedField},
		{"supplementalGroupsPolicy Strict without runAsGroup", func(p *corev1.Pod) {
			strict := corev1.SupplementalGroupsPolicyStrict
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroupsPolicy: &strict, RunAsUser: ptrTo64(1000)}
		}, "spec.securityContext.supplementalGroupsPolicy", ReasonUnsupportedField},
		{"supplementalGroupsPolicy unknown", func(p *corev1.Pod) {
			policy := corev1.SupplementalGroupsPolicy("Replace")
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroupsPolicy: &policy}
		}, "spec.securityContext.supplementalGroupsPolicy", ReasonUnsupportedField},
		{"runtime handler the host lacks", func(p *corev1.Pod) {
			rc := "gvisor"
			p.Spec.RuntimeClassName = &rc
		}, "spec.runtimeClassName", ReasonRuntimeHandlerNotFound},
		{"emptyDir mode", func(p *corev1.Pod) {
			mode := int32(0o700)
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Mode: &mode}}}}
		}, "spec.volumes[0].emptyDir.mode", ReasonUnsupportedVolume},
		{"secret defaultUser", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s", DefaultUser: ptrTo64(1000)}}}}
		}, "spec.volumes[0].secret.defaultUser", ReasonUnsupportedVolume},
		{"configMap item user", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "c"},
				Items:                []corev1.KeyToPath{{Key: "a", Path: "a"}, {Key: "b", Path: "b", User: ptrTo64(1000)}},
			}}}}
		}, "spec.volumes[0].configMap.items[1].user", ReasonUnsupportedVolume},
		{"downwardAPI item user", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}, User: ptrTo64(1000)},
			}}}}}
		}, "spec.volumes[0].downwardAPI.items[0].user", ReasonUnsupportedVolume},
		{"projected token user", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "sa", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", User: ptrTo64(1000)}}},
			}}}}
		}, "spec.volumes[0].projected.sources[0].serviceAccountToken.user", ReasonUnsupportedVolume},
		{"second token for another audience", func(p *corev1.Pod) {
			token := func(aud string) corev1.Volume {
				return corev1.Volume{Name: "sa-" + aud, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", Audience: aud}}},
				}}}
			}
			p.Spec.Volumes = []corev1.Volume{token("vault"), token("vault"), token("s3")}
		}, "spec.volumes[2].projected.sources[0].serviceAccountToken", ReasonUnsupportedVolume},
		{"file and directory at once", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "a", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				{Path: "a/b", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			}}}}}
		}, "spec.volumes[0]", ReasonInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := minimalPod()
			tt.mutate(p)
			_, err := Translate(Input{Pod: p, NodeName: "n", ServiceAccountToken: "token", RuntimeHandler: "runsc", HostRuntimes: []string{"runc"}})
			var ue *UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is not an *UnsupportedError", err)
			}
			if ue.Field != tt.wantField || ue.Reason != tt.wantReason {
				t.Errorf("got field %q reason %q, want %q %q (%v)", ue.Field, ue.Reason, tt.wantField, tt.wantReason, err)
			}
		})
	}
}

// TestTranslateCACertFallback: a caller may pass the cluster CA instead of
// the kube-root-ca.crt ConfigMap.
func TestTranslateCACertFallback(t *testing.T) {
	p := minimalPod()
	p.Spec.Volumes = []corev1.Volume{{Name: "sa", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ConfigMap: &corev1.ConfigMapProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: kubeRootCAConfigMap},
			Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
		}}},
	}}}}
	plan, err := Translate(Input{Pod: p, CACert: []byte("PEM")})
	if err != nil {
		t.Fatal(err)
	}
	files := plan.Volumes[0].Files
	if len(files) != 1 || files[0].Path != "ca.crt" || string(files[0].Data) != "PEM" {
		t.Errorf("files = %+v", files)
	}
}
