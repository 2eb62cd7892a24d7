// Package cgroupstats reads the resource figures of a host's podman
// containers straight from its cgroup files, with one command over the
// host's SSH connection and no podman call: podman's stats API locks and
// syncs every container from its state database (one BoltDB open each,
// under one process-wide lock, in podman 4), which takes minutes at
// hundreds of containers on a loaded host. See docs/operations.md.
//
// It is pure: Command builds the command, Parse reads its output. Only
// podman's cgroupfs layout is read (cgroup_manager = "cgroupfs", a rootful
// service): the systemd manager's scopes are elsewhere.
package cgroupstats

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Layout is where a host's podman puts its containers' cgroups: with
// cgroup_manager = "cgroupfs", <Root>/<controller>/<Parent>/<pod id>/libpod-<container id>
// on cgroup v1 (a container outside a pod has no pod level), and
// <Root>/<Parent>/... on cgroup v2 (the unified hierarchy).
type Layout struct {
	Version int    // 1 or 2
	Root    string // the cgroup mount, normally /sys/fs/cgroup
	Parent  string // podman's cgroupfs parent, normally libpod_parent
}

// DefaultLayout is podman's cgroupfs layout on cgroup v1 (and hybrid) hosts.
var DefaultLayout = Layout{Version: 1, Root: "/sys/fs/cgroup", Parent: "libpod_parent"}

// Figures are one container's figures.
type Figures struct {
	// CPUNanos is the CPU time used since the container started.
	CPUNanos uint64
	// MemoryUsage is the cgroup's usage; WorkingSet that minus its
	// inactive file cache (cAdvisor's working set, and podman's usage
	// figure); MemoryLimit its limit, 0 when unlimited.
	MemoryUsage, WorkingSet, MemoryLimit uint64
	has                                  uint8
}

const (
	hasCPU = 1 << iota
	hasMemory
)

// HasCPU and HasMemory say which figures were read.
func (f Figures) HasCPU() bool    { return f.has&hasCPU != 0 }
func (f Figures) HasMemory() bool { return f.has&hasMemory != 0 }

// Network sums the bytes of the interfaces of one network namespace,
// loopback left out.
type Network struct{ Rx, Tx uint64 }

// Reading is what Parse read.
type Reading struct {
	// Containers are the figures of every container found, by ID.
	Containers map[string]Figures
	// PodDirs name the pod directory each container's cgroup is in (a
	// podman pod's ID), for those in one.
	PodDirs map[string]string
	// Networks are the figures of the network namespaces, by the keys of
	// the processes Command was given; a process that ended meanwhile is
	// absent.
	Networks map[string]Network
}

// files are the cgroup files read, by cgroup version: the first of each
// version is the CPU counter.
var files = map[int][]string{
	1: {"cpuacct.usage", "memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat"},
	2: {"cpu.stat", "memory.current", "memory.max", "memory.stat"},
}

// pattern keeps the lines Parse needs: the one-number files, the memory
// limit "max" (v2), CPU usage (v2 cpu.stat), inactive file cache
// (memory.stat), and the interfaces of /proc/<pid>/net/dev.
const pattern = `^([0-9]+|max|usage_usec [0-9]+|(total_)?inactive_file [0-9]+| *[^ :]+: *[0-9].*)$`

// Command is the argv that prints every container's figures under l,
// and the network figures of the processes netPIDs names by a key of the
// caller's (a pod's containers share one namespace: one process of each
// pod is enough). Its exit status is 1 when it found nothing, and 2 when a
// file vanished meanwhile (a container ended) or l's directories do not
// exist (no container ran yet): what it printed still stands.
func Command(l Layout, netPIDs map[string]int, excludePods []string) []string {
	argv := []string{"grep", "-r", "-H", "-s", "-E", pattern}
	// Pod directories of no interest (another podman's, on a machine
	// whose podman services share the cgroups) are not read at all.
	for _, d := range slices.Sorted(slices.Values(excludePods)) {
		argv = append(argv, "--exclude-dir="+d)
	}
	// GNU grep applies --include to the files named on the command line
	// too: "dev" lets /proc/<pid>/net/dev through (no cgroup file has
	// that name).
	for _, f := range append(files[l.Version], "dev") {
		argv = append(argv, "--include="+f)
	}
	switch l.Version {
	case 2:
		argv = append(argv, path.Join(l.Root, l.Parent))
	default:
		argv = append(argv, path.Join(l.Root, "cpuacct", l.Parent), path.Join(l.Root, "memory", l.Parent))
	}
	for _, id := range slices.Sorted(maps.Keys(netPIDs)) {
		argv = append(argv, fmt.Sprintf("/proc/%d/net/dev", netPIDs[id]))
	}
	return argv
}

// NetworkCommand is Command reading the network figures of netPIDs alone.
func NetworkCommand(netPIDs map[string]int) []string {
	argv := []string{"grep", "-H", "-s", "-E", pattern}
	for _, key := range slices.Sorted(maps.Keys(netPIDs)) {
		argv = append(argv, fmt.Sprintf("/proc/%d/net/dev", netPIDs[key]))
	}
	return argv
}

// Parse reads Command's (or NetworkCommand's) output: netPIDs must be what Command was given.
func Parse(l Layout, netPIDs map[string]int, out io.Reader) (Reading, error) {
	byPID := map[string]string{}
	for key, pid := range netPIDs {
		byPID[fmt.Sprintf("/proc/%d/net/dev", pid)] = key
	}
	inactive := map[string]uint64{}
	r := Reading{Containers: map[string]Figures{}, PodDirs: map[string]string{}, Networks: map[string]Network{}}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		file, value, ok := strings.Cut(line, ":")
		if !ok {
			return Reading{}, fmt.Errorf("cgroup figures: %q is not <file>:<line>", line)
		}
		if key, ok := byPID[file]; ok {
			n := r.Networks[key]
			if err := addInterface(&n, value); err != nil {
				return Reading{}, err
			}
			r.Networks[key] = n
			continue
		}
		id := containerOf(file)
		if id == "" {
			continue // a pod's own cgroup, or podman's conmon cgroup
		}
		if pod := path.Base(path.Dir(path.Dir(file))); pod != l.Parent {
			r.PodDirs[id] = pod
		}
		f := r.Containers[id]
		if err := setFigure(l.Version, &f, inactive, id, path.Base(file), value); err != nil {
			return Reading{}, fmt.Errorf("cgroup figures: %s: %w", file, err)
		}
		r.Containers[id] = f
	}
	if err := sc.Err(); err != nil {
		return Reading{}, fmt.Errorf("cgroup figures: %w", err)
	}
	for id, f := range r.Containers {
		if f.HasMemory() {
			f.WorkingSet = f.MemoryUsage - min(f.MemoryUsage, inactive[id])
			r.Containers[id] = f
		}
	}
	return r, nil
}

// containerOf is the container ID of a file in a container's cgroup
// ("libpod-<id>"), "" for any other.
func containerOf(file string) string {
	dir := path.Base(path.Dir(file))
	id, ok := strings.CutPrefix(dir, "libpod-")
	if !ok || strings.Contains(id, "conmon") {
		return ""
	}
	return id
}

func setFigure(version int, f *Figures, inactive map[string]uint64, id, name, value string) error {
	num := func() (uint64, error) { return strconv.ParseUint(strings.TrimSpace(value), 10, 64) }
	switch name {
	case "cpuacct.usage":
		n, err := num()
		if err != nil {
			return err
		}
		f.CPUNanos, f.has = n, f.has|hasCPU
	case "cpu.stat":
		v, ok := strings.CutPrefix(value, "usage_usec ")
		if !ok {
			return nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return err
		}
		f.CPUNanos, f.has = n*1000, f.has|hasCPU
	case "memory.usage_in_bytes", "memory.current":
		n, err := num()
		if err != nil {
			return err
		}
		f.MemoryUsage, f.has = n, f.has|hasMemory
	case "memory.limit_in_bytes", "memory.max":
		if value == "max" {
			return nil
		}
		n, err := num()
		if err != nil {
			return err
		}
		// v1 says "unlimited" with the largest page-aligned int64.
		if n < 1<<62 {
			f.MemoryLimit = n
		}
	case "memory.stat":
		key := "inactive_file "
		if version == 1 {
			key = "total_inactive_file "
		}
		if v, ok := strings.CutPrefix(value, key); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return err
			}
			inactive[id] = n
		}
	}
	return nil
}

// addInterface adds one line of /proc/<pid>/net/dev: "  eth0: rxbytes
// rxpackets ... (8 receive fields) txbytes ...". The header lines and
// loopback are skipped.
func addInterface(n *Network, line string) error {
	name, rest, ok := strings.Cut(line, ":")
	if !ok {
		return nil // a header line
	}
	if strings.TrimSpace(name) == "lo" {
		return nil
	}
	fields := strings.Fields(rest)
	if len(fields) < 9 {
		return fmt.Errorf("net/dev: %q: want 16 fields", line)
	}
	rx, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil {
		return fmt.Errorf("net/dev: %q: %w", line, err)
	}
	tx, err := strconv.ParseUint(fields[8], 10, 64)
	if err != nil {
		return fmt.Errorf("net/dev: %q: %w", line, err)
	}
	n.Rx += rx
	n.Tx += tx
	return nil
}
