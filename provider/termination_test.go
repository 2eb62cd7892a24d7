package provider

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestWorkerFallbackToLogsOnError: a failed container whose policy is
// FallbackToLogsOnError has the tail of its logs as termination message
// (the last 2048 bytes of the last 80 lines, as the kubelet); one that
// succeeds, or has the default policy, has none and its logs are not read.
func TestWorkerFallbackToLogsOnError(t *testing.T) {
	long := strings.Repeat("x", 3000)
	tests := []struct {
		name    string
		policy  corev1.TerminationMessagePolicy
		code    int32
		logs    string
		want    string
		readLog bool
	}{
		{name: "failed", policy: corev1.TerminationMessageFallbackToLogsOnError, code: 2, logs: "compiling\nerror: no such file\n", want: "compiling\nerror: no such file\n", readLog: true},
		{name: "long log keeps its end", policy: corev1.TerminationMessageFallbackToLogsOnError, code: 1, logs: "start\n" + long + "\nthe end\n", want: (long + "\nthe end\n")[len(long)+9-2048:], readLog: true},
		{name: "unreadable log", policy: corev1.TerminationMessageFallbackToLogsOnError, code: 1, want: "Error on reading termination message from logs: fake runtime: no logs", readLog: true},
		{name: "succeeded", policy: corev1.TerminationMessageFallbackToLogsOnError, code: 0, logs: "done\n"},
		{name: "default policy", policy: corev1.TerminationMessageReadFile, code: 1, logs: "error\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pd := testPod(corev1.RestartPolicyNever, "main")
			pd.Spec.Containers[0].TerminationMessagePolicy = tt.policy
			h := newHarness(t, pd)
			h.rt.images["registry.test/main:1"] = true
			if tt.logs != "" {
				h.rt.logs = map[string]string{ctrName("main", 0): tt.logs}
			}
			h.sync()
			h.rt.exit(ctrName("main", 0), tt.code)
			h.sync()
			term := h.state("main").State.Terminated
			if term == nil {
				t.Fatalf("not terminated: %+v", h.state("main"))
			}
			if term.Message != tt.want {
				t.Errorf("message %q, want %q", term.Message, tt.want)
			}
			if n := len(h.rt.called("logs ")); (n > 0) != tt.readLog {
				t.Errorf("%d log reads, want any: %t", n, tt.readLog)
			}
		})
	}
	t.Run("read once per run", func(t *testing.T) {
		pd := testPod(corev1.RestartPolicyOnFailure, "main")
		pd.Spec.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
		h := newHarness(t, pd)
		h.rt.images["registry.test/main:1"] = true
		h.rt.logs = map[string]string{ctrName("main", 0): "boom\n"}
		h.sync()
		h.rt.exit(ctrName("main", 0), 1)
		h.sync()
		h.sync()
		h.wantCalls("logs ", 1)
	})
}
