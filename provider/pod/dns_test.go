package pod

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestParseResolvConf(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     ResolvConf
	}{
		{"empty", "", ResolvConf{}},
		{"systemd-resolved stub", "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
			ResolvConf{Nameservers: []string{"127.0.0.53"}, Searches: []string{"lan"}, Options: []string{"edns0", "trust-ad"}}},
		{"nameservers accumulate, first field only", "nameserver 10.0.0.1\n  nameserver\t10.0.0.2 extra\nnameserver\n",
			ResolvConf{Nameservers: []string{"10.0.0.1", "10.0.0.2"}}},
		{"last search line wins, without . and trailing dots", "search a.example b.example\nsearch c.example. . d.example\n",
			ResolvConf{Searches: []string{"c.example", "d.example"}}},
		{"options accumulate, a later one of a name replacing in place", "options ndots:2 rotate\noptions timeout:1 ndots:5\n",
			ResolvConf{Options: []string{"ndots:5", "rotate", "timeout:1"}}},
		{"comments and unknown lines", "#nameserver 10.0.0.9\ndomain example.org\nsortlist 10.0.0.0/8\n", ResolvConf{}},
		{"no final newline, CRLF", "nameserver 10.0.0.1\r\nsearch x.example", ResolvConf{Nameservers: []string{"10.0.0.1"}, Searches: []string{"x.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseResolvConf([]byte(tc.in))
			if !slices.Equal(got.Nameservers, tc.want.Nameservers) || !slices.Equal(got.Searches, tc.want.Searches) || !slices.Equal(got.Options, tc.want.Options) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMergeDNSConfig(t *testing.T) {
	domains := func(n int, format string) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf(format, i))
		}
		return out
	}
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) // 253
	for _, tc := range []struct {
		name     string
		base     ResolvConf
		pod      *corev1.PodDNSConfig
		want     ResolvConf
		warnings []string
	}{
		{
			name: "appended without duplicates",
			base: ResolvConf{Nameservers: []string{"10.0.0.1", "10.0.0.2"}, Searches: []string{"a.example", "b.example"}},
			pod:  &corev1.PodDNSConfig{Nameservers: []string{"10.0.0.2", "10.0.0.3", "10.0.0.3"}, Searches: []string{"b.example", "c.example", "a.example"}},
			want: ResolvConf{Nameservers: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, Searches: []string{"a.example", "b.example", "c.example"}},
		},
		{
			name: "options: the pod's value wins, a value-less option drops the host's value",
			base: ResolvConf{Options: []string{"ndots:5", "timeout:2", "rotate"}},
			pod: &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{
				{Name: "timeout"}, {Name: "ndots", Value: ptr.To("1")}, {Name: "edns0", Value: ptr.To("")}, {Name: "attempts", Value: ptr.To("2")}, {Name: "attempts", Value: ptr.To("4")},
			}},
			want: ResolvConf{Options: []string{"ndots:1", "timeout", "rotate", "edns0", "attempts:4"}},
		},
		{
			name:     "at most 3 nameservers: the pod's come last and are cut first",
			base:     ResolvConf{Nameservers: []string{"10.0.0.1", "10.0.0.2"}},
			pod:      &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "192.0.2.2"}},
			want:     ResolvConf{Nameservers: []string{"10.0.0.1", "10.0.0.2", "192.0.2.1"}},
			warnings: []string{"Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.0.0.1 10.0.0.2 192.0.2.1"},
		},
		{
			name:     "at most 32 searches",
			base:     ResolvConf{Searches: domains(30, "h%d.example")},
			pod:      &corev1.PodDNSConfig{Searches: domains(5, "p%d.example")},
			want:     ResolvConf{Searches: append(domains(30, "h%d.example"), "p0.example", "p1.example")},
			warnings: []string{"Search Line limits were exceeded, some search paths have been omitted, the applied search line is: " + strings.Join(append(domains(30, "h%d.example"), "p0.example", "p1.example"), " ")},
		},
		{
			name: "a search of 253 characters is kept, and the line up to 2048",
			pod:  &corev1.PodDNSConfig{Searches: append(slices.Repeat([]string{long}, 1), domains(8, long[:249]+"%03d")...)},
			// 253 + 8*252 characters and 8 spaces: 2277; cut from the end to 8 domains (2024).
			want:     ResolvConf{Searches: append([]string{long}, domains(7, long[:249]+"%03d")...)},
			warnings: []string{"Search Line limits were exceeded, some search paths have been omitted, the applied search line is: " + strings.Join(append([]string{long}, domains(7, long[:249]+"%03d")...), " ")},
		},
		{
			name:     "a search over 253 characters is left out",
			pod:      &corev1.PodDNSConfig{Searches: []string{"a.example", long + "e", "b.example"}},
			want:     ResolvConf{Searches: []string{"a.example", "b.example"}},
			warnings: []string{"Search Line limits were exceeded, some search paths have been omitted, the applied search line is: a.example b.example"},
		},
		{
			name:     "the base's own excess is cut too",
			base:     ResolvConf{Nameservers: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
			pod:      &corev1.PodDNSConfig{Searches: []string{"a.example"}},
			want:     ResolvConf{Nameservers: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, Searches: []string{"a.example"}},
			warnings: []string{"Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.0.0.1 10.0.0.2 10.0.0.3"},
		},
		{
			name: "nil dnsConfig: the base",
			base: ResolvConf{Nameservers: []string{"10.0.0.1"}, Options: []string{"ndots:2"}},
			want: ResolvConf{Nameservers: []string{"10.0.0.1"}, Options: []string{"ndots:2"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ResolvConf{Nameservers: slices.Clone(tc.base.Nameservers), Searches: slices.Clone(tc.base.Searches), Options: slices.Clone(tc.base.Options)}
			got, warnings := MergeDNSConfig(tc.base, tc.pod)
			if !slices.Equal(got.Nameservers, tc.want.Nameservers) || !slices.Equal(got.Searches, tc.want.Searches) || !slices.Equal(got.Options, tc.want.Options) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
			if !slices.Equal(warnings, tc.warnings) {
				t.Errorf("warnings\n%q\nwant\n%q", warnings, tc.warnings)
			}
			if !slices.Equal(tc.base.Nameservers, before.Nameservers) || !slices.Equal(tc.base.Searches, before.Searches) || !slices.Equal(tc.base.Options, before.Options) {
				t.Errorf("the base changed: %+v, was %+v", tc.base, before)
			}
		})
	}
}

func TestPodReachable(t *testing.T) {
	got := podReachable([]string{"127.0.0.53", "10.0.0.1", "::1", "127.1.2.3", "fe80::1%eth0", "fe80::1", "2001:db8::1", "bogus"})
	if want := []string{"10.0.0.1", "fe80::1", "2001:db8::1"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestNeedsHostDNS: only a dnsConfig merged onto the host's resolvers
// needs the host's resolv.conf, so that other pods cost no host command.
func TestNeedsHostDNS(t *testing.T) {
	for _, tc := range []struct {
		policy corev1.DNSPolicy
		config *corev1.PodDNSConfig
		want   bool
	}{
		{corev1.DNSClusterFirst, nil, false},
		{corev1.DNSDefault, &corev1.PodDNSConfig{}, false},
		{corev1.DNSDefault, &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "rotate"}}}, true},
		{corev1.DNSClusterFirst, &corev1.PodDNSConfig{Searches: []string{"a.example"}}, true},
		{"", &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.53"}}, true},
		{corev1.DNSNone, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.53"}}, false},
	} {
		p := &corev1.Pod{Spec: corev1.PodSpec{DNSPolicy: tc.policy, DNSConfig: tc.config}}
		if got := NeedsHostDNS(p); got != tc.want {
			t.Errorf("NeedsHostDNS(%q, %+v) = %v, want %v", tc.policy, tc.config, got, tc.want)
		}
	}
}
