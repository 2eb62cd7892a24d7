package provider

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func exited(code int32) *podman.ContainerState {
	return &podman.ContainerState{ID: "c", Status: "exited", ExitCode: code, StartedAt: t0, FinishedAt: t0.Add(time.Second)}
}

func TestContainerStatus(t *testing.T) {
	running := &podman.ContainerState{ID: "r", Status: "running", Running: true, StartedAt: t0, ImageID: "sha"}
	oom := exited(137)
	oom.OOMKilled = true
	cannotRun := &podman.ContainerState{ID: "x", Status: "exited", Error: "exec: no such file", FinishedAt: t0}
	tests := []struct {
		name    string
		o       observed
		waiting string
		reason  string
		code    int32
		ready   bool
		last    string
	}{
		{name: "never created", o: observed{name: "a"}, waiting: "ContainerCreating"},
		{name: "created not started", o: observed{name: "a", current: &podman.ContainerState{Status: "created"}}, waiting: "ContainerCreating"},
		{name: "running", o: observed{name: "a", current: running}, ready: true},
		{name: "completed", o: observed{name: "a", current: exited(0)}, reason: "Completed"},
		{name: "error", o: observed{name: "a", current: exited(2)}, reason: "Error", code: 2},
		{name: "oom", o: observed{name: "a", current: oom}, reason: "OOMKilled", code: 137},
		{name: "cannot run", o: observed{name: "a", current: cannotRun}, reason: "ContainerCannotRun", code: 128},
		{name: "sigkill under memory limit", o: observed{name: "a", current: exited(137), memoryLimited: true}, reason: "OOMKilled", code: 137},
		{name: "sigkill without memory limit", o: observed{name: "a", current: exited(137)}, reason: "Error", code: 137},
		{name: "pull back-off", o: observed{name: "a", waitingReason: "ImagePullBackOff", waitingMessage: "m"}, waiting: "ImagePullBackOff"},
		{name: "crash loop keeps last state", o: observed{name: "a", current: exited(1), attempt: 2, waitingReason: "CrashLoopBackOff"}, waiting: "CrashLoopBackOff", last: "Error"},
		{name: "restarted shows previous", o: observed{name: "a", current: running, previous: exited(4), attempt: 1}, ready: true, last: "Error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := containerStatus(tc.o)
			switch {
			case tc.waiting != "":
				if s.State.Waiting == nil || s.State.Waiting.Reason != tc.waiting {
					t.Fatalf("want waiting %s, got %+v", tc.waiting, s.State)
				}
			case tc.reason != "":
				if s.State.Terminated == nil || s.State.Terminated.Reason != tc.reason || s.State.Terminated.ExitCode != tc.code {
					t.Fatalf("want terminated %s/%d, got %+v", tc.reason, tc.code, s.State.Terminated)
				}
			default:
				if s.State.Running == nil {
					t.Fatalf("want running, got %+v", s.State)
				}
			}
			if s.Ready != tc.ready {
				t.Errorf("ready %v, want %v", s.Ready, tc.ready)
			}
			if s.RestartCount != int32(tc.o.attempt) {
				t.Errorf("restartCount %d", s.RestartCount)
			}
			gotLast := ""
			if s.LastTerminationState.Terminated != nil {
				gotLast = s.LastTerminationState.Terminated.Reason
			}
			if gotLast != tc.last {
				t.Errorf("lastState %q, want %q", gotLast, tc.last)
			}
		})
	}
}

func status(c *podman.ContainerState, waiting string) corev1.ContainerStatus {
	return containerStatus(observed{name: "c", current: c, waitingReason: waiting})
}

func TestPodPhase(t *testing.T) {
	running := &podman.ContainerState{Status: "running", Running: true, StartedAt: t0}
	never, onFailure, always := corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure, corev1.RestartPolicyAlways
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		init   []corev1.ContainerStatus
		app    []corev1.ContainerStatus
		want   corev1.PodPhase
	}{
		{"init running", never, []corev1.ContainerStatus{status(running, "")}, []corev1.ContainerStatus{status(nil, "PodInitializing")}, corev1.PodPending},
		{"init failed, never", never, []corev1.ContainerStatus{status(exited(1), "")}, []corev1.ContainerStatus{status(nil, "PodInitializing")}, corev1.PodFailed},
		{"init failed, onFailure retries", onFailure, []corev1.ContainerStatus{status(exited(1), "")}, []corev1.ContainerStatus{status(nil, "")}, corev1.PodPending},
		{"app creating", never, nil, []corev1.ContainerStatus{status(nil, "")}, corev1.PodPending},
		{"app running", never, []corev1.ContainerStatus{status(exited(0), "")}, []corev1.ContainerStatus{status(running, "")}, corev1.PodRunning},
		{"all succeeded", never, nil, []corev1.ContainerStatus{status(exited(0), ""), status(exited(0), "")}, corev1.PodSucceeded},
		{"one failed, never", never, nil, []corev1.ContainerStatus{status(exited(0), ""), status(exited(1), "")}, corev1.PodFailed},
		{"failed, onFailure restarting", onFailure, nil, []corev1.ContainerStatus{status(exited(1), "")}, corev1.PodRunning},
		{"succeeded under always restarts", always, nil, []corev1.ContainerStatus{status(exited(0), "")}, corev1.PodRunning},
		{"crash loop counts as stopped", always, nil, []corev1.ContainerStatus{status(exited(1), "CrashLoopBackOff")}, corev1.PodRunning},
		{"pull back-off is pending", never, nil, []corev1.ContainerStatus{status(nil, "ImagePullBackOff")}, corev1.PodPending},
		{"one running one waiting", never, nil, []corev1.ContainerStatus{status(running, ""), status(nil, "ErrImagePull")}, corev1.PodPending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := &corev1.PodSpec{RestartPolicy: tc.policy}
			if got := podPhase(spec, tc.init, tc.app); got != tc.want {
				t.Errorf("phase %s, want %s", got, tc.want)
			}
		})
	}
}

func TestRestartBackoff(t *testing.T) {
	for restarts, want := range map[int]time.Duration{0: 10 * time.Second, 1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 6: 300 * time.Second, 50: 300 * time.Second} {
		if got := restartBackoff(restarts); got != want {
			t.Errorf("restartBackoff(%d) = %s, want %s", restarts, got, want)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	for _, tc := range []struct {
		policy corev1.RestartPolicy
		code   int32
		want   bool
	}{
		{corev1.RestartPolicyAlways, 0, true}, {corev1.RestartPolicyAlways, 1, true},
		{corev1.RestartPolicyOnFailure, 0, false}, {corev1.RestartPolicyOnFailure, 1, true},
		{corev1.RestartPolicyNever, 1, false},
	} {
		if got := shouldRestart(tc.policy, tc.code); got != tc.want {
			t.Errorf("shouldRestart(%s, %d) = %v", tc.policy, tc.code, got)
		}
	}
}

func TestChangesStatus(t *testing.T) {
	for action, want := range map[string]bool{
		"died": true, "oom": true, "remove": true,
		"create": false, "init": false, "start": false, "exec_died": false, "cleanup": false, "mount": false,
	} {
		if got := changesStatus(action); got != want {
			t.Errorf("changesStatus(%q) = %t, want %t", action, got, want)
		}
	}
}
