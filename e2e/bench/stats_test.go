package bench

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	d := func(ms ...int) []time.Duration {
		out := make([]time.Duration, len(ms))
		for i, m := range ms {
			out[i] = time.Duration(m) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{name: "empty", in: nil, q: 0.5, want: 0},
		{name: "median odd", in: d(30, 10, 20), q: 0.5, want: 20 * time.Millisecond},
		{name: "median even: mean of the middle two", in: d(40, 10, 30, 20), q: 0.5, want: 25 * time.Millisecond},
		{name: "p90 nearest rank", in: d(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), q: 0.9, want: 9 * time.Millisecond},
		{name: "p90 of two", in: d(10, 20), q: 0.9, want: 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tt.in...)
			if got := quantile(tt.in, tt.q); got != tt.want {
				t.Errorf("quantile(%v, %v) = %v, want %v", tt.in, tt.q, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.in[i] {
					t.Fatalf("quantile sorted its input: %v", tt.in)
				}
			}
		})
	}
}

func TestLogfmtField(t *testing.T) {
	line := `time=2026-12-03T18:00:00.5Z level=INFO msg="Waited before sending request" delay=1.2s`
	for key, want := range map[string]string{"time": "2026-12-03T18:00:00.5Z", "delay": "1.2s", "level": "INFO", "missing": ""} {
		if got := logfmtField(line, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

func TestParseAPIServerRequests(t *testing.T) {
	metrics := `# HELP apiserver_request_total Counter
apiserver_request_total{code="201",component="apiserver",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 12
apiserver_request_total{code="200",component="apiserver",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 5
apiserver_request_total{code="409",component="apiserver",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",group="",path="/healthz",resource="",scope="",subresource="",verb="GET",version=""} 7
`
	got := parseAPIServerRequests(metrics)
	want := map[string]float64{"POST pods": 12, "PATCH pods/status": 6, nonResource: 7}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if s := sumResource(got); s != 18 {
		t.Errorf("sumResource = %v, want 18 (non-resource requests excluded)", s)
	}
}

// The nodes' own requests: Leases and Nodes, lists and watches aside.
func TestNodeRequests(t *testing.T) {
	byKind := []kindCount{
		{"PUT leases", 300}, {"GET nodes", 100}, {"PATCH nodes/status", 100}, {"WATCH nodes", 50},
		{"LIST leases", 10}, {"PATCH pods/status", 1000}, {"GET leases", 20},
	}
	if got := nodeRequests(byKind, 100*time.Second); got != 5.2 {
		t.Errorf("nodeRequests = %v, want 5.2 ((300+100+100+20)/100 s)", got)
	}
	if got, want := kubeletsAtRest(50), 50*(0.2+1.0/300); got != want {
		t.Errorf("kubeletsAtRest(50) = %v, want %v", got, want)
	}
}
