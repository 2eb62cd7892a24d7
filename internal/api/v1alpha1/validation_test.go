package v1alpha1

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// minimalSpec sets only the required fields.
func minimalSpec() *RemoteBuildNodeSpec {
	return &RemoteBuildNodeSpec{
		Address:      "build-01.example.com",
		SSHSecretRef: SecretReference{Name: "build-01-ssh", Namespace: "rbn-system"},
	}
}

func TestDefault(t *testing.T) {
	custom := []corev1.Taint{{Key: "example.com/dedicated", Value: "ci", Effect: corev1.TaintEffectNoExecute}}
	tests := []struct {
		name string
		in   func(*RemoteBuildNodeSpec)
		want func(*RemoteBuildNodeSpec)
	}{
		{
			name: "unset fields get defaults",
			want: func(s *RemoteBuildNodeSpec) {
				s.Port, s.User, s.PodmanSocket, s.MaxPods, s.ImagePull = 22, "root", "/run/podman/podman.sock", 110, ImagePullDirect
				s.Taints = []corev1.Taint{{Key: "rbn.dev/remote-build-node", Value: "true", Effect: corev1.TaintEffectNoSchedule}}
				s.Volumes = &VolumesSpec{Root: "/var/lib/rbn/volumes", SizeLimit: VolumeSizeLimitLoopFile}
				s.ImageGC = &ImageGCSpec{HighThresholdPercent: ptr.To[int32](85), LowThresholdPercent: ptr.To[int32](80),
					MinimumAge: &metav1.Duration{Duration: 2 * time.Minute}, MaximumAge: &metav1.Duration{}}
				s.ContainerLogMaxSize = ptr.To(resource.MustParse("100Mi"))
				s.DiskPressure = &DiskPressureSpec{AvailableBelow: "10%"}
			},
		},
		{
			name: "set fields are kept",
			in: func(s *RemoteBuildNodeSpec) {
				s.Port, s.User, s.PodmanSocket, s.MaxPods = 2222, "builder", "/run/user/1000/podman/podman.sock", 8
				s.Taints, s.ImagePull = custom, ImagePullThroughKubelet
				s.Volumes = &VolumesSpec{Root: "/srv/volumes", SizeLimit: VolumeSizeLimitNone}
				s.ImageGC = &ImageGCSpec{HighThresholdPercent: ptr.To[int32](100), LowThresholdPercent: ptr.To[int32](0),
					MinimumAge: &metav1.Duration{}, MaximumAge: &metav1.Duration{Duration: time.Hour}, Pinned: []string{"registry.test/builder:1"}}
				s.ContainerLogMaxSize = ptr.To(resource.MustParse("2Gi"))
				s.DiskPressure = &DiskPressureSpec{AvailableBelow: "20Gi"}
			},
			want: func(s *RemoteBuildNodeSpec) {
				s.Port, s.User, s.PodmanSocket, s.MaxPods = 2222, "builder", "/run/user/1000/podman/podman.sock", 8
				s.Taints, s.ImagePull = custom, ImagePullThroughKubelet
				s.Volumes = &VolumesSpec{Root: "/srv/volumes", SizeLimit: VolumeSizeLimitNone}
				s.ImageGC = &ImageGCSpec{HighThresholdPercent: ptr.To[int32](100), LowThresholdPercent: ptr.To[int32](0),
					MinimumAge: &metav1.Duration{}, MaximumAge: &metav1.Duration{Duration: time.Hour}, Pinned: []string{"registry.test/builder:1"}}
				s.ContainerLogMaxSize = ptr.To(resource.MustParse("2Gi"))
				s.DiskPressure = &DiskPressureSpec{AvailableBelow: "20Gi"}
			},
		},
		{
			name: "empty taint list means no taint",
			in:   func(s *RemoteBuildNodeSpec) { s.Taints = []corev1.Taint{} },
			want: func(s *RemoteBuildNodeSpec) {
				s.Port, s.User, s.PodmanSocket, s.MaxPods, s.ImagePull = 22, "root", "/run/podman/podman.sock", 110, ImagePullDirect
				s.Taints = []corev1.Taint{}
				s.Volumes = &VolumesSpec{Root: "/var/lib/rbn/volumes", SizeLimit: VolumeSizeLimitLoopFile}
				s.ImageGC = &ImageGCSpec{HighThresholdPercent: ptr.To[int32](85), LowThresholdPercent: ptr.To[int32](80),
					MinimumAge: &metav1.Duration{Duration: 2 * time.Minute}, MaximumAge: &metav1.Duration{}}
				s.ContainerLogMaxSize = ptr.To(resource.MustParse("100Mi"))
				s.DiskPressure = &DiskPressureSpec{AvailableBelow: "10%"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := minimalSpec()
			if tt.in != nil {
				tt.in(in)
			}
			before := in.DeepCopy()
			want := minimalSpec()
			tt.want(want)

			got := Default(in)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Default:\n got %+v\nwant %+v", got, want)
			}
			if !reflect.DeepEqual(in, before) {
				t.Errorf("Default modified its input:\n got %+v\nwant %+v", in, before)
			}
			if again := Default(got); !reflect.DeepEqual(again, got) {
				t.Errorf("Default is not idempotent:\n once  %+v\n twice %+v", got, again)
			}
			// Defaulted specs must not share taints: one node's change is not another's.
			if other := Default(in); len(other.Taints) > 0 {
				other.Taints[0].Key = "changed"
				if got.Taints[0].Key == "changed" {
					t.Error("two defaulted specs share their taints")
				}
			}
		})
	}
}

// errKey is how a test names an expected error: its type and field path.
func errKey(e *field.Error) string { return string(e.Type) + " " + e.Field }

func invalid(f string) string      { return string(field.ErrorTypeInvalid) + " " + f }
func required(f string) string     { return string(field.ErrorTypeRequired) + " " + f }
func forbidden(f string) string    { return string(field.ErrorTypeForbidden) + " " + f }
func notSupported(f string) string { return string(field.ErrorTypeNotSupported) + " " + f }
func duplicate(f string) string    { return string(field.ErrorTypeDuplicate) + " " + f }

func TestValidate(t *testing.T) {
	taint := func(key, value string, effect corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: key, Value: value, Effect: effect}
	}
	tests := []struct {
		name     string
		nodeName string // default build-01
		mutate   func(*RemoteBuildNodeSpec)
		want     []string // errKey of every expected error, in any order
	}{
		{name: "minimal spec after Default"},
		{
			name: "every field set",
			mutate: func(s *RemoteBuildNodeSpec) {
				s.Port, s.User, s.PodmanSocket, s.MaxPods = 2222, "builder", "/run/user/1000/podman/podman.sock", 20
				s.Labels = map[string]string{"rbn.dev/pool": "arm", "example.com/team": "ci"}
				s.Taints = []corev1.Taint{
					taint("rbn.dev/pool", "arm", corev1.TaintEffectNoSchedule),
					taint("rbn.dev/pool", "arm", corev1.TaintEffectNoExecute), // same key, other effect
					taint("example.com/dedicated", "", corev1.TaintEffectPreferNoSchedule),
				}
				s.Reserved = corev1.ResourceList{
					corev1.ResourceCPU:              resource.MustParse("500m"),
					corev1.ResourceMemory:           resource.MustParse("2Gi"),
					corev1.ResourceEphemeralStorage: resource.MustParse("0"),
				}
				s.HostPathAllowlist = []string{"/var/cache/ccache", "/srv/build"}
				s.AllowedUnsafeSysctls = []string{"net.core.somaxconn", "kernel.shm*", "kernel.msgmax", "fs.mqueue.*", "net/ipv4/tcp_max_syn_backlog"}
				s.ImagePull = ImagePullThroughKubelet
			},
		},
		{
			name:   "unknown image pull mode",
			mutate: func(s *RemoteBuildNodeSpec) { s.ImagePull = "Relay" },
			want:   []string{notSupported("spec.imagePull")},
		},

		// Address.
		{name: "IPv4 address", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "192.0.2.10" }},
		{name: "IPv6 address", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "2001:db8::10" }},
		{name: "IPv6 unique local address", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "fd00::1" }},
		{name: "DNS name in upper case", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "Build-01.Example.COM" }},
		{name: "empty address", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "" }, want: []string{required("spec.address")}},
		{name: "DNS name with port", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "build-01.example.com:22" }, want: []string{invalid("spec.address")}},
		{name: "IPv4 address with port", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "192.0.2.10:22" }, want: []string{invalid("spec.address")}},
		{name: "IPv6 address in brackets", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "[fd00::1]" }, want: []string{invalid("spec.address")}},
		{name: "IPv6 address with port", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "[fd00::1]:22" }, want: []string{invalid("spec.address")}},
		{name: "address with user", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "root@build-01.example.com" }, want: []string{invalid("spec.address")}},
		{name: "address as URL", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "ssh://build-01.example.com" }, want: []string{invalid("spec.address")}},
		{name: "address with underscore", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "build_01.example.com" }, want: []string{invalid("spec.address")}},
		{name: "address with space", mutate: func(s *RemoteBuildNodeSpec) { s.Address = "build 01" }, want: []string{invalid("spec.address")}},

		// Name, port, user, secret, socket, maxPods.
		{name: "node name not a DNS subdomain", nodeName: "Build_01", want: []string{invalid("metadata.name")}},
		{name: "port above 65535", mutate: func(s *RemoteBuildNodeSpec) { s.Port = 65536 }, want: []string{invalid("spec.port")}},
		{name: "negative port", mutate: func(s *RemoteBuildNodeSpec) { s.Port = -1 }, want: []string{invalid("spec.port")}},
		{name: "port 65535", mutate: func(s *RemoteBuildNodeSpec) { s.Port = 65535 }},
		{name: "user with @", mutate: func(s *RemoteBuildNodeSpec) { s.User = "root@build-01" }, want: []string{invalid("spec.user")}},
		{name: "user with space", mutate: func(s *RemoteBuildNodeSpec) { s.User = "build er" }, want: []string{invalid("spec.user")}},
		{name: "secret name missing", mutate: func(s *RemoteBuildNodeSpec) { s.SSHSecretRef.Name = "" }, want: []string{invalid("spec.sshSecretRef.name")}},
		{name: "secret namespace not a label", mutate: func(s *RemoteBuildNodeSpec) { s.SSHSecretRef.Namespace = "rbn.system" }, want: []string{invalid("spec.sshSecretRef.namespace")}},
		{name: "relative podman socket", mutate: func(s *RemoteBuildNodeSpec) { s.PodmanSocket = "run/podman/podman.sock" }, want: []string{invalid("spec.podmanSocket")}},
		{name: "negative maxPods", mutate: func(s *RemoteBuildNodeSpec) { s.MaxPods = -1 }, want: []string{invalid("spec.maxPods")}},

		// Labels.
		{name: "label key invalid", mutate: func(s *RemoteBuildNodeSpec) { s.Labels = map[string]string{"bad key": "x"} }, want: []string{invalid("spec.labels")}},
		{name: "label value invalid", mutate: func(s *RemoteBuildNodeSpec) { s.Labels = map[string]string{"team": "a b"} }, want: []string{invalid("spec.labels")}},
		{name: "label kubernetes.io/arch", mutate: func(s *RemoteBuildNodeSpec) { s.Labels = map[string]string{"kubernetes.io/arch": "arm64"} }, want: []string{forbidden("spec.labels[kubernetes.io/arch]")}},
		{name: "label kubernetes.io/os", mutate: func(s *RemoteBuildNodeSpec) { s.Labels = map[string]string{"kubernetes.io/os": "linux"} }, want: []string{forbidden("spec.labels[kubernetes.io/os]")}},
		{name: "label kubernetes.io/hostname", mutate: func(s *RemoteBuildNodeSpec) { s.Labels = map[string]string{"kubernetes.io/hostname": "x"} }, want: []string{forbidden("spec.labels[kubernetes.io/hostname]")}},
		{name: "label rbn.dev/remote-build-node", mutate: func(s *RemoteBuildNodeSpec) { s.Labels = map[string]string{LabelRemoteBuildNode: "false"} }, want: []string{forbidden("spec.labels[rbn.dev/remote-build-node]")}},
		{name: "label rbn.dev/node", mutate: func(s *RemoteBuildNodeSpec) { s.Labels = map[string]string{LabelNode: "other"} }, want: []string{forbidden("spec.labels[rbn.dev/node]")}},
		{name: "volume root elsewhere", mutate: func(s *RemoteBuildNodeSpec) { s.Volumes.Root = "/srv/rbn-volumes" }},
		{name: "volumes without size limit", mutate: func(s *RemoteBuildNodeSpec) { s.Volumes.SizeLimit = VolumeSizeLimitNone }},
		{name: "relative volume root", mutate: func(s *RemoteBuildNodeSpec) { s.Volumes.Root = "var/lib/rbn" }, want: []string{invalid("spec.volumes.root")}},
		{name: "unclean volume root", mutate: func(s *RemoteBuildNodeSpec) { s.Volumes.Root = "/var/lib/rbn/" }, want: []string{invalid("spec.volumes.root")}},
		{name: "volume root /", mutate: func(s *RemoteBuildNodeSpec) { s.Volumes.Root = "/" }, want: []string{forbidden("spec.volumes.root")}},
		{name: "unknown volume size limit", mutate: func(s *RemoteBuildNodeSpec) { s.Volumes.SizeLimit = "Quota" }, want: []string{notSupported("spec.volumes.sizeLimit")}},
		{name: "container log max size 1Mi", mutate: func(s *RemoteBuildNodeSpec) { s.ContainerLogMaxSize = ptr.To(resource.MustParse("1Mi")) }},
		{name: "disk pressure percentage above 100", mutate: func(s *RemoteBuildNodeSpec) { s.DiskPressure = &DiskPressureSpec{AvailableBelow: "101%"} }, want: []string{invalid("spec.diskPressure.availableBelow")}},
		{name: "disk pressure neither percentage nor quantity", mutate: func(s *RemoteBuildNodeSpec) { s.DiskPressure = &DiskPressureSpec{AvailableBelow: "ten"} }, want: []string{invalid("spec.diskPressure.availableBelow")}},
		{name: "disk pressure negative quantity", mutate: func(s *RemoteBuildNodeSpec) { s.DiskPressure = &DiskPressureSpec{AvailableBelow: "-1Gi"} }, want: []string{invalid("spec.diskPressure.availableBelow")}},
		{name: "container log max size below 1Mi", mutate: func(s *RemoteBuildNodeSpec) { s.ContainerLogMaxSize = ptr.To(resource.MustParse("1000Ki")) }, want: []string{invalid("spec.containerLogMaxSize")}},
		{name: "image GC thresholds 100 and 0", mutate: func(s *RemoteBuildNodeSpec) {
			s.ImageGC.HighThresholdPercent, s.ImageGC.LowThresholdPercent = ptr.To[int32](100), ptr.To[int32](0)
		}},
		{name: "image GC threshold above 100", mutate: func(s *RemoteBuildNodeSpec) { s.ImageGC.HighThresholdPercent = ptr.To[int32](101) }, want: []string{invalid("spec.imageGC.highThresholdPercent")}},
		{name: "image GC low threshold negative", mutate: func(s *RemoteBuildNodeSpec) { s.ImageGC.LowThresholdPercent = ptr.To[int32](-1) }, want: []string{invalid("spec.imageGC.lowThresholdPercent")}},
		{name: "image GC low threshold not below high", mutate: func(s *RemoteBuildNodeSpec) { s.ImageGC.LowThresholdPercent = ptr.To[int32](85) }, want: []string{invalid("spec.imageGC.lowThresholdPercent")}},
		{name: "image GC negative minimum age", mutate: func(s *RemoteBuildNodeSpec) { s.ImageGC.MinimumAge.Duration = -time.Second }, want: []string{invalid("spec.imageGC.minimumAge")}},
		{name: "image GC maximum age below minimum", mutate: func(s *RemoteBuildNodeSpec) { s.ImageGC.MaximumAge.Duration = time.Minute }, want: []string{invalid("spec.imageGC.maximumAge")}},
		{name: "image GC maximum age", mutate: func(s *RemoteBuildNodeSpec) { s.ImageGC.MaximumAge.Duration = 24 * time.Hour }},
		{name: "image GC pinned reference invalid", mutate: func(s *RemoteBuildNodeSpec) { s.ImageGC.Pinned = []string{"registry.test/builder:1", "Builder:latest"} }, want: []string{invalid("spec.imageGC.pinned[1]")}},

		// Taints.
		{name: "no taints", mutate: func(s *RemoteBuildNodeSpec) { s.Taints = nil }},
		{name: "taint with unknown effect", mutate: func(s *RemoteBuildNodeSpec) { s.Taints = []corev1.Taint{taint("a", "b", "NoRun")} }, want: []string{notSupported("spec.taints[0].effect")}},
		{name: "taint without effect", mutate: func(s *RemoteBuildNodeSpec) { s.Taints = []corev1.Taint{taint("a", "b", "")} }, want: []string{notSupported("spec.taints[0].effect")}},
		{name: "taint with invalid key", mutate: func(s *RemoteBuildNodeSpec) {
			s.Taints = []corev1.Taint{taint("a b", "", corev1.TaintEffectNoSchedule)}
		}, want: []string{invalid("spec.taints[0].key")}},
		{name: "taint with invalid value", mutate: func(s *RemoteBuildNodeSpec) {
			s.Taints = []corev1.Taint{taint("a", "b c", corev1.TaintEffectNoSchedule)}
		}, want: []string{invalid("spec.taints[0].value")}},
		{
			name: "duplicate taints",
			mutate: func(s *RemoteBuildNodeSpec) {
				s.Taints = []corev1.Taint{
					taint("a", "1", corev1.TaintEffectNoSchedule),
					taint("b", "", corev1.TaintEffectNoSchedule),
					taint("a", "2", corev1.TaintEffectNoSchedule), // same key and effect, other value
				}
			},
			want: []string{duplicate("spec.taints[2]")},
		},

		// Reserve.
		{name: "reserve pods", mutate: func(s *RemoteBuildNodeSpec) {
			s.Reserved = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}
		}, want: []string{notSupported("spec.reserved[pods]")}},
		{name: "reserve an extended resource", mutate: func(s *RemoteBuildNodeSpec) {
			s.Reserved = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}
		}, want: []string{notSupported("spec.reserved[nvidia.com/gpu]")}},
		{name: "negative reserve", mutate: func(s *RemoteBuildNodeSpec) {
			s.Reserved = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("-1Gi")}
		}, want: []string{invalid("spec.reserved[memory]")}},
		{name: "negative reserve of an unsupported resource", mutate: func(s *RemoteBuildNodeSpec) {
			s.Reserved = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("-1")}
		}, want: []string{notSupported("spec.reserved[pods]"), invalid("spec.reserved[pods]")}},

		// hostPath allowlist.
		{name: "allowlist relative", mutate: func(s *RemoteBuildNodeSpec) { s.HostPathAllowlist = []string{"/srv", "var/cache"} }, want: []string{invalid("spec.hostPathAllowlist[1]")}},
		{name: "allowlist trailing slash", mutate: func(s *RemoteBuildNodeSpec) { s.HostPathAllowlist = []string{"/var/cache/"} }, want: []string{invalid("spec.hostPathAllowlist[0]")}},
		{name: "allowlist with ..", mutate: func(s *RemoteBuildNodeSpec) { s.HostPathAllowlist = []string{"/var/cache/../../etc"} }, want: []string{invalid("spec.hostPathAllowlist[0]")}},
		{name: "allowlist with //", mutate: func(s *RemoteBuildNodeSpec) { s.HostPathAllowlist = []string{"//"} }, want: []string{invalid("spec.hostPathAllowlist[0]")}},
		{name: "allowlist root", mutate: func(s *RemoteBuildNodeSpec) { s.HostPathAllowlist = []string{"/"} }, want: []string{forbidden("spec.hostPathAllowlist[0]")}},

		// Unsafe sysctls: the kubelet's rule, namespaced ones only.
		{name: "unsafe sysctl of the UTS namespace", mutate: func(s *RemoteBuildNodeSpec) { s.AllowedUnsafeSysctls = []string{"kernel.domainname"} }},
		{name: "unsafe sysctl not namespaced", mutate: func(s *RemoteBuildNodeSpec) {
			s.AllowedUnsafeSysctls = []string{"net.core.somaxconn", "vm.swappiness"}
		}, want: []string{invalid("spec.allowedUnsafeSysctls[1]")}},
		{name: "unsafe sysctl prefix not namespaced", mutate: func(s *RemoteBuildNodeSpec) { s.AllowedUnsafeSysctls = []string{"kernel.*"} }, want: []string{invalid("spec.allowedUnsafeSysctls[0]")}},
		{name: "unsafe sysctl of the user namespace", mutate: func(s *RemoteBuildNodeSpec) { s.AllowedUnsafeSysctls = []string{"user.max_user_namespaces"} }, want: []string{invalid("spec.allowedUnsafeSysctls[0]")}},
		{name: "unsafe sysctl with inner *", mutate: func(s *RemoteBuildNodeSpec) { s.AllowedUnsafeSysctls = []string{"net.*.somaxconn"} }, want: []string{invalid("spec.allowedUnsafeSysctls[0]")}},
		{name: "all sysctls", mutate: func(s *RemoteBuildNodeSpec) { s.AllowedUnsafeSysctls = []string{"*"} }, want: []string{invalid("spec.allowedUnsafeSysctls[0]")}},

		{
			name:     "every problem at once",
			nodeName: "Build_01",
			mutate: func(s *RemoteBuildNodeSpec) {
				s.Address = "root@build-01:22"
				s.Port = 70000
				s.User = "a b"
				s.SSHSecretRef = SecretReference{}
				s.PodmanSocket = "podman.sock"
				s.Labels = map[string]string{"kubernetes.io/arch": "arm64"}
				s.Taints = []corev1.Taint{taint("a", "", "NoRun"), taint("a", "", "NoRun")}
				s.MaxPods = -5
				s.Reserved = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1"), corev1.ResourceCPU: resource.MustParse("-1")}
				s.HostPathAllowlist = []string{"/", "relative"}
			},
			want: []string{
				invalid("metadata.name"),
				invalid("spec.address"),
				invalid("spec.port"),
				invalid("spec.user"),
				invalid("spec.sshSecretRef.name"),
				invalid("spec.sshSecretRef.namespace"),
				invalid("spec.podmanSocket"),
				forbidden("spec.labels[kubernetes.io/arch]"),
				notSupported("spec.taints[0].effect"),
				notSupported("spec.taints[1].effect"),
				duplicate("spec.taints[1]"),
				invalid("spec.maxPods"),
				notSupported("spec.reserved[pods]"),
				invalid("spec.reserved[cpu]"),
				forbidden("spec.hostPathAllowlist[0]"),
				invalid("spec.hostPathAllowlist[1]"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.nodeName
			if name == "" {
				name = "build-01"
			}
			spec := Default(minimalSpec())
			if tt.mutate != nil {
				tt.mutate(spec)
			}
			errs := Validate(name, spec)
			got := make([]string, 0, len(errs))
			for _, e := range errs {
				got = append(got, errKey(e))
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("Validate errors:\n got %s\nwant %s\nall: %v", strings.Join(got, "; "), strings.Join(want, "; "), errs)
			}
		})
	}
}

// TestDefaultedTaintsValidate: unset taints become the default taint, an
// empty list stays empty, and both validate.
func TestDefaultedTaintsValidate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		taints     []corev1.Taint
		wantTaints []corev1.Taint
	}{
		{"nil", nil, []corev1.Taint{DefaultTaint}},
		{"empty", []corev1.Taint{}, []corev1.Taint{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := minimalSpec()
			s.Taints = tc.taints
			d := Default(s)
			if !reflect.DeepEqual(d.Taints, tc.wantTaints) {
				t.Errorf("taints = %#v, want %#v", d.Taints, tc.wantTaints)
			}
			if errs := Validate("build-01", d); len(errs) > 0 {
				t.Errorf("Validate: %v", errs)
			}
		})
	}
}

func TestReservedOrZero(t *testing.T) {
	s := &RemoteBuildNodeSpec{Reserved: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}
	tests := []struct {
		name corev1.ResourceName
		want string
	}{
		{corev1.ResourceCPU, "250m"},
		{corev1.ResourceMemory, "0"},
	}
	for _, tt := range tests {
		t.Run(string(tt.name), func(t *testing.T) {
			got := s.ReservedOrZero(tt.name)
			if want := resource.MustParse(tt.want); got.Cmp(want) != 0 {
				t.Errorf("ReservedOrZero(%s) = %s, want %s", tt.name, got.String(), tt.want)
			}
		})
	}
}

func TestDiskThreshold(t *testing.T) {
	for _, tt := range []struct {
		in    string
		total uint64
		want  uint64
	}{
		{"10%", 1000, 100},
		{"0%", 1000, 0},
		{"100%", 1000, 1000},
		{"12.5%", 1000, 125},
		{"20Gi", 1000, 20 << 30},
		{"0", 1000, 0},
	} {
		got, err := DiskThreshold(tt.in, tt.total)
		if err != nil || got != tt.want {
			t.Errorf("DiskThreshold(%q, %d) = %d, %v; want %d", tt.in, tt.total, got, err, tt.want)
		}
	}
}
