package podman

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
)

// ContainerStats is one reading of a running container's resource usage.
type ContainerStats struct {
	ID     string
	Name   string
	Labels map[string]string
	// Image is the image the container was created from, as podman's
	// container list names it.
	Image     string
	StartedAt time.Time
	// CPUNanos is the CPU time the container used since it started.
	CPUNanos uint64
	// MemoryUsage is the container's memory cgroup usage as podman
	// reports it; MemoryLimit is its limit (the host's memory when none).
	MemoryUsage uint64
	MemoryLimit uint64
	// NetworkRx and NetworkTx count bytes on the container's interfaces
	// (for the containers of a pod: the pod's shared interface).
	NetworkRx uint64
	NetworkTx uint64
	PIDs      uint64
	// Time is when the reading was taken.
	Time time.Time
}

// statsEntry is podman's container stats entry; podman 4 reports network
// totals as NetInput/NetOutput, podman 5 per interface.
type statsEntry struct {
	ContainerID string
	Name        string
	CPUNano     uint64
	MemUsage    uint64
	MemLimit    uint64
	NetInput    uint64
	NetOutput   uint64
	Network     map[string]struct {
		RxBytes uint64
		TxBytes uint64
	}
	PIDs uint64
}

// Stats reads the usage of every running container carrying every given
// label, in one call to the host.
func (c *Client) Stats(ctx context.Context, labels map[string]string) (_ []ContainerStats, err error) {
	cctx, end, err := c.call(ctx, opContainerStats)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	filters := labelFilter(labels)
	filters["status"] = []string{"running"}
	list, err := containers.List(cctx, new(containers.ListOptions).WithFilters(filters))
	if err != nil {
		return nil, wrap("list containers", err)
	}
	if len(list) == 0 {
		return nil, nil
	}
	conn, err := bindings.GetClient(cctx)
	if err != nil {
		return nil, &APIError{Op: "stats", Err: err}
	}
	// Without names podman reads every running container: a container
	// that stops between the list and this call cannot fail the reading.
	q := url.Values{}
	q.Set("stream", "false")
	resp, err := conn.DoRequest(cctx, nil, http.MethodGet, "/containers/stats", q, nil)
	if err != nil {
		return nil, wrap("stats", err)
	}
	defer resp.Body.Close()
	if !resp.IsSuccess() {
		return nil, wrap("stats", resp.Process(nil))
	}
	var report struct {
		Error *struct{ Message string } `json:",omitempty"`
		Stats []statsEntry
	}
	if err := json.NewDecoder(resp.Body).Decode(&report); err != nil {
		return nil, &APIError{Op: "stats", Status: resp.StatusCode, Err: err}
	}
	now := time.Now()
	byID := make(map[string]statsEntry, len(report.Stats))
	for _, e := range report.Stats {
		byID[e.ContainerID] = e
	}
	out := make([]ContainerStats, 0, len(list))
	for _, l := range list {
		e, ok := byID[l.ID]
		if !ok {
			continue // stopped meanwhile
		}
		r := summary(l)
		s := ContainerStats{
			ID: r.ID, Name: r.Name, Labels: r.Labels, Image: r.Image, StartedAt: r.StartedAt, Time: now,
			CPUNanos: e.CPUNano, MemoryUsage: e.MemUsage, MemoryLimit: e.MemLimit,
			NetworkRx: e.NetInput, NetworkTx: e.NetOutput, PIDs: e.PIDs,
		}
		if len(e.Network) > 0 {
			s.NetworkRx, s.NetworkTx = 0, 0
			for _, n := range e.Network {
				s.NetworkRx += n.RxBytes
				s.NetworkTx += n.TxBytes
			}
		}
		out = append(out, s)
	}
	return out, nil
}
