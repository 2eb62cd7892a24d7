package nodeservice

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestName(t *testing.T) {
	long := strings.Repeat("a", 60)
	for _, tc := range []struct{ node, want string }{
		{"rbn-host-1", "rbn-node-rbn-host-1"},
		{"build.example.com", "rbn-node-build-example-com-"},
		{"build-example.com", "rbn-node-build-example-com-"},
		{long, "rbn-node-" + long[:43] + "-"},
	} {
		got := Name(tc.node)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("Name(%q) = %q, want prefix %q", tc.node, got, tc.want)
		}
		if errs := validation.IsDNS1035Label(got); len(errs) > 0 {
			t.Errorf("Name(%q) = %q: not a Service name: %v", tc.node, got, errs)
		}
	}
	if Name("build.example.com") == Name("build-example.com") {
		t.Errorf("two nodes share Service %q", Name("build.example.com"))
	}
}
