package podman

import (
	"context"
	"errors"
	"time"

	"github.com/remote-build-nodes/rbn/internal/callstats"
)

// Operations, as CallStats names them: one per Client method, low in
// cardinality (never a container's or pod's name), usable as metric label
// values. An operation may make more than one request (container_stats
// lists the containers, then reads their figures; volume_ensure inspects,
// then creates), except that Exec's parts are separate operations: a
// stream runs between them.
const (
	opConnect = "connect"
	opPing    = "ping"
	opInfo    = "system_info"
	opEvents  = "events"

	opContainerCreate  = "container_create"
	opContainerStart   = "container_start"
	opContainerStop    = "container_stop"
	opContainerRemove  = "container_remove"
	opContainerInspect = "container_inspect"
	opContainerList    = "container_list"
	opContainerStats   = "container_stats"
	opCopyInto         = "copy_into"
	opCopyFrom         = "copy_from"
	opLogs             = "logs"
	opAttach           = "attach"
	opAttachResize     = "attach_resize"

	opExecCreate  = "exec_create"
	opExecStart   = "exec_start"
	opExecInspect = "exec_inspect"
	opExecRemove  = "exec_remove"
	opExecResize  = "exec_resize"

	opImageExists  = "image_exists"
	opImageInspect = "image_inspect"
	opImagePull    = "image_pull"
	opImageTag     = "image_tag"
	opImageUntag   = "image_untag"
	opImageList    = "image_list"
	opImageRemove  = "image_remove"

	opPodCreate  = "pod_create"
	opPodStart   = "pod_start"
	opPodInspect = "pod_inspect"
	opPodList    = "pod_list"
	opPodRemove  = "pod_remove"

	opVolumeEnsure = "volume_ensure"
	opVolumeList   = "volume_list"
	opVolumeRemove = "volume_remove"

	opNetworkEnsure = "network_ensure"
	opNetworkList   = "network_list"
	opNetworkRemove = "network_remove"
)

// CallStats returns a copy of the totals of the client's API calls since
// New, by operation (the op* names above); operations never called are
// absent. A call counts once it ended, with the error its method returned:
// nil is a success, one matching ErrNotFound a not-found answer, any other
// an error (a call made while not connected included). The calls that open
// a stream (events, logs, copy_from, attach, exec_start) end when podman
// answered and the stream is open: their Duration is the time to open
// them, not the life of the stream, and a stream that breaks later is
// not an error of theirs.
func (c *Client) CallStats() map[string]callstats.Op { return c.calls.Snapshot() }

// begin times a call of op; end records it with the error the call ended
// with. end takes a pointer so that a method can `defer end(&err)` on its
// named result.
func (c *Client) begin(op string) (end func(err *error)) {
	start := c.cfg.Clock.Now()
	return func(err *error) {
		res := callstats.Success
		switch {
		case *err == nil:
		case errors.Is(*err, ErrNotFound):
			res = callstats.NotFound
		default:
			res = callstats.Error
		}
		c.calls.Record(op, res, c.cfg.Clock.Since(start))
	}
}

// call begins a call of op through the bindings, within the deadline its
// operation has (see budget). It returns ctx's deadline and cancellation,
// bounded by that one, with the connection's values, for the bindings, and
// the end of the call (see begin). Not being connected ends the call at once.
func (c *Client) call(ctx context.Context, op string) (_ context.Context, end func(*error), err error) {
	return c.callWithin(ctx, op, c.budget(op))
}

// callWithin is call with a deadline of its own: within from now (none when
// not positive). A call that runs out of it ends with a *TimeoutError, which
// replaces whatever the bindings said (their request was cut). The deadline
// bounds the whole call, the bindings' own retries of a failed request
// included: they re-send it with the same context.
func (c *Client) callWithin(ctx context.Context, op string, within time.Duration) (_ context.Context, _ func(*error), err error) {
	end := c.begin(op)
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		err = &APIError{Op: op, Err: errors.New("not connected to podman")}
		end(&err)
		return nil, nil, err
	}
	if within <= 0 {
		return withValues(ctx, conn), end, nil
	}
	timeout := &TimeoutError{Op: op, Host: c.cfg.Name, After: within}
	dctx, cancel := context.WithTimeoutCause(ctx, within, timeout)
	return withValues(dctx, conn), func(err *error) {
		if *err != nil && context.Cause(dctx) == timeout {
			*err = timeout
		}
		cancel()
		end(err)
	}, nil
}

// budget is how long a call of op may take: RequestTimeout, but no bound
// for the calls that carry a stream (logs, events, archive copies: their
// life is the stream's, which ends with its context) and ImagePullTimeout
// for pulls. Exec and attach sessions (upgrade) bound their opening apart.
func (c *Client) budget(op string) time.Duration {
	switch op {
	case opEvents, opLogs, opCopyInto, opCopyFrom:
		return 0
	case opImagePull:
		return c.cfg.ImagePullTimeout
	}
	return c.cfg.RequestTimeout
}
