package provider

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/remote-build-nodes/rbn/internal/testwait"
)

func TestPostStartHookFailureKillsTheContainer(t *testing.T) {
	for _, tc := range []struct {
		policy  corev1.RestartPolicy
		phase   corev1.PodPhase
		restart bool
	}{
		{corev1.RestartPolicyNever, corev1.PodFailed, false},
		{corev1.RestartPolicyAlways, corev1.PodRunning, true},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			pd := testPod(tc.policy, "main")
			pd.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
				Exec: &corev1.ExecAction{Command: []string{"setup", "--now"}},
			}}
			h := newHarness(t, pd)
			h.rt.images["registry.test/main:1"] = true
			h.rt.execSync = func(_ context.Context, _ string, cmd []string, out io.Writer) (int, error) {
				fmt.Fprint(out, "no such file")
				return 127, nil
			}
			h.sync()
			h.wantCalls("exec-sync "+ctrName("main", 0)+" setup --now", 1)
			h.wantCalls("stop "+ctrName("main", 0), 1)
			ev := h.events()
			h.wantEvent(ev, `Warning FailedPostStartHook Exec lifecycle hook ([setup --now]) for Container "main" in Pod "p_ns(`+testUID+`)" failed - error: command 'setup --now' exited with 127, message: "no such file"`)
			h.wantEvent(ev, "Normal Killing FailedPostStartHook")
			h.wantWaiting("main", "PostStartHookError")
			h.wantPhase(tc.phase)
			h.clock.Step(10 * time.Second)
			h.sync()
			if n := len(h.rt.called("start " + ctrName("main", 1))); (n == 1) != tc.restart {
				t.Fatalf("started again %d times, want restart=%t", n, tc.restart)
			}
		})
	}
}

func TestPreStopHookRunsBeforeTheStopWithinTheGracePeriod(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main", "web")
	pd.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"drain"}},
	}}
	pd.Spec.Containers[1].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	pd.Spec.Containers[1].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/drain", Port: intstr.FromString("http")},
	}}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"], h.rt.images["registry.test/web:1"] = true, true
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.rt.execSync = func(context.Context, string, []string, io.Writer) (int, error) {
		h.clock.Step(25 * time.Second) // the hook takes most of the grace period
		return 0, nil
	}
	h.w.terminate(30 * time.Second)
	if r := h.sync(); !r.finished {
		t.Fatalf("sync = %+v, want the worker finished", r)
	}
	calls := h.rt.calls
	hook := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "exec-sync ") && strings.HasSuffix(c, " drain") })
	stop := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "stop "+ctrName("main", 0)) })
	if hook < 0 || stop < hook {
		t.Fatalf("calls %q: want the preStop hook before the stop", calls)
	}
	// 30 s of grace, 25 s of them taken by the hook: SIGKILL 5 s after SIGTERM.
	h.wantCalls("stop "+ctrName("main", 0)+" 5s", 1)
	// The fake host has no network: the httpGet hook fails, and the
	// container is stopped all the same.
	h.wantEvent(h.events(), `Warning FailedPreStopHook HTTP lifecycle hook (/drain) for Container "web" in Pod "p_ns(`+testUID+`)" failed - error: `)
	if got := len(h.rt.called("stop " + ctrName("web", 0))); got != 1 {
		t.Fatalf("web stopped %d times, want 1", got)
	}
}

func TestPreStopHookLeavesAtLeastTwoSeconds(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	pd.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"drain"}},
	}}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	h.rt.execSync = func(context.Context, string, []string, io.Writer) (int, error) {
		h.clock.Step(time.Minute) // past the grace period
		return 0, nil
	}
	h.w.terminate(10 * time.Second)
	h.sync()
	h.wantCalls("stop "+ctrName("main", 0)+" 2s", 1)
}

func TestLimitedBufferKeepsTheStart(t *testing.T) {
	b := &limitedBuffer{limit: 4}
	for _, s := range []string{"ab", "cdef", "gh"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if b.String() != "abcd" {
		t.Fatalf("kept %q, want abcd", b.String())
	}
}

// A postStart hook that hangs does not hold up the pod's deletion.
func TestPostStartHookInterruptedByDeletion(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	pd.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"hang"}},
	}}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.rt.execSync = func(ctx context.Context, _ string, _ []string, _ io.Writer) (int, error) {
		<-ctx.Done()
		return -1, ctx.Err()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.sync()
	}()
	testwait.Eventually(t, "the postStart hook to run", func() bool { return len(h.rt.called("exec-sync")) == 1 })
	h.w.terminate(time.Second)
	<-done
	if r := h.sync(); !r.finished {
		t.Fatalf("sync = %+v, want the pod torn down", r)
	}
}
