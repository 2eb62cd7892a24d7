package config

import (
	"strings"
	"testing"
)

func TestNodePortRange(t *testing.T) {
	for _, tc := range []struct {
		port        int32
		rng         string
		first, last int32
		ok          bool
	}{
		{10250, "", 10251, 10450, true},
		{10350, "20000-20009", 20000, 20009, true},
		{10250, "20000-20000", 20000, 20000, true},
		{65500, "", 0, 0, false},
		{10250, "20009-20000", 0, 0, false},
		{10250, "20000", 0, 0, false},
		{10250, "0-10", 0, 0, false},
		{10250, "100-70000", 0, 0, false},
		{10250, "a-b", 0, 0, false},
	} {
		c := &KubeletConfiguration{KubeletPort: tc.port, KubeletPortRange: tc.rng}
		first, last, err := c.NodePortRange()
		if (err == nil) != tc.ok || first != tc.first || last != tc.last {
			t.Errorf("port %d range %q: got %d-%d, %v; want %d-%d ok=%v", tc.port, tc.rng, first, last, err, tc.first, tc.last, tc.ok)
		}
	}
	c := &KubeletConfiguration{KubeletPort: 10300, KubeletPortRange: "10251-10450"}
	SetDefaults(c)
	if errs := c.Validate(); !hasField(errs.ToAggregate(), "kubeletPortRange") {
		t.Errorf("a range containing kubeletPort was accepted: %v", errs)
	}
}

func hasField(err error, f string) bool {
	return err != nil && strings.Contains(err.Error(), f)
}
