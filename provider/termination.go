package provider

import (
	"context"
	"errors"
	"io"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

// The kubelet's bounds for termination messages (pkg/kubelet/container:
// MaxContainerTerminationMessageLength, the last bytes of the file;
// MaxContainerTerminationMessageLogLines and ...LogLength, for a message
// from the logs; MaxPodTerminationMessageLogLength, across the pod).
const (
	messageFileBytes = 4096
	fallbackLogLines = 80
	fallbackLogBytes = 2048
	podMessageBytes  = 12 << 10
)

// messageSource is where a container's termination message comes from.
type messageSource struct {
	// path is its terminationMessagePath ("": none).
	path string
	// fallback: FallbackToLogsOnError.
	fallback bool
}

// messageSources are the message sources of the pod's containers, by name.
func messageSources(spec *corev1.PodSpec) map[string]messageSource {
	out := map[string]messageSource{}
	add := func(c *corev1.Container) {
		out[c.Name] = messageSource{path: c.TerminationMessagePath, fallback: c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError}
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			add(&cs[i])
		}
	}
	for i := range spec.EphemeralContainers {
		c := corev1.Container(spec.EphemeralContainers[i].EphemeralContainerCommon)
		add(&c)
	}
	return out
}

// terminationMessages gives the ended runs in obs their termination
// messages, as the kubelet reads them: the last 4096 bytes of the file the
// run had at its terminationMessagePath (a file of its own, see
// pod.TerminationFile); with FallbackToLogsOnError, when that is empty and
// the run failed, the tail of its logs. Each run's message is read once:
// w.messages keeps them for the runs still observed. Worker goroutine only
// (observe also serves logs and exec requests).
func (w *podWorker) terminationMessages(ctx context.Context, spec *corev1.PodSpec, obs map[string]*observed) {
	if obs == nil {
		return // nothing observed: keep what was read
	}
	sources := messageSources(spec)
	kept := map[string]string{}
	for name, o := range obs {
		src, ok := sources[name]
		if !ok {
			continue
		}
		o.currentMessage = w.terminationMessage(ctx, o.current, src, kept)
		o.previousMessage = w.terminationMessage(ctx, o.previous, src, kept)
	}
	w.messages = kept
}

// terminationMessage is the message of one run: "" while it runs.
func (w *podWorker) terminationMessage(ctx context.Context, st *podman.ContainerState, src messageSource, kept map[string]string) string {
	if st == nil || !st.Exited() || st.Lost {
		return "" // a lost run's message says why it was lost (lostRun)
	}
	if m, ok := w.messages[st.ID]; ok {
		kept[st.ID] = m
		return m
	}
	var msg string
	if src.path != "" && !st.StartedAt.IsZero() {
		m, err := readMessageFile(ctx, w.p.rt, w.volumes.terminationPath(st))
		if err != nil {
			// The kubelet's wording; not kept, so the next sync reads again.
			return "Error on reading termination log " + src.path + ": " + err.Error()
		}
		msg = m
	}
	if msg == "" && src.fallback && st.ExitCode != 0 {
		m, err := logTail(ctx, w.p.rt, st.ID)
		if err != nil {
			return "Error on reading termination message from logs: " + err.Error()
		}
		msg = m
	}
	kept[st.ID] = msg
	return msg
}

// readMessageFile is the last messageFileBytes of a run's termination
// file on the host ("" for none: a run created before rbn mounted one, as
// the kubelet's for a missing file). It is read on the host, not through
// podman's archive API on the ended container: that API cannot copy out of
// a bind-mounted file (it takes the mount's source as a directory).
func readMessageFile(ctx context.Context, rt podRuntime, hostPath string) (string, error) {
	if hostPath == "" {
		return "", nil
	}
	data, err := rt.FileTail(ctx, hostPath, messageFileBytes)
	if errors.Is(err, podman.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(data), nil
}

// logTail is the last fallbackLogBytes of the last fallbackLogLines lines
// of a container's logs.
func logTail(ctx context.Context, rt podRuntime, id string) (string, error) {
	rc, err := rt.Logs(ctx, id, podman.LogOptions{Tail: fallbackLogLines})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return lastBytes(rc, fallbackLogBytes)
}

// lastBytes reads r to its end and returns its last n bytes.
func lastBytes(r io.Reader, n int) (string, error) {
	var tail []byte
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		tail = append(tail, buf[:k]...)
		if len(tail) > n {
			tail = append(tail[:0], tail[len(tail)-n:]...)
		}
		switch {
		case err == io.EOF:
			return string(tail), nil
		case err != nil:
			return "", err
		}
	}
}

// trimMessages cuts the termination messages of st to the kubelet's
// share of podMessageBytes per container (its status manager's
// normalizeStatus: 12 KiB over the pod's init and app containers, each
// message cut to its first bytes).
func trimMessages(spec *corev1.PodSpec, st *corev1.PodStatus) {
	per := podMessageBytes
	if n := len(spec.Containers) + len(spec.InitContainers); n > 0 {
		per /= n
	}
	trim := func(s *corev1.ContainerState) {
		if t := s.Terminated; t != nil && len(t.Message) > per {
			t.Message = t.Message[:per]
		}
	}
	for _, list := range [][]corev1.ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses, st.EphemeralContainerStatuses} {
		for i := range list {
			trim(&list[i].State)
			trim(&list[i].LastTerminationState)
		}
	}
}
