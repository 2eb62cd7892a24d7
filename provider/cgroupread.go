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

// learnWait bounds how long a read waits for a list of the host's
// containers to learn those it found for the first time: past it, the
// reading goes without them and a later one learns them (the list goes on
// for the relists and the next reads). A busy podman takes minutes to list
// a few hundred containers.
const learnWait = 5 * time.Second

// fullReadEvery is how often a read reads the pod directories of other
// podman services too (see cgroupReader): every fifth minute at the stats
// endpoints' 10 s.
const fullReadEvery = 30

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
// cgroup files with one command over SSH, and no podman call of its own:
// podman's stats call locks and syncs every container from its state
// database (a BoltDB open each on podman 4) and enters each one's network
// namespace, which took minutes with 250 pods on a loaded host.
//
// What a reading is reported with (labels, name, image, start, a process
// in its network namespace) comes from the host's shared list of its
// containers (hostList, which the nodes' relists keep at most a few
// seconds old). A container a reading finds that the list does not have
// (it started since) waits for a list asked for after the reading that
// first found it, at most learnWait per read; one that such a list does
// not have either belongs to another podman service sharing the machine's
// cgroups (as this project's test hosts do) or ended, and is left out as
// foreign until its cgroup goes. The pod directories of foreign containers
// that no container of this host's podman names as its pod are not read
// again (grep's --exclude-dir), but by one read in fullReadEvery, which
// reads everything and forgets what went: on a machine whose podman
// services share the cgroups, each would read all of them otherwise. Reads
// run one at a time (containerStatsCache).
type cgroupReader struct {
	// run runs argv on the host, its output to stdout (sshconn's OutputTo).
	run        func(ctx context.Context, stdout io.Writer, argv ...string) error
	containers *hostList[podman.ContainerSummary]
	now        func() time.Time
	calls      callstats.Recorder

	mu    sync.Mutex
	known map[string]podman.ContainerSummary
	// seen is when a reading first found each container not known yet;
	// foreign those no list asked for after that had, with their pod
	// directories; foreignPods the directories not read.
	seen        map[string]time.Time
	foreign     map[string]string
	foreignPods map[string]bool
	reads       int
}

func newCgroupReader(run func(context.Context, io.Writer, ...string) error, containers *hostList[podman.ContainerSummary], now func() time.Time) *cgroupReader {
	return &cgroupReader{run: run, containers: containers, now: now,
		known: map[string]podman.ContainerSummary{}, seen: map[string]time.Time{},
		foreign: map[string]string{}, foreignPods: map[string]bool{}}
}

// read returns the figures of the host's running containers. It fails
// with errCgroupsUnreadable when l is not where the host keeps them.
func (r *cgroupReader) read(ctx context.Context, l cgroupstats.Layout) ([]podman.ContainerStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	nets := podNetworks(slices.Collect(maps.Values(r.known)), nil)
	full := r.reads%fullReadEvery == 0
	r.reads++
	var exclude []string
	if !full {
		exclude = slices.Collect(maps.Keys(r.foreignPods))
	}
	began := r.now()
	reading, err := r.command(ctx, cgroupstats.Command(l, nets, exclude), l, nets)
	if err != nil {
		return nil, err
	}
	at := r.now()
	var unknown []string
	for id := range reading.Containers {
		_, known := r.known[id]
		if _, foreign := r.foreign[id]; !known && !foreign {
			unknown = append(unknown, id)
			if _, ok := r.seen[id]; !ok {
				r.seen[id] = began
			}
		}
	}
	if len(unknown) > 0 || len(reading.Containers) == 0 {
		added, err := r.learn(ctx, unknown, len(reading.Containers) == 0, began, reading.PodDirs)
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
	// Forget the containers whose cgroups went; a foreign container in a
	// pod directory this reading left out is kept until a full reading.
	gone := func(id string) bool { _, ok := reading.Containers[id]; return !ok }
	maps.DeleteFunc(r.known, func(id string, _ podman.ContainerSummary) bool { return gone(id) })
	maps.DeleteFunc(r.seen, func(id string, _ time.Time) bool { return gone(id) })
	maps.DeleteFunc(r.foreign, func(id, pod string) bool { return gone(id) && (full || !r.foreignPods[pod]) })
	r.excludeForeignPods(full)
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

// learn looks unknown up in the host's list of its containers: the one
// kept, else one asked for after they were first seen, waited for at most
// learnWait (a list that fails or does not come leaves them for a later
// read). It returns those it learnt. With none found in the cgroup files
// (check), podman running a container that started before the read began
// means that they are not where the reader looks. (Start times are whole
// seconds: one that started within startSlack of the read may have started
// after it.)
func (r *cgroupReader) learn(ctx context.Context, unknown []string, check bool, began time.Time, podDirs map[string]string) ([]podman.ContainerSummary, error) {
	var added []podman.ContainerSummary
	lookUp := func(list []podman.ContainerSummary, asked time.Time) {
		byID := make(map[string]podman.ContainerSummary, len(list))
		for _, c := range list {
			byID[c.ID] = c
		}
		rest := unknown[:0]
		for _, id := range unknown {
			c, ok := byID[id]
			switch {
			case ok:
				r.known[id] = c
				delete(r.seen, id)
				added = append(added, c)
			case !asked.Before(r.seen[id]):
				r.foreign[id] = podDirs[id]
				delete(r.seen, id)
			default:
				rest = append(rest, id)
			}
		}
		unknown = rest
	}
	if list, asked := r.containers.last(); !asked.IsZero() {
		lookUp(list, asked)
	}
	if len(unknown) == 0 && !check {
		return added, nil
	}
	since := began
	for _, id := range unknown {
		if t := r.seen[id]; t.Before(since) {
			since = t
		}
	}
	wctx, cancel := context.WithTimeout(ctx, learnWait)
	defer cancel()
	list, asked, err := r.containers.since(wctx, since)
	if err != nil {
		return added, nil // a later read learns them
	}
	lookUp(list, asked)
	if check {
		for _, c := range list {
			if c.State == "running" && !c.StartedAt.IsZero() && c.StartedAt.Before(began.Add(-startSlack)) {
				return nil, fmt.Errorf("%w: podman runs container %s (%s), which has no cgroup files where they were read", errCgroupsUnreadable, c.Name, c.ID)
			}
		}
	}
	return added, nil
}

// excludeForeignPods sets the pod directories not to read: those of
// foreign containers that no container of the host's names as its pod
// (one of its containers that ended is foreign too, in a pod of its own
// host's). A full read starts them anew.
func (r *cgroupReader) excludeForeignPods(full bool) {
	ours := map[string]bool{}
	for _, c := range r.known {
		ours[c.Pod] = true
	}
	list, _ := r.containers.last()
	for _, c := range list {
		ours[c.Pod] = true
	}
	if full {
		clear(r.foreignPods)
	}
	for _, pod := range r.foreign {
		if pod != "" && !ours[pod] {
			r.foreignPods[pod] = true
		}
	}
	for pod := range r.foreignPods {
		if ours[pod] {
			delete(r.foreignPods, pod)
		}
	}
}

// podNetworks names a process in the network namespace of each pod of cs
// (or container outside a pod) by networkKey, leaving out those skip has:
// the containers of a pod share one namespace, which its infra container
// holds as long as the pod lives (else the lowest process is named).
func podNetworks(cs []podman.ContainerSummary, skip map[string]int) map[string]int {
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
func networkKey(c podman.ContainerSummary) string {
	if c.Pod != "" {
		return "pod:" + c.Pod
	}
	return c.ID
}
