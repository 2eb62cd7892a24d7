package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// runExec runs the command in the container: exit 0 is a success, any other
// exit a failure whose output is the command's. A command still running at
// the timeout is a failure, as kubelet words it with ExecProbeTimeout on.
func runExec(ctx context.Context, t Target, containerID string, container *corev1.Container, a *corev1.ExecAction, timeout time.Duration) (outcome, string, error) {
	cmd := expandCommand(a.Command, container.Env)
	execCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &limitWriter{max: maxOutput}
	code, err := t.Exec(execCtx, containerID, cmd, out)
	if err != nil {
		// Only our own deadline is a timeout; the caller's end is an error.
		if ctx.Err() == nil && errors.Is(execCtx.Err(), context.DeadlineExceeded) {
			return outcomeFailure, fmt.Sprintf("command %q timed out", strings.Join(cmd, " ")), nil
		}
		return outcomeUnknown, "", err
	}
	if code != 0 {
		return outcomeFailure, out.String(), nil
	}
	return outcomeSuccess, out.String(), nil
}

// expandCommand applies $(VAR) expansion to an exec probe's command as kubelet
// does (ExpandContainerCommandOnlyStatic): against the container's env values
// as written, so a variable set by valueFrom expands to the empty string.
func expandCommand(cmd []string, env []corev1.EnvVar) []string {
	if len(cmd) == 0 {
		return cmd
	}
	vars := make(map[string]string, len(env))
	for _, e := range env {
		vars[e.Name] = e.Value
	}
	out := make([]string, len(cmd))
	for i, s := range cmd {
		out[i] = pod.Expand(s, vars)
	}
	return out
}
