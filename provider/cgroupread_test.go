package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remote-build-nodes/rbn/internal/cgroupstats"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// fakeCgroupHost answers a cgroupReader's commands from its containers'
// figures and its podman list from running.
type fakeCgroupHost struct {
	t       *testing.T
	cgroups map[string]string // container ID -> pod ID, as the cgroup files have them
	cpu     map[string]uint64
	nets    map[int]string // pid -> net/dev interface line
	running []podman.RunningContainer
	exit    error // what the command ends with

	commands [][]string
	lists    [][]string
}

func (f *fakeCgroupHost) run(_ context.Context, w io.Writer, argv ...string) error {
	f.commands = append(f.commands, argv)
	if argv[0] != "grep" {
		f.t.Fatalf("command %q", argv)
	}
	for _, a := range argv {
		switch {
		case a == "/sys/fs/cgroup/cpuacct/libpod_parent":
			for _, id := range slices.Sorted(maps.Keys(f.cgroups)) {
				fmt.Fprintf(w, "%s/%s/libpod-%s/cpuacct.usage:%d\n", a, f.cgroups[id], id, f.cpu[id])
			}
		case a == "/sys/fs/cgroup/memory/libpod_parent":
			for _, id := range slices.Sorted(maps.Keys(f.cgroups)) {
				dir := fmt.Sprintf("%s/%s/libpod-%s", a, f.cgroups[id], id)
				fmt.Fprintf(w, "%s/memory.usage_in_bytes:1000\n%s/memory.limit_in_bytes:9223372036854771712\n%s/memory.stat:total_inactive_file 100\n", dir, dir, dir)
			}
		case strings.HasPrefix(a, "/proc/"):
			var pid int
			if _, err := fmt.Sscanf(a, "/proc/%d/net/dev", &pid); err != nil {
				f.t.Fatalf("argument %q", a)
			}
			if line, ok := f.nets[pid]; ok {
				fmt.Fprintf(w, "%s:%s\n", a, line)
			}
		}
	}
	return f.exit
}

func (f *fakeCgroupHost) list(_ context.Context, ids []string) ([]podman.RunningContainer, error) {
	f.lists = append(f.lists, ids)
	var out []podman.RunningContainer
	for _, c := range f.running {
		if len(ids) == 0 || slices.Contains(ids, c.ID) {
			out = append(out, c)
		}
	}
	return out, nil
}

func TestCgroupReaderListsOnlyWhatItDoesNotKnow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	host := &fakeCgroupHost{
		t:       t,
		cgroups: map[string]string{"infra1": "pod1", "build1": "pod1", "other": "pod9"},
		cpu:     map[string]uint64{"infra1": 5, "build1": 2_000_000_000, "other": 7},
		nets:    map[int]string{101: "  eth0: 500 5 0 0 0 0 0 0 90 1 0 0 0 0 0 0"},
		running: []podman.RunningContainer{
			{ID: "infra1", Name: "p1-infra", Pod: "pod1", PID: 101, Infra: true, Labels: map[string]string{"rbn.dev/node": "n1"}, StartedAt: now.Add(-time.Minute)},
			{ID: "build1", Name: "p1-build", Pod: "pod1", PID: 99, Image: "img", Labels: map[string]string{"rbn.dev/node": "n1"}, StartedAt: now.Add(-time.Minute)},
		},
	}
	r := newCgroupReader(host.run, host.list, func() time.Time { return now })

	stats, err := r.read(context.Background(), cgroupstats.DefaultLayout)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 2 || stats[0].ID != "build1" || stats[1].ID != "infra1" {
		t.Fatalf("first reading = %+v, want build1 and infra1 (\"other\" is not this podman's)", stats)
	}
	b := stats[0]
	if b.CPUNanos != 2_000_000_000 || b.MemoryUsage != 900 || b.MemoryLimit != 0 || b.Image != "img" || b.Name != "p1-build" ||
		b.NetworkRx != 500 || b.NetworkTx != 90 || !b.Time.Equal(now) || b.Labels["rbn.dev/node"] != "n1" {
		t.Errorf("build1 = %+v", b)
	}
	if len(host.lists) != 1 || !slices.Equal(slices.Sorted(slices.Values(host.lists[0])), []string{"build1", "infra1", "other"}) {
		t.Errorf("lists = %q, want one naming the three containers found", host.lists)
	}
	if len(host.commands) != 2 || !slices.Equal(host.commands[1], cgroupstats.NetworkCommand(map[string]int{"pod:pod1": 101})) {
		t.Errorf("commands = %q, want the reading and then the new pod's network", host.commands)
	}

	// Known containers: one command, no podman call, the pod's network read in it.
	host.cpu["build1"] = 3_000_000_000
	host.commands, host.lists = nil, nil
	stats, err = r.read(context.Background(), cgroupstats.DefaultLayout)
	if err != nil {
		t.Fatal(err)
	}
	if len(host.lists) != 0 || len(host.commands) != 1 || !slices.Contains(host.commands[0], "/proc/101/net/dev") {
		t.Errorf("second read: lists %q, commands %q; want one command reading the pod's network, no list", host.lists, host.commands)
	}
	if len(stats) != 2 || stats[0].CPUNanos != 3_000_000_000 || stats[0].NetworkRx != 500 {
		t.Errorf("second reading = %+v", stats)
	}

	// A container ends, another starts: only the new one is listed; the
	// ended one is forgotten.
	delete(host.cgroups, "build1")
	host.cgroups["build2"] = "pod1"
	host.running = append(host.running[:1], podman.RunningContainer{ID: "build2", Pod: "pod1", PID: 103, StartedAt: now})
	host.commands, host.lists = nil, nil
	stats, err = r.read(context.Background(), cgroupstats.DefaultLayout)
	if err != nil {
		t.Fatal(err)
	}
	if len(host.lists) != 1 || !slices.Equal(host.lists[0], []string{"build2"}) || len(host.commands) != 1 {
		t.Errorf("lists %q, commands %q; want build2 listed alone and its pod's network already read", host.lists, host.commands)
	}
	if len(stats) != 2 || stats[0].ID != "build2" || stats[0].NetworkRx != 500 {
		t.Errorf("third reading = %+v", stats)
	}
	if _, ok := r.known["build1"]; ok {
		t.Error("build1 is still known after its cgroup went")
	}
	if ops := r.calls.Snapshot()[opCgroupStats]; ops.Calls != 4 || ops.Errors != 0 {
		t.Errorf("%s calls = %+v, want 4 without errors", opCgroupStats, ops)
	}
}

func TestCgroupReaderFindsTheLayoutWrong(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	host := &fakeCgroupHost{t: t, exit: &sshconn.ExitError{Status: 2}}
	r := newCgroupReader(host.run, host.list, func() time.Time { return now })

	// Nothing runs: an empty reading, checked with one list.
	if stats, err := r.read(context.Background(), cgroupstats.DefaultLayout); err != nil || len(stats) != 0 || len(host.lists) != 1 || host.lists[0] != nil {
		t.Fatalf("idle host: %v, %v, lists %q; want no figures, no error, one list of all", stats, err, host.lists)
	}
	// A container that started as the files were read is not proof.
	host.running = []podman.RunningContainer{{ID: "new", StartedAt: now}}
	if _, err := r.read(context.Background(), cgroupstats.DefaultLayout); err != nil {
		t.Fatalf("a container started as the files were read: %v", err)
	}
	// One that ran before is.
	host.running[0].StartedAt = now.Add(-time.Minute)
	if _, err := r.read(context.Background(), cgroupstats.DefaultLayout); !errors.Is(err, errCgroupsUnreadable) {
		t.Errorf("podman runs a container with no cgroup files: %v, want errCgroupsUnreadable", err)
	}
}

func TestCgroupReaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		exit       error
		unreadable bool
	}{
		{"no grep", &sshconn.ExitError{Status: 127, Stderr: "grep: not found"}, true},
		{"connection lost", errors.New("ssh: connection lost"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := &fakeCgroupHost{t: t, exit: tc.exit}
			r := newCgroupReader(host.run, host.list, time.Now)
			_, err := r.read(context.Background(), cgroupstats.DefaultLayout)
			if err == nil || errors.Is(err, errCgroupsUnreadable) != tc.unreadable {
				t.Errorf("err = %v, unreadable %v; want an error, unreadable %v", err, errors.Is(err, errCgroupsUnreadable), tc.unreadable)
			}
			if ops := r.calls.Snapshot()[opCgroupStats]; ops.Errors != 1 {
				t.Errorf("calls = %+v, want the error counted", ops)
			}
		})
	}
}

func TestCgroupLayout(t *testing.T) {
	for _, tc := range []struct {
		info *podman.HostInfo
		want bool
	}{
		{nil, false},
		{&podman.HostInfo{CgroupManager: "cgroupfs", CgroupVersion: "v1"}, true},
		{&podman.HostInfo{CgroupManager: "systemd", CgroupVersion: "v1"}, false},
		{&podman.HostInfo{CgroupManager: "cgroupfs", CgroupVersion: "v2"}, false},
		{&podman.HostInfo{CgroupManager: "cgroupfs", CgroupVersion: "v1", Rootless: true}, false},
	} {
		if _, got := cgroupLayout(tc.info); got != tc.want {
			t.Errorf("cgroupLayout(%+v) = %v, want %v", tc.info, got, tc.want)
		}
	}
}
