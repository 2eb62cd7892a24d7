package cgroupstats

import (
	"slices"
	"strings"
	"testing"
)

const (
	pod   = "f3dca63b3525aec42557be2b34e49c49d5f44e9eaa878e662a936a7017226b16"
	infra = "c228a38af8cf24bac4cd83423b723043879941ae9ff9fe5da53198b5ebdf0034"
	build = "9d1e0b7a4c2f83d6e5a1b0c9f8e7d6c5b4a39281706f5e4d3c2b1a0918273645"
)

func TestCommandV1(t *testing.T) {
	got := Command(DefaultLayout, map[string]int{infra: 6528, build: 6530}, []string{"p2", "p1"})
	want := []string{"grep", "-r", "-H", "-s", "-E", pattern, "--exclude-dir=p1", "--exclude-dir=p2",
		"--include=cpuacct.usage", "--include=memory.usage_in_bytes", "--include=memory.limit_in_bytes", "--include=memory.stat", "--include=dev",
		"/sys/fs/cgroup/cpuacct/libpod_parent", "/sys/fs/cgroup/memory/libpod_parent",
		"/proc/6530/net/dev", "/proc/6528/net/dev"}
	if !slices.Equal(got, want) {
		t.Errorf("Command =\n%q\nwant\n%q", got, want)
	}
}

// What the command printed on a host of this project's (hybrid cgroups,
// podman 4.3 with cgroupfs), a pod's infra container and one more.
var v1Out = strings.Join([]string{
	"/sys/fs/cgroup/cpuacct/libpod_parent/" + pod + "/cpuacct.usage:99000000",
	"/sys/fs/cgroup/cpuacct/libpod_parent/" + pod + "/libpod-" + infra + "/cpuacct.usage:38127032",
	"/sys/fs/cgroup/cpuacct/libpod_parent/" + pod + "/libpod-" + build + "/cpuacct.usage:2500000000",
	"/sys/fs/cgroup/cpuacct/libpod_parent/conmon/cpuacct.usage:1000",
	"/sys/fs/cgroup/memory/libpod_parent/" + pod + "/libpod-" + infra + "/memory.usage_in_bytes:237568",
	"/sys/fs/cgroup/memory/libpod_parent/" + pod + "/libpod-" + infra + "/memory.limit_in_bytes:9223372036854771712",
	"/sys/fs/cgroup/memory/libpod_parent/" + pod + "/libpod-" + infra + "/memory.stat:inactive_file 0",
	"/sys/fs/cgroup/memory/libpod_parent/" + pod + "/libpod-" + infra + "/memory.stat:total_inactive_file 0",
	"/sys/fs/cgroup/memory/libpod_parent/" + pod + "/libpod-" + build + "/memory.usage_in_bytes:104857600",
	"/sys/fs/cgroup/memory/libpod_parent/" + pod + "/libpod-" + build + "/memory.limit_in_bytes:536870912",
	"/sys/fs/cgroup/memory/libpod_parent/" + pod + "/libpod-" + build + "/memory.stat:inactive_file 1000",
	"/sys/fs/cgroup/memory/libpod_parent/" + pod + "/libpod-" + build + "/memory.stat:total_inactive_file 4194304",
	"/proc/6528/net/dev:    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0",
	"/proc/6528/net/dev:  eth0:  534012    4101    0    0    0     0          0         0    91234     876    0    0    0     0       0          0",
}, "\n") + "\n"

func TestParseV1(t *testing.T) {
	got, err := Parse(DefaultLayout, map[string]int{pod: 6528, "gone": 7000}, strings.NewReader(v1Out))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Containers) != 2 {
		t.Fatalf("%d containers, want 2 (the pod's and conmon's cgroups left out): %+v", len(got.Containers), got)
	}
	in, b := got.Containers[infra], got.Containers[build]
	if in.CPUNanos != 38127032 || in.MemoryUsage != 237568 || in.WorkingSet != 237568 || in.MemoryLimit != 0 || !in.HasCPU() || !in.HasMemory() {
		t.Errorf("infra = %+v", in)
	}
	if b.CPUNanos != 2500000000 || b.MemoryUsage != 104857600 || b.WorkingSet != 104857600-4194304 || b.MemoryLimit != 536870912 {
		t.Errorf("build = %+v", b)
	}
	if got.PodDirs[infra] != pod || got.PodDirs[build] != pod {
		t.Errorf("pod directories = %v, want %s for both", got.PodDirs, pod)
	}
	if n, ok := got.Networks[pod]; !ok || n != (Network{Rx: 534012, Tx: 91234}) || len(got.Networks) != 1 {
		t.Errorf("networks = %+v, want the pod's alone (loopback left out; the ended process absent)", got.Networks)
	}
}

func TestParseV2(t *testing.T) {
	l := Layout{Version: 2, Root: "/sys/fs/cgroup", Parent: "libpod_parent"}
	if got := Command(l, nil, nil); got[len(got)-1] != "/sys/fs/cgroup/libpod_parent" || !slices.Contains(got, "--include=cpu.stat") {
		t.Errorf("Command = %q", got)
	}
	dir := "/sys/fs/cgroup/libpod_parent/" + pod + "/libpod-" + build
	out := dir + "/cpu.stat:usage_usec 2500000\n" + dir + "/memory.current:104857600\n" + dir + "/memory.max:max\n" + dir + "/memory.stat:inactive_file 4194304\n"
	got, err := Parse(l, nil, strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if b := got.Containers[build]; b.CPUNanos != 2500000000 || b.WorkingSet != 104857600-4194304 || b.MemoryLimit != 0 {
		t.Errorf("build = %+v", b)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for _, out := range []string{
		"no colon here\n",
		"/sys/fs/cgroup/cpuacct/libpod_parent/p/libpod-" + build + "/cpuacct.usage:12x\n",
		"/proc/1/net/dev:  eth0: 1 2 3\n",
	} {
		if _, err := Parse(DefaultLayout, map[string]int{infra: 1}, strings.NewReader(out)); err == nil {
			t.Errorf("Parse(%q) took it", out)
		}
	}
}
