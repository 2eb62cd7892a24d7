package podman

import (
	"context"
	"strconv"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/system"
	"github.com/containers/podman/v5/pkg/domain/entities/types"
)

// Event is a container event.
type Event struct {
	Action string // create, init, start, died, oom, remove, ...
	ID     string
	Name   string
	// Attributes carry the container's labels and, on died, containerExitCode.
	Attributes map[string]string
	Time       time.Time
}

// ExitCode returns the exit code of a died event, if present.
func (e Event) ExitCode() (int, bool) {
	v, ok := e.Attributes["containerExitCode"]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// Events streams container events whose labels match until ctx ends or the
// stream breaks; the returned channel is closed then. The error is for a
// stream that could not be opened.
func (c *Client) Events(ctx context.Context, labels map[string]string) (_ <-chan Event, err error) {
	cctx, end, err := c.call(ctx, opEvents)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	filters := labelFilter(labels)
	filters["type"] = []string{"container"}
	raw := make(chan types.Event, 64)
	cancel := make(chan bool)
	if err := system.Events(cctx, raw, cancel, new(system.EventsOptions).WithFilters(filters).WithStream(true)); err != nil {
		return nil, wrap("events", err)
	}
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer func() {
			// Closing cancel closes the response body; drain so the
			// bindings' decoder goroutine is never stuck on a send.
			close(cancel)
			go func() {
				for range raw {
				}
			}()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-raw:
				if !ok {
					return
				}
				ev := Event{Action: string(e.Action), ID: e.Actor.ID, Attributes: e.Actor.Attributes, Time: time.Unix(0, e.TimeNano)}
				ev.Name = e.Actor.Attributes["name"]
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
