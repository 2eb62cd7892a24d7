package podman

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync/atomic"
	"time"

	dockercontainer "github.com/docker/docker/api/types/container"

	"github.com/containers/podman/v5/libpod/define"
	"github.com/containers/podman/v5/pkg/api/handlers"
	"github.com/containers/podman/v5/pkg/bindings/containers"
)

// execDetachKeys replaces podman's default detach keys (ctrl-p,ctrl-q) for
// exec sessions: a Kubernetes exec has no detach keys, and the exec-create
// API cannot switch them off (an empty value means "the default"). A long
// run of control characters that no terminal user or text stream produces
// is the closest to "none".
const execDetachKeys = "ctrl-],ctrl-^,ctrl-_,ctrl-],ctrl-^,ctrl-_,ctrl-],ctrl-^,ctrl-_,ctrl-],ctrl-^,ctrl-_"

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Cmd []string
	// Stdin, when set, becomes the process's standard input; its EOF
	// closes the process's stdin. Exec does not close Stdin itself.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer // ignored with TTY: a terminal has one output
	TTY    bool
	// Resize delivers terminal sizes (TTY only). Exec waits briefly for
	// the first one before starting, so the process starts at the
	// client's size.
	Resize <-chan TermSize
	// Size, when set (TTY only), is the terminal's size already taken
	// from Resize, by an Exec that did not start (ExecNotStartedError's
	// Size): the process starts at it, without waiting on Resize.
	Size *TermSize
	// KillOnCancel kills the process when ctx ends before it does, as a
	// CRI ExecSync with a timeout does (probes and hooks); by default it
	// runs on, as an interactive session's process does.
	KillOnCancel bool
	// Timeout, when positive, kills the process that long after it
	// started: it bounds the command, not podman's session setup (which
	// ctx bounds). Exec then fails with context.DeadlineExceeded.
	Timeout time.Duration
}

// firstSizeWait bounds how long Exec and Attach wait for the client's
// terminal size before starting without one.
const firstSizeWait = 500 * time.Millisecond

// Exec runs a process in a running container, streaming its input and
// output, and returns its exit code once it ended. Unless o.KillOnCancel,
// the process is not killed when ctx ends (as with kubelet: the session
// ends, the process may stay); only the streams are cut.
func (c *Client) Exec(ctx context.Context, container string, o ExecOptions) (int, error) {
	if len(o.Cmd) == 0 {
		return -1, errors.New("exec: empty command")
	}
	id, err := c.execCreate(ctx, container, o)
	if err != nil {
		return -1, &ExecNotStartedError{Err: err}
	}
	start := struct {
		Detach bool   `json:"Detach"`
		TTY    bool   `json:"Tty"`
		Height uint16 `json:"h,omitempty"`
		Width  uint16 `json:"w,omitempty"`
	}{TTY: o.TTY}
	resize, size := o.Resize, o.Size
	if o.TTY && size == nil && resize != nil {
		// A daemon has no terminal of its own: the size comes from the client only.
		select {
		case sz, ok := <-resize:
			if !ok {
				resize = nil
			} else {
				size = &sz
			}
		case <-time.After(firstSizeWait):
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
	if o.TTY && size != nil && size.Width > 0 && size.Height > 0 {
		start.Width, start.Height = size.Width, size.Height
	}
	s, err := c.upgrade(ctx, opExecStart, "exec start in "+container, "/exec/"+url.PathEscape(id)+"/start", nil, start)
	if err != nil {
		return -1, &ExecNotStartedError{Err: err, Size: size}
	}
	defer s.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sctx, func() { _ = s.Close() })
	defer stop()
	var timedOut atomic.Bool
	if o.Timeout > 0 {
		t := time.AfterFunc(o.Timeout, func() {
			timedOut.Store(true)
			cancel()
		})
		defer t.Stop()
	}
	if o.TTY && resize != nil {
		// The first size went with the start.
		go c.forwardResizes(sctx, opExecResize, resize, time.Now(), func(rctx context.Context, sz TermSize) error {
			w, h := int(sz.Width), int(sz.Height)
			return containers.ResizeExecTTY(rctx, id, new(containers.ResizeExecTTYOptions).WithWidth(w).WithHeight(h))
		})
	}
	if o.Stdin != nil {
		go pumpStdin(s, o.Stdin)
	}
	outErr := copyOutput(o.Stdout, o.Stderr, s, o.TTY)
	if ctx.Err() != nil || timedOut.Load() {
		why := ctx.Err()
		if timedOut.Load() {
			why = fmt.Errorf("exec in %s: the process ran past %s: %w", container, o.Timeout, context.DeadlineExceeded)
		}
		if o.KillOnCancel || timedOut.Load() {
			// A forced removal kills the session's process.
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
			defer cancel()
			if err := c.execKill(kctx, id); err != nil {
				return -1, fmt.Errorf("%w (and killing the process: %v)", why, err)
			}
		}
		return -1, why
	}
	if outErr != nil {
		return -1, fmt.Errorf("exec in %s: %w", container, outErr)
	}
	return c.execExitCode(ctx, id)
}

// ExecNotStartedError is an Exec that failed before its process started
// (podman refused the session, or its start): trying it again cannot run
// the command twice. Size is the terminal size the Exec took from its
// Resize, if it took one: the retry's ExecOptions.Size, or the client's
// first size is lost (it sends it once).
type ExecNotStartedError struct {
	Err  error
	Size *TermSize
}

func (e *ExecNotStartedError) Error() string { return e.Err.Error() }
func (e *ExecNotStartedError) Unwrap() error { return e.Err }

// execCreate creates the exec session of o in container.
func (c *Client) execCreate(ctx context.Context, container string, o ExecOptions) (_ string, err error) {
	cctx, end, err := c.call(ctx, opExecCreate)
	if err != nil {
		return "", err
	}
	defer end(&err)
	id, err := containers.ExecCreate(cctx, container, &handlers.ExecCreateConfig{ExecOptions: dockercontainer.ExecOptions{
		Cmd:          o.Cmd,
		Tty:          o.TTY,
		AttachStdin:  o.Stdin != nil,
		AttachStdout: true,
		AttachStderr: !o.TTY,
		DetachKeys:   execDetachKeys,
	}})
	if err != nil {
		return "", wrap("exec create in "+container, err)
	}
	return id, nil
}

// execExitCode waits for an exec session to be recorded as ended (podman
// closes the stream as the process exits, a moment before it stores the
// exit code) and returns its exit code.
func (c *Client) execExitCode(ctx context.Context, id string) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		info, err := c.execInspect(ctx, id)
		if err != nil {
			return -1, err
		}
		if !info.Running {
			// Best effort: podman before 4.8 removes sessions itself.
			_ = c.execRemove(ctx, id)
			return info.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("exec %s: output ended but the process still runs", id)
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(delay):
		}
	}
}

func (c *Client) execInspect(ctx context.Context, id string) (_ *define.InspectExecSession, err error) {
	cctx, end, err := c.call(ctx, opExecInspect)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	info, err := containers.ExecInspect(cctx, id, nil)
	if err != nil {
		return nil, wrap("exec inspect "+id, err)
	}
	return info, nil
}

func (c *Client) execRemove(ctx context.Context, id string) (err error) {
	cctx, end, err := c.call(ctx, opExecRemove)
	if err != nil {
		return err
	}
	defer end(&err)
	return wrap("exec remove "+id, containers.ExecRemove(cctx, id, nil))
}

// killTimeout bounds the call that kills an exec session's process.
const killTimeout = 10 * time.Second

// execKill kills a running exec session's process and removes the session.
func (c *Client) execKill(ctx context.Context, id string) (err error) {
	cctx, end, err := c.call(ctx, opExecRemove)
	if err != nil {
		return err
	}
	defer end(&err)
	force := true
	return wrap("exec kill "+id, containers.ExecRemove(cctx, id, &containers.ExecRemoveOptions{Force: &force}))
}

// resizeGap spaces the terminal resizes of a session. Podman hands them
// to conmon through a FIFO, and conmon (2.1 at least) applies only the
// first of the messages one read returns: of two resizes sent together
// (kubectl attach sends its size plus one, then its size, to force a
// redraw) the second would be lost.
const resizeGap = 100 * time.Millisecond

// forwardResizes applies the client's terminal sizes, in order and
// resizeGap apart, until the session or ctx ends, each a call of op. Empty
// sizes are ignored (as kubelet does); a failed resize is not fatal to the
// session.
func (c *Client) forwardResizes(ctx context.Context, op string, sizes <-chan TermSize, last time.Time, apply func(context.Context, TermSize) error) {
	for {
		select {
		case <-ctx.Done():
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			if sz.Width == 0 || sz.Height == 0 {
				continue
			}
			if wait := resizeGap - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			cctx, end, err := c.call(ctx, op)
			if err != nil {
				return
			}
			err = wrap(op, apply(cctx, sz))
			end(&err)
			if err != nil {
				c.cfg.Logger.Debug("terminal resize failed", "host", c.cfg.Name, "err", err)
			}
			last = time.Now()
		}
	}
}
