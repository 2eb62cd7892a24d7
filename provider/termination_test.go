package provider

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// endWithMessage ends the first run of the container main with code and
// checks its terminated state's message, and whether its logs were read.
func endWithMessage(h *harness, code int32, want string, readLogs bool) {
	h.t.Helper()
	h.rt.exit(ctrName("main", 0), code)
	h.sync()
	term := h.state("main").State.Terminated
	if term == nil {
		h.t.Fatalf("not terminated: %+v", h.state("main"))
	}
	if term.Message != want {
		h.t.Errorf("message %q, want %q", term.Message, want)
	}
	if n := len(h.rt.called("logs ")); (n > 0) != readLogs {
		h.t.Errorf("%d log reads, want any: %t", n, readLogs)
	}
}

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
			endWithMessage(h, tt.code, tt.want, tt.readLog)
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

// TestWorkerTerminationMessageFile: every run of a container with a
// terminationMessagePath gets an empty file of its own, created on the
// host before the container and bind-mounted at the path; when the run
// has ended its message is the last 4096 bytes of that file, which wins
// over FallbackToLogsOnError's logs unless empty.
func TestWorkerTerminationMessageFile(t *testing.T) {
	file := func(attempt int) string {
		return "/volumes/" + pod.TerminationVolumeName(testUID) + "/" + pod.TerminationFile("main", attempt)
	}
	long := strings.Repeat("y", 5000) + "the end"
	tests := []struct {
		name      string
		policy    corev1.TerminationMessagePolicy
		code      int32
		written   string
		logs      string
		want      string
		readLogs  bool
		writeNone bool
	}{
		{name: "file", policy: corev1.TerminationMessageReadFile, code: 3, written: "bye", want: "bye"},
		{name: "file on success", policy: corev1.TerminationMessageReadFile, code: 0, written: "done", want: "done"},
		{name: "last 4096 bytes", policy: corev1.TerminationMessageReadFile, code: 1, written: long, want: long[len(long)-4096:]},
		{name: "nothing written", policy: corev1.TerminationMessageReadFile, code: 1, logs: "error\n", writeNone: true},
		{name: "file wins over logs", policy: corev1.TerminationMessageFallbackToLogsOnError, code: 1, written: "from file", logs: "from logs\n", want: "from file"},
		{name: "empty file falls back to logs", policy: corev1.TerminationMessageFallbackToLogsOnError, code: 1, logs: "from logs\n", want: "from logs\n", readLogs: true, writeNone: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pd := testPod(corev1.RestartPolicyNever, "main")
			pd.Spec.Containers[0].TerminationMessagePath = "/dev/termination-log"
			pd.Spec.Containers[0].TerminationMessagePolicy = tt.policy
			h := newHarness(t, pd)
			h.rt.images["registry.test/main:1"] = true
			if tt.logs != "" {
				h.rt.logs = map[string]string{ctrName("main", 0): tt.logs}
			}
			h.sync()
			h.wantCalls("empty-file "+file(0), 1)
			if src := h.rt.bindSource(ctrName("main", 0), "/dev/termination-log"); src != file(0) {
				t.Fatalf("termination file mounted from %q, want %q", src, file(0))
			}
			if !tt.writeNone {
				h.rt.writeMounted(ctrName("main", 0), "/dev/termination-log", tt.written)
			}
			endWithMessage(h, tt.code, tt.want, tt.readLogs)
			h.sync()
			h.wantCalls("file-tail ", 1) // read once per run
		})
	}

	t.Run("a new run does not report the previous run's message", func(t *testing.T) {
		pd := testPod(corev1.RestartPolicyOnFailure, "main")
		pd.Spec.Containers[0].TerminationMessagePath = "/dev/termination-log"
		h := newHarness(t, pd)
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.rt.writeMounted(ctrName("main", 0), "/dev/termination-log", "first")
		h.rt.exit(ctrName("main", 0), 1)
		h.sync()
		h.clock.Step(time.Minute) // past the back-off
		h.sync()
		h.wantCalls("empty-file "+file(1), 1)
		h.rt.exit(ctrName("main", 1), 0)
		h.sync()
		st := h.state("main")
		if st.State.Terminated == nil || st.State.Terminated.Message != "" {
			t.Errorf("second run's state %+v, want terminated without message", st.State)
		}
		if last := st.LastTerminationState.Terminated; last == nil || last.Message != "first" {
			t.Errorf("last state %+v, want the first run's message", st.LastTerminationState)
		}
	})

	t.Run("12 KiB across the pod", func(t *testing.T) {
		names := []string{"a", "b", "c", "d"}
		pd := testPod(corev1.RestartPolicyNever, names...)
		for i := range pd.Spec.Containers {
			pd.Spec.Containers[i].TerminationMessagePath = "/dev/termination-log"
		}
		h := newHarness(t, pd)
		for _, n := range names {
			h.rt.images["registry.test/"+n+":1"] = true
		}
		h.sync()
		for _, n := range names {
			h.rt.writeMounted(ctrName(n, 0), "/dev/termination-log", strings.Repeat(n, 4096))
			h.rt.exit(ctrName(n, 0), 0)
		}
		h.sync()
		for _, n := range names {
			term := h.state(n).State.Terminated
			if term == nil || term.Message != strings.Repeat(n, 12<<10/len(names)) {
				t.Errorf("container %s: state %+v, want its message cut to %d bytes", n, h.state(n).State, 12<<10/len(names))
			}
		}
	})
}
