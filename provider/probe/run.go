package probe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// maxOutput bounds the output an attempt keeps (exec output, HTTP body), as
// kubelet bounds both to 10 KiB.
const maxOutput = 10 << 10

// userAgent is what kubelet sends as kube-probe/<major>.<minor>; 1.37 is the
// Kubernetes minor release whose API this module builds against.
const userAgent = "kube-probe/1.37"

// defaultTimeout is the API default for timeoutSeconds.
const defaultTimeout = time.Second

// ErrNoHandler is returned by Run when the handler sets none of exec,
// httpGet, tcpSocket and grpc.
var ErrNoHandler = errors.New("missing probe handler")

// Run makes one attempt of handler h (exactly one of Exec, HTTPGet, TCPSocket, GRPC)
// against the container, bounded by timeout, and returns the outcome and the output
// kubelet would put into its event (bounded to 10 KiB like kubelet). An error means the
// probe could not be run at all (kubelet's "probe errored"): a bad port name, no handler, ...
// podIP is the pod's IP (the default host for httpGet/tcpSocket/grpc). container is the
// Kubernetes container spec (to resolve named ports: port as a name -> containerPort).
// A redirect kubelet did not follow is a Success (the Worker words it as a ProbeWarning).
func Run(ctx context.Context, t Target, containerID, podIP string, container *corev1.Container, h *corev1.ProbeHandler, timeout time.Duration) (Result, string, error) {
	o, out, err := attempt(ctx, t, containerID, podIP, container, h, timeout)
	return o.result(), out, err
}

// attempt is Run keeping kubelet's four-valued outcome.
func attempt(ctx context.Context, t Target, containerID, podIP string, container *corev1.Container, h *corev1.ProbeHandler, timeout time.Duration) (outcome, string, error) {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	if container == nil {
		container = &corev1.Container{}
	}
	switch {
	case h == nil:
		return outcomeUnknown, "", fmt.Errorf("%w for container %s", ErrNoHandler, container.Name)
	case h.Exec != nil:
		return runExec(ctx, t, containerID, container, h.Exec, timeout)
	case h.HTTPGet != nil:
		return runHTTP(ctx, t, podIP, container, h.HTTPGet, timeout)
	case h.TCPSocket != nil:
		return runTCP(ctx, t, podIP, container, h.TCPSocket, timeout)
	case h.GRPC != nil:
		return runGRPC(ctx, t, podIP, h.GRPC, timeout)
	default:
		return outcomeUnknown, "", fmt.Errorf("%w for container %s", ErrNoHandler, container.Name)
	}
}

// resolvePort turns a probe's port into a number as kubelet does: a name
// looks up the container's ports, and a name no port has is tried as a
// number (so its error reads strconv.Atoi's, as in kubelet's events).
func resolvePort(port intstr.IntOrString, container *corev1.Container) (int, error) {
	var n int
	switch port.Type {
	case intstr.Int:
		n = port.IntValue()
	case intstr.String:
		found := false
		for _, p := range container.Ports {
			if p.Name == port.StrVal {
				n, found = int(p.ContainerPort), true
				break
			}
		}
		if !found {
			var err error
			if n, err = strconv.Atoi(port.StrVal); err != nil {
				return 0, err
			}
		}
	default:
		return 0, fmt.Errorf("intOrString had no kind: %+v", port)
	}
	if n <= 0 || n >= 65536 {
		return 0, fmt.Errorf("invalid port number: %v", n)
	}
	return n, nil
}

// limitWriter keeps the first max bytes written to it and drops the rest
// while reporting them written: a probe's chatty output must not fail the
// stream that carries it. Exec may write stdout and stderr concurrently.
type limitWriter struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *limitWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
