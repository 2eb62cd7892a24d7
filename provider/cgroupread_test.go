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

	testingclock "k8s.io/utils/clock/testing"

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
	running []podman.ContainerSummary
	exit    error // what the command ends with
	listErr error // what the next list fails with

	commands [][]string
	lists    int
}

func (f *fakeCgroupHost) run(_ context.Context, w io.Writer, argv ...string) error {
	f.commands = append(f.commands, argv)
	if argv[0] != "grep" {
		f.t.Fatalf("command %q", argv)
	}
	excluded := map[string]bool{}
	for _, a := range argv {
		if d, ok := strings.CutPrefix(a, "--exclude-dir="); ok {
			excluded[d] = true
		}
	}
	for _, a := range argv {
		switch {
		case a == "/sys/fs/cgroup/cpuacct/libpod_parent":
			for _, id := range slices.Sorted(maps.Keys(f.cgroups)) {
				if excluded[f.cgroups[id]] {
					continue
				}
				fmt.Fprintf(w, "%s/%s/libpod-%s/cpuacct.usage:%d\n", a, f.cgroups[id], id, f.cpu[id])
			}
		case a == "/sys/fs/cgroup/memory/libpod_parent":
			for _, id := range slices.Sorted(maps.Keys(f.cgroups)) {
				if excluded[f.cgroups[id]] {
					continue
				}
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

func (f *fakeCgroupHost) list(context.Context) ([]podman.ContainerSummary, error) {
	f.lists++
	if f.listErr != nil {
		err := f.listErr
		f.listErr = nil
		return nil, err
	}
	return slices.Clone(f.running), nil
}

// reader is a cgroupReader of the fake host, on clk.
func (f *fakeCgroupHost) reader(clk *testingclock.FakeClock) *cgroupReader {
	return newCgroupReader(f.run, newHostList(f.list, clk.Now), clk.Now)
}

func TestCgroupReaderLearnsContainersFromTheHostList(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	now := clk.Now()
	host := &fakeCgroupHost{
		t:       t,
		cgroups: map[string]string{"infra1": "pod1", "build1": "pod1", "other": "pod9"},
		cpu:     map[string]uint64{"infra1": 5, "build1": 2_000_000_000, "other": 7},
		nets:    map[int]string{101: "  eth0: 500 5 0 0 0 0 0 0 90 1 0 0 0 0 0 0"},
		running: []podman.ContainerSummary{
			{ID: "infra1", Name: "p1-infra", Pod: "pod1", PID: 101, Infra: true, State: "running", Labels: map[string]string{"rbn.dev/node": "n1"}, StartedAt: now.Add(-time.Minute)},
			{ID: "build1", Name: "p1-build", Pod: "pod1", PID: 99, Image: "img", State: "running", Labels: map[string]string{"rbn.dev/node": "n1"}, StartedAt: now.Add(-time.Minute)},
		},
	}
	r := host.reader(clk)

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
	if _, foreign := r.foreign["other"]; host.lists != 1 || !foreign {
		t.Errorf("%d lists, foreign %v; want one list, and \"other\" foreign", host.lists, r.foreign)
	}
	if len(host.commands) != 2 || !slices.Equal(host.commands[1], cgroupstats.NetworkCommand(map[string]int{"pod:pod1": 101})) {
		t.Errorf("commands = %q, want the reading and then the new pod's network (its infra container's)", host.commands)
	}

	// Known containers: one command, no list, the pod's network read in it.
	clk.Step(10 * time.Second)
	host.cpu["build1"] = 3_000_000_000
	host.commands, host.lists = nil, 0
	stats, err = r.read(context.Background(), cgroupstats.DefaultLayout)
	if err != nil {
		t.Fatal(err)
	}
	if host.lists != 0 || len(host.commands) != 1 || !slices.Contains(host.commands[0], "/proc/101/net/dev") {
		t.Errorf("second read: %d lists, commands %q; want one command reading the pod's network, no list", host.lists, host.commands)
	}
	if len(stats) != 2 || stats[0].CPUNanos != 3_000_000_000 || stats[0].NetworkRx != 500 {
		t.Errorf("second reading = %+v", stats)
	}

	// A container ends, another starts: the kept list predates it, so a
	// new one is asked for; the ended one is forgotten.
	clk.Step(10 * time.Second)
	delete(host.cgroups, "build1")
	host.cgroups["build2"] = "pod1"
	host.running = append(host.running[:1], podman.ContainerSummary{ID: "build2", Pod: "pod1", PID: 103, State: "running", StartedAt: clk.Now()})
	host.commands, host.lists = nil, 0
	stats, err = r.read(context.Background(), cgroupstats.DefaultLayout)
	if err != nil {
		t.Fatal(err)
	}
	if host.lists != 1 || len(host.commands) != 1 {
		t.Errorf("%d lists, commands %q; want one list and the pod's network already read", host.lists, host.commands)
	}
	if len(stats) != 2 || stats[0].ID != "build2" || stats[0].NetworkRx != 500 {
		t.Errorf("third reading = %+v", stats)
	}
	if _, ok := r.known["build1"]; ok {
		t.Error("build1 is still known after its cgroup went")
	}

	// A container the relists' list already has costs the reader no list.
	clk.Step(10 * time.Second)
	host.running = append(host.running, podman.ContainerSummary{ID: "build3", Pod: "pod1", PID: 104, State: "running", StartedAt: clk.Now()})
	if _, err := r.containers.get(context.Background(), 0); err != nil { // a relist
		t.Fatal(err)
	}
	host.cgroups["build3"] = "pod1"
	host.lists = 0
	if stats, err = r.read(context.Background(), cgroupstats.DefaultLayout); err != nil || len(stats) != 3 || host.lists != 0 {
		t.Errorf("with a relist's list: %d figures, %v, %d lists; want 3 figures and no list of the reader's", len(stats), err, host.lists)
	}
	if ops := r.calls.Snapshot()[opCgroupStats]; ops.Calls != 5 || ops.Errors != 0 {
		t.Errorf("%s calls = %+v, want 5 without errors", opCgroupStats, ops)
	}
}

// Another podman's pods are read once, then left out but for one read in
// fullReadEvery.
func TestCgroupReaderLeavesOtherPodmansPodsOut(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	host := &fakeCgroupHost{
		t:       t,
		cgroups: map[string]string{"a": "ours", "x": "theirs"},
		running: []podman.ContainerSummary{{ID: "a", Pod: "ours", State: "running"}},
	}
	r := host.reader(clk)
	for i := range fullReadEvery + 1 {
		host.commands = nil
		stats, err := r.read(context.Background(), cgroupstats.DefaultLayout)
		if err != nil || len(stats) != 1 || stats[0].ID != "a" {
			t.Fatalf("read %d: %v, %v; want a's figures", i, stats, err)
		}
		excludes := slices.Contains(host.commands[0], "--exclude-dir=theirs")
		if want := i%fullReadEvery != 0; excludes != want {
			t.Errorf("read %d excludes the other podman's pod: %v, want %v (command %q)", i, excludes, want, host.commands[0])
		}
		if slices.Contains(host.commands[0], "--exclude-dir=ours") {
			t.Errorf("read %d excludes this host's own pod", i)
		}
		clk.Step(10 * time.Second)
	}
	if host.lists != 1 {
		t.Errorf("%d lists, want the first read's alone (x stays foreign through the reads that skip it)", host.lists)
	}
}

// A list that fails leaves the new containers out of the reading, not the
// others; a later read learns them.
func TestCgroupReaderGoesOnWithoutAList(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	host := &fakeCgroupHost{
		t:       t,
		cgroups: map[string]string{"a": "p"},
		running: []podman.ContainerSummary{{ID: "a", Pod: "p", State: "running"}},
	}
	r := host.reader(clk)
	if stats, err := r.read(context.Background(), cgroupstats.DefaultLayout); err != nil || len(stats) != 1 {
		t.Fatalf("first reading: %v, %v", stats, err)
	}
	clk.Step(10 * time.Second)
	host.cgroups["b"] = "p"
	host.running = append(host.running, podman.ContainerSummary{ID: "b", Pod: "p", State: "running"})
	host.listErr = errors.New("podman: no answer")
	if stats, err := r.read(context.Background(), cgroupstats.DefaultLayout); err != nil || len(stats) != 1 || stats[0].ID != "a" {
		t.Fatalf("with the list failing: %v, %v; want a's figures", stats, err)
	}
	clk.Step(10 * time.Second)
	if stats, err := r.read(context.Background(), cgroupstats.DefaultLayout); err != nil || len(stats) != 2 {
		t.Fatalf("once the list answers: %v, %v; want a's and b's figures", stats, err)
	}
}

func TestCgroupReaderFindsTheLayoutWrong(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	host := &fakeCgroupHost{t: t, exit: &sshconn.ExitError{Status: 2}}
	r := host.reader(clk)

	// Nothing runs: an empty reading, checked with one list.
	if stats, err := r.read(context.Background(), cgroupstats.DefaultLayout); err != nil || len(stats) != 0 || host.lists != 1 {
		t.Fatalf("idle host: %v, %v, %d lists; want no figures, no error, one list", stats, err, host.lists)
	}
	// A container that started as the files were read is not proof.
	clk.Step(time.Second)
	host.running = []podman.ContainerSummary{{ID: "new", State: "running", StartedAt: clk.Now()}}
	if _, err := r.read(context.Background(), cgroupstats.DefaultLayout); err != nil {
		t.Fatalf("a container started as the files were read: %v", err)
	}
	// One that ran before is.
	clk.Step(time.Minute)
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
			r := host.reader(testingclock.NewFakeClock(time.Now()))
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
