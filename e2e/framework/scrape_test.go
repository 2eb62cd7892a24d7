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

func TestMetricCount(t *testing.T) {
	text := `container_cpu_usage_seconds_total{container="a",namespace="ns",pod="nginx"} 1 1700000000000
container_cpu_usage_seconds_total{container="b",namespace="ns",pod="nginx"} 2 1700000000000
container_cpu_usage_seconds_total{container="a",namespace="ns",pod="nginx-2"} 3 1700000000000
pod_cpu_usage_seconds_total{namespace="ns",pod="nginx"} 3 1700000000000
`
	for _, tc := range []struct {
		name   string
		labels []string
		want   int
	}{
		{"container_cpu_usage_seconds_total", nil, 3},
		{"container_cpu_usage_seconds_total", []string{`namespace="ns"`, `pod="nginx"`}, 2},
		{"pod_cpu_usage_seconds_total", []string{`pod="nginx"`}, 1},
		{"pod_cpu_usage_seconds_total", []string{`pod="nginx-2"`}, 0},
	} {
		if got, err := MetricCount(text, tc.name, tc.labels...); err != nil || got != tc.want {
			t.Errorf("MetricCount(%s, %v) = %d, %v; want %d", tc.name, tc.labels, got, err, tc.want)
		}
	}
}
