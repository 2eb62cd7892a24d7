package probe

import (
	"context"
	"errors"
	"io"
	"net"
)

// Kind is which probe: its name appears in kubelet's event messages.
type Kind string

// The three kinds of probe, spelled as kubelet's event messages spell them.
const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// Result of a probe: kubelet's results.Result.
type Result int

// Results a Worker reports.
const (
	Unknown Result = iota // not probed yet (startup: not started; readiness: not ready)
	Success
	Failure
)

// String spells r as kubelet's results.Result does.
func (r Result) String() string {
	switch r {
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	default:
		return "UNKNOWN"
	}
}

// Target is where probes run: the container's process namespace (exec) and
// the pod's network, reached from the build host (dial).
type Target interface {
	// Exec runs cmd in the running container and returns its exit code; the
	// process's stdout and stderr go to out. It returns when the process ends
	// or ctx ends (then an error).
	Exec(ctx context.Context, containerID string, cmd []string, out io.Writer) (int, error)
	// Dial opens a connection from the build host (the pod IP is routed there).
	// An error of its own way to the host, not of the pod, wraps
	// ErrTransport.
	Dial(ctx context.Context, network, address string) (net.Conn, error)
}

// ErrTransport marks a Target's error that comes from its own way to the
// build host (rbn's SSH connection to it is down), not from the pod: the
// probe could not be made. Kubelet throws away an attempt its prober could
// not make, so that attempt moves no threshold; a TCP, HTTP or gRPC probe
// whose dial fails so is an errored attempt, not a failed one. Else a
// readiness probe turns a pod NotReady for every cut of rbn's connection to
// its host, and reports it so once the host is back, before the next
// attempt succeeds.
var ErrTransport = errors.New("the build host is not reachable to probe from")

// outcome is kubelet's pkg/probe Result: one attempt's verdict before the
// worker folds it into a Result. Warning is a success that kubelet reports
// with a ProbeWarning event (an HTTP redirect it did not follow).
type outcome int

const (
	outcomeUnknown outcome = iota
	outcomeSuccess
	outcomeWarning
	outcomeFailure
)

// String spells o as kubelet's probe.Result, which its "errored and resulted
// in <state> state" message embeds.
func (o outcome) String() string {
	switch o {
	case outcomeSuccess:
		return "success"
	case outcomeWarning:
		return "warning"
	case outcomeFailure:
		return "failure"
	default:
		return "unknown"
	}
}

// result is what Run reports for o: a warning is a success.
func (o outcome) result() Result {
	switch o {
	case outcomeSuccess, outcomeWarning:
		return Success
	case outcomeFailure:
		return Failure
	default:
		return Unknown
	}
}
