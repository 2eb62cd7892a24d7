package pod

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestHostPathAllowed(t *testing.T) {
	allow := []string{"/srv/cache", "/var/lib/rbn/shared/", "relative/ignored"}
	tests := []struct {
		path      string
		wantClean string
		wantOK    bool
	}{
		{"/srv/cache", "/srv/cache", true},
		{"/srv/cache/", "/srv/cache", true},
		{"/srv/cache/ccache", "/srv/cache/ccache", true},
		{"/srv/cache//a/./b/", "/srv/cache/a/b", true},
		{"/var/lib/rbn/shared", "/var/lib/rbn/shared", true},
		{"/var/lib/rbn/shared/x", "/var/lib/rbn/shared/x", true},
		{"/srv/cache2", "/srv/cache2", false},
		{"/srv/cache2/x", "/srv/cache2/x", false},
		{"/srv/cachex", "/srv/cachex", false},
		{"/srv", "/srv", false},
		{"/srv/cache/..", "/srv", false},
		{"/srv/cache/../../etc", "/etc", false},
		{"/etc", "/etc", false},
		{"/", "/", false},
		{"srv/cache", "", false},
		{"relative/ignored", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			clean, ok := HostPathAllowed(tt.path, allow)
			if clean != tt.wantClean || ok != tt.wantOK {
				t.Errorf("HostPathAllowed(%q) = %q, %v; want %q, %v", tt.path, clean, ok, tt.wantClean, tt.wantOK)
			}
		})
	}
	t.Run("root entry allows everything", func(t *testing.T) {
		if _, ok := HostPathAllowed("/etc/shadow", []string{"/"}); !ok {
			t.Error("an allowlist of / must allow /etc/shadow")
		}
	})
	t.Run("empty allowlist allows nothing", func(t *testing.T) {
		if _, ok := HostPathAllowed("/srv/cache", nil); ok {
			t.Error("an empty allowlist must allow nothing")
		}
	})
}

func TestValidateFilePath(t *testing.T) {
	tests := []struct {
		path    string
		wantErr string // substring; "" for valid
	}{
		{"token", ""},
		{"registry/password", ""},
		{"a.b/c-d_e", ""},
		{".hidden", ""},
		{"a/..b", ""},
		{"", "must not be empty"},
		{"/etc/passwd", "must be relative"},
		{"../x", "must not start with"},
		{"..data", "must not start with"},
		{"a/../b", `must not contain ".."`},
		{"a/..", `must not contain ".."`},
		{"./a", `must not contain "."`},
		{"a//b", "empty segment"},
		{"a/", "empty segment"},
		{"a\x00b", "NUL"},
		{strings.Repeat("x", 256), "longer than 255"},
		{strings.Repeat("x/", 2049), "longer than 4096"},
	}
	for _, tt := range tests {
		name := tt.path
		if len(name) > 20 {
			name = name[:20] + "..."
		}
		t.Run(name, func(t *testing.T) {
			err := validateFilePath(tt.path)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("validateFilePath(%q) = %v, want nil", tt.path, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("validateFilePath(%q) = %v, want an error containing %q", tt.path, err, tt.wantErr)
			}
		})
	}
}

func TestCleanSubPath(t *testing.T) {
	tests := []struct {
		sub, want string
		wantErr   bool
	}{
		{"", "", false},
		{"cache", "cache", false},
		{"./logs/", "logs", false},
		{"a//b", "a/b", false},
		{".", "", false},
		{"..a", "..a", false},
		{"/abs", "", true},
		{"..", "", true},
		{"a/../../b", "", true},
		{"a/..", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.sub, func(t *testing.T) {
			got, err := cleanSubPath(tt.sub)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("cleanSubPath(%q) = %q, %v; want %q, error %v", tt.sub, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestMilliCPUToShares(t *testing.T) {
	tests := []struct {
		milli int64
		want  uint64
	}{
		{0, 2},
		{1, 2},
		{2, 2},
		{3, 3},
		{100, 102},
		{250, 256},
		{1000, 1024},
		{1500, 1536},
		{4000, 4096},
		{1000000, 262144},
	}
	for _, tt := range tests {
		if got := milliCPUToShares(tt.milli); got != tt.want {
			t.Errorf("milliCPUToShares(%d) = %d, want %d", tt.milli, got, tt.want)
		}
	}
}

func TestMilliCPUToQuota(t *testing.T) {
	tests := []struct {
		milli, want int64
	}{
		{0, 0},
		{1, 1000},
		{10, 1000},
		{11, 1100},
		{500, 50000},
		{1000, 100000},
		{4000, 400000},
	}
	for _, tt := range tests {
		if got := milliCPUToQuota(tt.milli); got != tt.want {
			t.Errorf("milliCPUToQuota(%d) = %d, want %d", tt.milli, got, tt.want)
		}
	}
}

func TestApplyResources(t *testing.T) {
	q := resource.MustParse
	tests := []struct {
		name              string
		res               corev1.ResourceRequirements
		mem, quota        int64
		period, cpuShares uint64
	}{
		{name: "none", cpuShares: 2},
		{
			name:      "memory limit in binary units",
			res:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("8Gi")}},
			mem:       8 << 30,
			cpuShares: 2,
		},
		{
			name:      "memory limit in decimal units",
			res:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("1G")}},
			mem:       1000000000,
			cpuShares: 2,
		},
		{
			name:      "cpu request only",
			res:       corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("250m")}},
			cpuShares: 256,
		},
		{
			name:      "cpu limit only: request defaults to the limit",
			res:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("2")}},
			quota:     200000,
			period:    100000,
			cpuShares: 2048,
		},
		{
			name: "cpu limit and request",
			res: corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceCPU: q("4")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: q("1500m")},
			},
			quota:     400000,
			period:    100000,
			cpuShares: 1536,
		},
		{
			name:      "tiny cpu limit hits the quota floor",
			res:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("5m")}},
			quota:     1000,
			period:    100000,
			cpuShares: 5,
		},
		{
			name:      "other resources are not enforced",
			res:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("10Gi"), "example.com/gpu": q("1")}},
			cpuShares: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Container
			applyResources(&c, tt.res, nil)
			if c.MemoryLimitBytes != tt.mem || c.CPUQuotaMicros != tt.quota || c.CPUPeriodMicros != tt.period || c.CPUShares != tt.cpuShares {
				t.Errorf("got memory %d quota %d period %d shares %d; want %d %d %d %d",
					c.MemoryLimitBytes, c.CPUQuotaMicros, c.CPUPeriodMicros, c.CPUShares, tt.mem, tt.quota, tt.period, tt.cpuShares)
			}
		})
	}
}

func TestDefaultPullPolicy(t *testing.T) {
	const digest = "sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"
	tests := []struct {
		image string
		want  corev1.PullPolicy
	}{
		{"busybox", corev1.PullAlways},
		{"busybox:latest", corev1.PullAlways},
		{"docker.io/library/busybox:latest", corev1.PullAlways},
		{"registry.example.com:5000/team/tool", corev1.PullAlways},
		{"busybox:1.36", corev1.PullIfNotPresent},
		{"registry.example.com:5000/team/tool:1.2.3", corev1.PullIfNotPresent},
		{"busybox@" + digest, corev1.PullIfNotPresent},
		{"busybox:latest@" + digest, corev1.PullAlways},
		{"busybox:1.36@" + digest, corev1.PullIfNotPresent},
		{"Not/A/Valid:Image:Name", corev1.PullIfNotPresent},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			if got := defaultPullPolicy(tt.image); got != tt.want {
				t.Errorf("defaultPullPolicy(%q) = %s, want %s", tt.image, got, tt.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "a", "EMPTY": "", "B": "$(A)"}
	tests := []struct {
		in, want string
	}{
		{"plain", "plain"},
		{"$(A)", "a"},
		{"x$(A)y$(A)z", "xayaz"},
		{"$(EMPTY)", ""},
		{"$(UNDEFINED)", "$(UNDEFINED)"},
		{"$$(A)", "$(A)"},
		{"$$", "$"},
		{"$$$(A)", "$a"},
		{"$A", "$A"},
		{"$", "$"},
		{"end$", "end$"},
		{"$(A", "$(A"},
		{"$()", "$()"},
		{"$(B)", "$(A)"}, // not recursive
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := expand(tt.in, env); got != tt.want {
				t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := expandAll(nil, env); got != nil {
		t.Errorf("expandAll(nil) = %#v, want nil (keep the image's)", got)
	}
}

func TestFormatMap(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]string
		want string
	}{
		{"empty", nil, ""},
		{"one", map[string]string{"app": "x"}, `app="x"`},
		{"sorted, quoted", map[string]string{"b": `say "hi"`, "a": "1\n2"}, "a=\"1\\n2\"\nb=\"say \\\"hi\\\"\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatMap(tt.in); got != tt.want {
				t.Errorf("formatMap = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTruncateHostname(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"short", "short"},
		{strings.Repeat("a", 63), strings.Repeat("a", 63)},
		{strings.Repeat("a", 70), strings.Repeat("a", 63)},
		{strings.Repeat("a", 61) + "-.b", strings.Repeat("a", 61)},
	}
	for _, tt := range tests {
		if got := truncateHostname(tt.in); got != tt.want {
			t.Errorf("truncateHostname(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCapNames(t *testing.T) {
	got := capNames([]string{"SYS_ADMIN", "CAP_NET_ADMIN", "ALL", "mknod"})
	want := []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "ALL", "CAP_MKNOD"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("capNames = %v, want %v", got, want)
	}
	if capNames(nil) != nil {
		t.Error("capNames(nil) must stay nil")
	}
}

func TestResourceFieldRefDivisors(t *testing.T) {
	q := resource.MustParse
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "c",
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("1500m"), corev1.ResourceMemory: q("1Gi")},
			Requests: corev1.ResourceList{corev1.ResourceMemory: q("100M")},
		},
	}, {
		Name: "nolimits",
	}}}}
	tr := &translator{pod: pod}
	withAlloc := &translator{pod: pod, in: Input{NodeAllocatable: corev1.ResourceList{
		corev1.ResourceCPU: q("7500m"), corev1.ResourceMemory: q("16Gi"),
	}}}
	tests := []struct {
		container, res, divisor string
		want                    string
		wantErr                 bool
		tr                      *translator
	}{
		{"c", "limits.cpu", "", "2", false, nil}, // ceil(1.5)
		{"c", "limits.cpu", "1m", "1500", false, nil},
		{"c", "requests.cpu", "1m", "1500", false, nil}, // defaults to the limit
		{"c", "limits.memory", "", "1073741824", false, nil},
		{"c", "limits.memory", "1Mi", "1024", false, nil},
		{"c", "limits.memory", "1G", "2", false, nil}, // ceil(1.07)
		{"c", "requests.memory", "1Mi", "96", false, nil},
		{"nolimits", "requests.cpu", "", "0", false, nil},
		{"nolimits", "limits.memory", "", "", true, nil}, // no node allocatable either
		{"nolimits", "limits.memory", "1Gi", "16", false, withAlloc},
		{"nolimits", "limits.cpu", "", "8", false, withAlloc}, // ceil(7.5)
		{"nolimits", "limits.ephemeral-storage", "", "", true, withAlloc},
		{"nolimits", "requests.memory", "", "0", false, withAlloc}, // requests never default to allocatable
		{"c", "limits.memory", "1Mi", "1024", false, withAlloc},    // the container's own limit wins
		{"c", "limits.hugepages-2Mi", "", "", true, nil},
		{"missing", "limits.cpu", "", "", true, nil},
		{"", "limits.cpu", "", "", true, nil}, // a volume must name its container
	}
	for _, tt := range tests {
		t.Run(tt.container+"/"+tt.res+"/"+tt.divisor, func(t *testing.T) {
			ref := &corev1.ResourceFieldSelector{ContainerName: tt.container, Resource: tt.res}
			if tt.divisor != "" {
				ref.Divisor = q(tt.divisor)
			}
			tr := tr
			if tt.tr != nil {
				tr = tt.tr
			}
			got, err := tr.resourceFieldRef("f", ref, nil)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("resourceFieldRef = %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
