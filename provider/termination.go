package provider

import (
	"context"
	"io"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

// The kubelet's bounds for a termination message taken from the logs
// (MaxContainerTerminationMessageLogLines and ...LogLength).
const (
	fallbackLogLines = 80
	fallbackLogBytes = 2048
)

// logMessages gives the failed runs in obs of the containers whose
// terminationMessagePolicy is FallbackToLogsOnError the tail of their logs
// as termination message, as the kubelet does (rbn never has a message
// from the file, which the kubelet would prefer). Each run's logs are read
// once: w.messages keeps them for the runs still observed. Worker
// goroutine only (observe also serves logs and exec requests).
func (w *podWorker) logMessages(ctx context.Context, spec *corev1.PodSpec, obs map[string]*observed) {
	if obs == nil {
		return // nothing observed: keep what was read
	}
	fallback := map[string]bool{}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			if c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
				fallback[c.Name] = true
			}
		}
	}
	kept := map[string]string{}
	for name, o := range obs {
		if !fallback[name] {
			continue
		}
		o.currentMessage = w.logMessage(ctx, o.current, kept)
		o.previousMessage = w.logMessage(ctx, o.previous, kept)
	}
	w.messages = kept
}

// logMessage is the message of one run: "" unless it failed.
func (w *podWorker) logMessage(ctx context.Context, st *podman.ContainerState, kept map[string]string) string {
	if st == nil || !st.Exited() || st.ExitCode == 0 {
		return ""
	}
	if m, ok := w.messages[st.ID]; ok {
		kept[st.ID] = m
		return m
	}
	m, err := logTail(ctx, w.p.rt, st.ID)
	if err != nil {
		// The kubelet's wording; not kept, so the next sync reads again.
		return "Error on reading termination message from logs: " + err.Error()
	}
	kept[st.ID] = m
	return m
}

// logTail is the last fallbackLogBytes of the last fallbackLogLines lines
// of a container's logs.
func logTail(ctx context.Context, rt podRuntime, id string) (string, error) {
	rc, err := rt.Logs(ctx, id, podman.LogOptions{Tail: fallbackLogLines})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var tail []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		tail = append(tail, buf[:n]...)
		if len(tail) > fallbackLogBytes {
			tail = append(tail[:0], tail[len(tail)-fallbackLogBytes:]...)
		}
		switch {
		case err == io.EOF:
			return string(tail), nil
		case err != nil:
			return "", err
		}
	}
}
