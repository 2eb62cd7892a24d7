package framework

import "testing"

func TestMetricSum(t *testing.T) {
	text := `# HELP x y
go_goroutines 245
rbn_orphans_removed_total{host="10.0.0.1:22",kind="container"} 6
rbn_orphans_removed_total{host="10.0.0.1:22",kind="pod"} 2
rbn_orphans_removed_total{host="10.0.0.2:22",kind="pod"} 7
rbn_orphans_removed_total_other 1
`
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
		found  bool
	}{
		{"go_goroutines", nil, 245, true},
		{"rbn_orphans_removed_total", nil, 15, true},
		{"rbn_orphans_removed_total", []string{`host="10.0.0.1:22"`}, 8, true},
		{"rbn_orphans_removed_total", []string{`host="10.0.0.1:22"`, `kind="pod"`}, 2, true},
		{"rbn_orphans_removed_total", []string{`host="10.0.0.3:22"`}, 0, false},
		{"absent", nil, 0, false},
	} {
		got, found, err := MetricSum(text, tc.name, tc.labels...)
		if err != nil || got != tc.want || found != tc.found {
			t.Errorf("MetricSum(%s, %v) = %v, %v, %v; want %v, %v", tc.name, tc.labels, got, found, err, tc.want, tc.found)
		}
	}
	if _, _, err := MetricSum("m{a=\"b\"} NaNx\n", "m"); err == nil {
		t.Error("a bad value parsed")
	}
	// MetricSample: the first matching sample, not their sum.
	if v, found, err := MetricSample(text, "rbn_orphans_removed_total", `host="10.0.0.1:22"`); err != nil || !found || v != 6 {
		t.Errorf("MetricSample = %v, %v, %v; want the first match, 6", v, found, err)
	}
	if _, found, err := MetricSample(text, "absent"); err != nil || found {
		t.Errorf("MetricSample of an absent metric: found %v, %v", found, err)
	}
}
