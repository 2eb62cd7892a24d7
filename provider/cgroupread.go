package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/remote-build-nodes/rbn/internal/callstats"
	"github.com/remote-build-nodes/rbn/internal/cgroupstats"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// opCgroupStats names the cgroup read in Host.CommandStats.
const opCgroupStats = "cgroup_stats"

// listAllAbove is how many containers unknown to a cgroup reader make it
// list every running container rather than name them (a long filter
// costs more than the list it saves, and the first read knows none).
const listAllAbove = 64

// startSlack covers the rounding of podman's container start times to
// whole seconds, and clocks a little apart.
const startSlack = 2 * time.Second

// errCgroupsUnreadable says that a host's containers' figures cannot be
// read from its cgroup files (another layout than the one read, no grep):
// the host is read through podman's stats API instead.
var errCgroupsUnreadable = errors.New("container figures cannot be read from the host's cgroup files")

// cgroupLayout is where the host described by info keeps its containers'
// cgroups, if rbn reads them there: a rootful podman with the cgroupfs
// manager on cgroup v1 (hybrid hosts included), which is what this
// project's hosts run and what was measured. Other hosts are read through
// podman's stats API.
func cgroupLayout(info *podman.HostInfo) (cgroupstats.Layout, bool) {
	if info == nil || info.Rootless || info.CgroupManager != "cgroupfs" || info.CgroupVersion != "v1" {
		return cgroupstats.Layout{}, false
	}
	return cgroupstats.DefaultLayout, true
}

// cgroupReader reads a host's running containers' figures from their
// cgroup files with one command over SSH, and no podman call once it knows
// the containers: podman's stats call locks and syncs every container from
// its state database (a BoltDB open each on podman 4) and enters each one's
// network namespace, which took minutes with 250 pods on a loaded host.
//
// What a reading is reported with (labels, name, image, start, a process
// in its network namespace) comes from podman's list of running
// containers, asked only for the containers a reading finds and the reader
// does not know yet. Containers that list does not return (those of
// another podman service sharing the machine's cgroups, as this project's
// test hosts do, or one that ended) are remembered as foreign until their
// cgroup goes. Reads run one at a time (containerStatsCache).
type cgroupReader struct {
	// run runs argv on the host, its output to stdout (sshconn's OutputTo).
	run func(ctx context.Context, stdout io.Writer, argv ...string) error
	// list lists the running containers ids names (all with none).
	list  func(ctx context.Context, ids []string) ([]podman.RunningContainer, error)
	now   func() time.Time
	calls callstats.Recorder

	mu      sync.Mutex
	known   map[string]podman.RunningContainer
	foreign map[string]bool
}

func newCgroupReader(run func(context.Context, io.Writer, ...string) error, list func(context.Context, []string) ([]podman.RunningContainer, error), now func() time.Time) *cgroupReader {
	return &cgroupReader{run: run, list: list, now: now,
		known: map[string]podman.RunningContainer{}, foreign: map[string]bool{}}
}

// read returns the figures of the host's running containers. It fails
// with errCgroupsUnreadable when l is not where the host keeps them.
func (r *cgroupReader) read(ctx context.Context, l cgroupstats.Layout) ([]podman.ContainerStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	nets := podNetworks(slices.Collect(maps.Values(r.known)), nil)
	began := r.now()
	reading, err := r.command(ctx, cgroupstats.Command(l, nets), l, nets)
	if err != nil {
		return nil, err
	}
	at := r.now()
	var unknown []string
	for id := range reading.Containers {
		if _, ok := r.known[id]; !ok && !r.foreign[id] {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 || len(reading.Containers) == 0 {
		added, err := r.learn(ctx, unknown, len(reading.Containers) == 0, began)
		if err != nil {
			return nil, err
		}
		if fresh := podNetworks(added, nets); len(fresh) > 0 {
			more, err := r.command(ctx, cgroupstats.NetworkCommand(fresh), l, fresh)
			if err != nil {
				return nil, err
			}
			for k, n := range more.Networks {
				reading.Networks[k] = n
			}
		}
	}
	for id := range r.known {
		if _, ok := reading.Containers[id]; !ok {
			delete(r.known, id)
		}
	}
	for id := range r.foreign {
		if _, ok := reading.Containers[id]; !ok {
			delete(r.foreign, id)
		}
	}
	out := make([]podman.ContainerStats, 0, len(r.known))
	for id, f := range reading.Containers {
		c, ok := r.known[id]
		if !ok {
			continue
		}
		s := podman.ContainerStats{
			ID: id, Name: c.Name, Labels: c.Labels, Image: c.Image, StartedAt: c.StartedAt, Time: at,
			// podman reports the working set as a container's usage.
			CPUNanos: f.CPUNanos, MemoryUsage: f.WorkingSet, MemoryLimit: f.MemoryLimit,
		}
		if n, ok := reading.Networks[networkKey(c)]; ok {
			s.NetworkRx, s.NetworkTx = n.Rx, n.Tx
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b podman.ContainerStats) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// command runs argv (a cgroupstats command) and parses its output.
func (r *cgroupReader) command(ctx context.Context, argv []string, l cgroupstats.Layout, nets map[string]int) (_ cgroupstats.Reading, err error) {
	start := r.now()
	defer func() {
		res := callstats.Success
		if err != nil {
			res = callstats.Error
		}
		r.calls.Record(opCgroupStats, res, r.now().Sub(start))
	}()
	pr, pw := io.Pipe()
	parsed := make(chan struct{})
	var reading cgroupstats.Reading
	var perr error
	go func() {
		defer close(parsed)
		reading, perr = cgroupstats.Parse(l, nets, pr)
		// Drain what is left after a parse error, so that the command ends.
		_, _ = io.Copy(io.Discard, pr)
	}()
	rerr := r.run(ctx, pw, argv...)
	pw.Close()
	<-parsed
	var exit *sshconn.ExitError
	switch {
	case errors.As(rerr, &exit) && exit.Status > 2:
		// Not grep's "nothing found" (1) or "some file was not there" (2).
		return cgroupstats.Reading{}, fmt.Errorf("%w: %w", errCgroupsUnreadable, rerr)
	case rerr != nil && !errors.As(rerr, &exit):
		return cgroupstats.Reading{}, fmt.Errorf("read cgroup figures: %w", rerr)
	case perr != nil:
		return cgroupstats.Reading{}, fmt.Errorf("%w: %w", errCgroupsUnreadable, perr)
	}
	return reading, nil
}

// learn lists the running containers of unknown (all of them when many
// are unknown) and remembers them, the others as foreign. With none found
// in the cgroup files (check), it lists them all: podman running some that
// started before the read began means that they are not where the reader
// looks. (Start times are whole seconds: one that started within
// startSlack of the read may have started after it.)
func (r *cgroupReader) learn(ctx context.Context, unknown []string, check bool, began time.Time) ([]podman.RunningContainer, error) {
	ask := unknown
	if check || len(unknown) > listAllAbove {
		ask = nil
	}
	listed, err := r.list(ctx, ask)
	if err != nil {
		return nil, fmt.Errorf("list the containers read from the host's cgroup files: %w", err)
	}
	if check {
		for _, c := range listed {
			if !c.StartedAt.IsZero() && c.StartedAt.Before(began.Add(-startSlack)) {
				return nil, fmt.Errorf("%w: podman runs container %s (%s), which has no cgroup files where they were read", errCgroupsUnreadable, c.Name, c.ID)
			}
		}
	}
	found := make(map[string]bool, len(unknown))
	for _, id := range unknown {
		found[id] = false
	}
	var added []podman.RunningContainer
	for _, c := range listed {
		if _, ok := found[c.ID]; !ok {
			continue // not in the reading: it started since
		}
		found[c.ID] = true
		r.known[c.ID] = c
		added = append(added, c)
	}
	for id, ok := range found {
		if !ok {
			r.foreign[id] = true
		}
	}
	return added, nil
}

// podNetworks names a process in the network namespace of each pod of cs
// (or container outside a pod) by networkKey, leaving out those skip has:
// the containers of a pod share one namespace, which its infra container
// holds as long as the pod lives (else the lowest process is named).
func podNetworks(cs []podman.RunningContainer, skip map[string]int) map[string]int {
	out := map[string]int{}
	infra := map[string]bool{}
	for _, c := range cs {
		k := networkKey(c)
		if _, ok := skip[k]; ok || c.PID <= 0 || infra[k] {
			continue
		}
		if pid, ok := out[k]; !ok || c.Infra || c.PID < pid {
			out[k], infra[k] = c.PID, c.Infra
		}
	}
	return out
}

// networkKey is what a container's network namespace is known by: its
// pod's, else its own.
func networkKey(c podman.RunningContainer) string {
	if c.Pod != "" {
		return "pod:" + c.Pod
	}
	return c.ID
}
