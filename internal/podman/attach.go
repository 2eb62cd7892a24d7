package podman

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"
)

// AttachOptions select the streams of an attach session.
type AttachOptions struct {
	// Stdin, when set, is copied to the container's stdin (which must
	// have been created open); its EOF half-closes the session.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer // ignored with TTY
	// TTY must say whether the container has a terminal: its output is
	// then raw rather than multiplexed.
	TTY    bool
	Resize <-chan TermSize
}

// Attach connects to the main process of a running container until it
// exits or ctx ends. Detach keys are off: only ctx ends a session early.
func (c *Client) Attach(ctx context.Context, container string, o AttachOptions) error {
	q := url.Values{}
	q.Set("stream", "true")
	q.Set("logs", "false")
	q.Set("stdin", strconv.FormatBool(o.Stdin != nil))
	q.Set("stdout", strconv.FormatBool(o.Stdout != nil))
	q.Set("stderr", strconv.FormatBool(o.Stderr != nil && !o.TTY))
	q.Set("detachKeys", "") // present and empty: no detach sequence
	s, err := c.upgrade(ctx, opAttach, "attach "+container, "/containers/"+url.PathEscape(container)+"/attach", q, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sctx, func() { _ = s.Close() })
	defer stop()
	if o.TTY && o.Resize != nil {
		// The terminal exists already: sizes only come as resizes.
		go c.forwardResizes(sctx, opAttachResize, o.Resize, time.Time{}, func(rctx context.Context, sz TermSize) error {
			w, h := int(sz.Width), int(sz.Height)
			return containers.ResizeContainerTTY(rctx, container, new(containers.ResizeTTYOptions).WithWidth(w).WithHeight(h))
		})
	}
	if o.Stdin != nil {
		go pumpStdin(s, o.Stdin)
	}
	err = copyOutput(o.Stdout, o.Stderr, s, o.TTY)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("attach %s: %w", container, err)
	}
	return nil
}
