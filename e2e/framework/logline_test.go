package framework

import (
	"testing"
	"time"
)

func TestLogLineConcerns(t *testing.T) {
	since := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, line string
		want       bool
	}{
		{"mentions the namespace", `{"time":"2026-12-04T20:00:01Z","level":"INFO","msg":"x","pod":"e2e-1/job-0"}`, true},
		{"a warning", `{"time":"2026-12-04T20:00:01Z","level":"WARN","msg":"lease lost"}`, true},
		{"an error", `{"time":"2026-12-04T20:00:01Z","level":"ERROR","msg":"x"}`, true},
		{"other info", `{"time":"2026-12-04T20:00:01Z","level":"INFO","msg":"x","pod":"e2e-2/job-0"}`, false},
		{"before since", `{"time":"2026-12-04T19:59:59Z","level":"WARN","msg":"x","pod":"e2e-1/job-0"}`, false},
		{"a crash", `panic: runtime error: invalid memory address`, true},
		{"other text", `goroutine 1 [running]:`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := logLineConcerns(tc.line, "e2e-1/", since); got != tc.want {
				t.Errorf("logLineConcerns(%s) = %v, want %v", tc.line, got, tc.want)
			}
		})
	}
}
