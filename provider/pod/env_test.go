package pod

import (
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestTranslateEnv pins the kubelet's env semantics that the golden cases
// do not show one by one: precedence, expansion order, service variables,
// optional sources and which error wins.
func TestTranslateEnv(t *testing.T) {
	ptrTo := func(b bool) *bool { return &b }
	cmRef := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	settings := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "ns"},
		Data:       map[string]string{"A": "from-cm", "B": "cm-b"},
		BinaryData: map[string][]byte{"BIN": []byte("x")},
	}
	creds := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "ns"},
		Data:       map[string][]byte{"A": []byte("from-secret"), "token": []byte("t0k")},
	}
	fromKey := func(kind, name, key string, optional bool) *corev1.EnvVarSource {
		if kind == "secret" {
			return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: cmRef(name), Key: key, Optional: ptrTo(optional)}}
		}
		return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: cmRef(name), Key: key, Optional: ptrTo(optional)}}
	}
	tests := []struct {
		name       string
		mutate     func(*corev1.Pod)
		serviceEnv map[string]string
		want       map[string]string
		wantCmd    []string
		wantErr    string // "missing <kind> <name> <key>" or "unsupported <field>"
	}{
		{
			name: "envFrom in order, then env; the later wins",
			mutate: func(p *corev1.Pod) {
				c := &p.Spec.Containers[0]
				c.EnvFrom = []corev1.EnvFromSource{
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: cmRef("settings")}},
					{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: cmRef("creds")}},
				}
				c.Env = []corev1.EnvVar{{Name: "B", Value: "env-b"}, {Name: "B", Value: "env-b2"}}
			},
			want: map[string]string{"A": "from-secret", "B": "env-b2", "token": "t0k"},
		},
		{
			name: "expansion sees only what is defined before",
			mutate: func(p *corev1.Pod) {
				c := &p.Spec.Containers[0]
				c.EnvFrom = []corev1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: cmRef("settings")}}}
				c.Env = []corev1.EnvVar{
					{Name: "X", Value: "$(CM_A)-$(Y)"},
					{Name: "Y", Value: "y"},
					{Name: "Y", Value: "$(Y)$(Y)"},
				}
				c.Command = []string{"echo", "$(X)", "$(Y)", "$(CM_B)"}
			},
			want:    map[string]string{"CM_A": "from-cm", "CM_B": "cm-b", "X": "from-cm-$(Y)", "Y": "yy"},
			wantCmd: []string{"echo", "from-cm-$(Y)", "yy", "cm-b"},
		},
		{
			name: "service variables: seen after the container's, added when not defined",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{
					{Name: "URL", Value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
					{Name: "KUBERNETES_SERVICE_PORT", Value: "6443"},
					{Name: "AFTER", Value: "$(KUBERNETES_SERVICE_PORT)"},
				}
			},
			serviceEnv: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
			want: map[string]string{
				"URL":                     "https://10.96.0.1:443",
				"KUBERNETES_SERVICE_HOST": "10.96.0.1",
				"KUBERNETES_SERVICE_PORT": "6443",
				"AFTER":                   "6443",
			},
		},
		{
			name: "value wins over valueFrom; neither is an empty variable",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{
					{Name: "V", Value: "literal", ValueFrom: fromKey("secret", "absent", "k", false)},
					{Name: "EMPTY"},
				}
			},
			want: map[string]string{"V": "literal", "EMPTY": ""},
		},
		{
			name: "optional sources that are missing are skipped",
			mutate: func(p *corev1.Pod) {
				c := &p.Spec.Containers[0]
				c.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: cmRef("absent"), Optional: ptrTo(true)}}}
				c.Env = []corev1.EnvVar{
					{Name: "NO_OBJECT", ValueFrom: fromKey("configMap", "absent", "k", true)},
					{Name: "NO_KEY", ValueFrom: fromKey("secret", "creds", "absent", true)},
					{Name: "BINARY_ONLY", ValueFrom: fromKey("configMap", "settings", "BIN", true)},
					{Name: "TOKEN", ValueFrom: fromKey("secret", "creds", "token", true)},
				}
			},
			want: map[string]string{"TOKEN": "t0k"},
		},
		{
			name: "a missing key",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "K", ValueFrom: fromKey("configMap", "settings", "absent", false)}}
			},
			wantErr: "missing ConfigMap settings absent",
		},
		{
			name: "a missing envFrom object",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: cmRef("absent")}}}
			},
			wantErr: "missing ConfigMap absent ",
		},
		{
			name: "a permanent error after a missing object in the same container wins",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{
					{Name: "S", ValueFrom: fromKey("secret", "absent", "k", false)},
					{Name: "P", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.phase"}}},
				}
			},
			wantErr: "unsupported spec.containers[0].env[1].valueFrom.fieldRef.fieldPath",
		},
		{
			name: "a permanent error in a later container wins",
			mutate: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "i", Image: "busybox:1.36", Env: []corev1.EnvVar{{Name: "S", ValueFrom: fromKey("secret", "absent", "k", false)}}}}
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}
			},
			wantErr: "unsupported spec.containers[0].securityContext.seccompProfile",
		},
		{
			name: "a volume's missing object is reported before env's",
			mutate: func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vol-secret"}}}}
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "S", ValueFrom: fromKey("secret", "env-secret", "k", false)}}
			},
			wantErr: "missing Secret vol-secret ",
		},
		{
			name: "resourceFieldRef defaults to its own container",
			mutate: func(p *corev1.Pod) {
				c := &p.Spec.Containers[0]
				c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
				c.Env = []corev1.EnvVar{{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
					Resource: "limits.memory", Divisor: resource.MustParse("1Mi"),
				}}}}
			},
			want: map[string]string{"MEM": "64"},
		},
		{
			name: "the cluster CA stands in for kube-root-ca.crt",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "CA", ValueFrom: fromKey("configMap", kubeRootCAConfigMap, "ca.crt", false)}}
			},
			want: map[string]string{"CA": "PEM"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := minimalPod()
			tt.mutate(p)
			plan, err := Translate(Input{
				Pod: p, NodeName: "n", ServiceEnv: tt.serviceEnv, CACert: []byte("PEM"),
				Secrets:    map[string]*corev1.Secret{"creds": creds},
				ConfigMaps: map[string]*corev1.ConfigMap{"settings": settings},
			})
			if tt.wantErr != "" {
				if got := classify(err); got != tt.wantErr {
					t.Fatalf("error %v: got %q, want %q", err, got, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := plan.Containers[0]
			if !reflect.DeepEqual(c.Env, tt.want) {
				t.Errorf("env = %v, want %v", c.Env, tt.want)
			}
			if tt.wantCmd != nil && !reflect.DeepEqual(c.Entrypoint, tt.wantCmd) {
				t.Errorf("entrypoint = %q, want %q", c.Entrypoint, tt.wantCmd)
			}
		})
	}
}

// classify renders the kind of a Translate error for comparison.
func classify(err error) string {
	var (
		ue *UnsupportedError
		me *MissingObjectError
	)
	switch {
	case errors.As(err, &ue):
		return "unsupported " + ue.Field
	case errors.As(err, &me):
		return "missing " + me.Kind + " " + me.Name + " " + me.Key
	case err == nil:
		return "no error"
	}
	return err.Error()
}

// TestTranslateInvalidEnvKeys: keys are reported with their prefix, once per
// object and name however many containers use them, in a stable order.
func TestTranslateInvalidEnvKeys(t *testing.T) {
	p := minimalPod()
	from := []corev1.EnvFromSource{
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "odd"}}},
		{Prefix: "P_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "odd"}}},
	}
	p.Spec.Containers[0].EnvFrom = from
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "d", Image: "busybox:1.36", EnvFrom: from})
	plan, err := Translate(Input{
		Pod:        p,
		ConfigMaps: map[string]*corev1.ConfigMap{"odd": {Data: map[string]string{"z=z": "1", "ok": "2", "a=a": "3", "tab\t": "4"}}},
		Secrets:    map[string]*corev1.Secret{"odd": {Data: map[string][]byte{"s=s": []byte("5"), "1st": []byte("6")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`configMap odd: key "a=a"`,
		`configMap odd: key "tab\t"`,
		`configMap odd: key "z=z"`,
		`secret odd: key "P_s=s"`,
	}
	if !reflect.DeepEqual(plan.InvalidEnvKeys, want) {
		t.Errorf("InvalidEnvKeys = %q, want %q", plan.InvalidEnvKeys, want)
	}
	// A leading digit is a valid name since RelaxedEnvironmentVariableValidation.
	wantEnv := map[string]string{"ok": "2", "P_1st": "6"}
	for _, c := range plan.Containers {
		if !reflect.DeepEqual(c.Env, wantEnv) {
			t.Errorf("%s: env = %v, want %v", c.K8sName, c.Env, wantEnv)
		}
	}
}

func TestEnvFieldRef(t *testing.T) {
	p := minimalPod()
	p.Labels = map[string]string{"app": "x"}
	p.Annotations = map[string]string{"note": "n"}
	p.Spec.ServiceAccountName = "sa"
	tests := []struct {
		path, podIP, want string
	}{
		{"metadata.name", "", "p"},
		{"metadata.namespace", "", "ns"},
		{"metadata.uid", "", "uid-1"},
		{"metadata.labels['app']", "", "x"},
		{"metadata.labels['absent']", "", ""},
		{"metadata.annotations['note']", "", "n"},
		{"spec.nodeName", "", "node-from-input"}, // spec.nodeName unset: the node translating it
		{"spec.serviceAccountName", "", "sa"},
		{"status.podIP", "", ""}, // before the podman pod exists
		{"status.podIP", "10.88.0.7", "10.88.0.7"},
		{"status.podIPs", "10.88.0.7", "10.88.0.7"},
		{"status.hostIP", "", "192.0.2.10"},
		{"status.hostIPs", "", "192.0.2.10"},
	}
	for _, tt := range tests {
		t.Run(tt.path+"/"+tt.podIP, func(t *testing.T) {
			tr := &translator{pod: p, in: Input{NodeName: "node-from-input", PodIP: tt.podIP, HostIP: "192.0.2.10"}}
			got, err := tr.envFieldRef("f", &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: tt.path})
			if err != nil || got != tt.want {
				t.Errorf("envFieldRef(%s) = %q, %v; want %q", tt.path, got, err, tt.want)
			}
		})
	}
	for _, path := range []string{"metadata.labels", "metadata.annotations", "status.phase", "spec.restartPolicy", "spec.schedulerName", "metadata.generateName", "metadata.name['x']"} {
		t.Run(path, func(t *testing.T) {
			tr := &translator{pod: p}
			var ue *UnsupportedError
			if _, err := tr.envFieldRef("f", &corev1.ObjectFieldSelector{FieldPath: path}); !errors.As(err, &ue) {
				t.Errorf("envFieldRef(%s) = %v, want an *UnsupportedError", path, err)
			}
		})
	}
}

func TestReferencedObjects(t *testing.T) {
	ref := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	p := minimalPod()
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{ref("pull-secret")}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "a", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vol-secret"}}},
		{Name: "b", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("vol-cm")}}},
		{Name: "c", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: ref("proj-secret")}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: ref(kubeRootCAConfigMap)}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
		}}}},
		{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "e", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vol-secret"}}}, // again
	}
	p.Spec.InitContainers = []corev1.Container{{Name: "i", EnvFrom: []corev1.EnvFromSource{
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("init-envfrom-secret")}},
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("init-envfrom-cm")}},
	}}}
	p.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "PLAIN", Value: "x"},
		{Name: "F", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "S", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("env-secret"), Key: "k"}}},
		{Name: "C", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("env-cm"), Key: "k"}}},
		{Name: "S2", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("vol-secret"), Key: "k"}}},
	}

	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Env: []corev1.EnvVar{
		{Name: "D", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("debug-secret"), Key: "k"}}},
	}}}}

	secrets, configMaps := ReferencedObjects(p)
	wantSecrets := []string{"debug-secret", "env-secret", "init-envfrom-secret", "proj-secret", "vol-secret"}
	wantConfigMaps := []string{"env-cm", "init-envfrom-cm", kubeRootCAConfigMap, "vol-cm"}
	if !reflect.DeepEqual(secrets, wantSecrets) {
		t.Errorf("secrets = %q, want %q", secrets, wantSecrets)
	}
	if !reflect.DeepEqual(configMaps, wantConfigMaps) {
		t.Errorf("configMaps = %q, want %q", configMaps, wantConfigMaps)
	}

	if s, c := ReferencedObjects(minimalPod()); s != nil || c != nil {
		t.Errorf("a pod referencing nothing: %q, %q; want nil, nil", s, c)
	}
}
