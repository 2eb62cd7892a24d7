//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// kubectl top through metrics-server, installed as its release manifest
// installs it (hack/manifests/metrics-server): it scrapes every node's
// kubelet at the address and port in the Node's status, for a remote build
// node the rbn-kubelet replica serving it, with its ServiceAccount token
// and the cluster CA. The figures are the host's own: a job holding 40 MiB
// shows them, and each node's memory is its host's MemTotal - MemAvailable.
func TestKubectlTop(t *testing.T) {
	s := newStack(t)
	if !s.InCluster {
		t.Skip("metrics-server runs with rbn installed in the cluster (RBN_IN_CLUSTER=1, the default)")
	}
	ns := s.Namespace(t)
	// 40 MiB in the container's /dev/shm (tmpfs: charged to its memory
	// cgroup and never dropped as page cache), then a busy loop.
	p := s.runPod(t, ns, "topped", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: hold
      image: %s
      command: [sh, -c, 'dd if=/dev/zero of=/dev/shm/hold bs=1M count=40 && while :; do :; done']`, framework.TestImage), corev1.PodRunning)

	// Pod figures: kubectl top pod NAME -> "topped 987m 41Mi".
	var cpu, mem resource.Quantity
	framework.Eventually(t, "kubectl top pod to show topped holding 40 MiB", 3*time.Minute, func() (bool, string) {
		out, err := s.KubectlErr("top", "pod", "topped", "-n", ns, "--no-headers")
		if err != nil {
			return false, out
		}
		f := strings.Fields(out)
		if len(f) != 3 || f[0] != "topped" {
			return false, out
		}
		if cpu, err = resource.ParseQuantity(f[1]); err != nil {
			return false, out
		}
		if mem, err = resource.ParseQuantity(f[2]); err != nil {
			return false, out
		}
		return mem.Value() >= 40<<20, out
	})
	t.Logf("kubectl top pod: topped on %s uses %s CPU, %s memory", p.Spec.NodeName, cpu.String(), mem.String())
	if mem.Value() > 72<<20 {
		t.Errorf("topped's memory %s: more than the 40 MiB it holds plus 32 MiB of sh, dd and the cgroup's own", mem.String())
	}
	if cpu.MilliValue() == 0 || cpu.MilliValue() > int64(1000*runtime.NumCPU()) {
		t.Errorf("topped's CPU %s: a busy loop uses between nothing and the host's %d cores", cpu.String(), runtime.NumCPU())
	}
	if out := s.Kubectl(t, "top", "pods", "-A", "--no-headers"); !strings.Contains(out, ns) || !strings.Contains(out, "topped") {
		t.Errorf("kubectl top pods -A does not list %s/topped:\n%s", ns, out)
	}

	// Node figures: every remote build node, each with its host's memory.
	// The stack's build hosts run on this machine (hack/hosts.sh), so their
	// /proc/meminfo is this one's; 1 GiB of tolerance for what the machine
	// does between metrics-server's scrape and this reading.
	nodes := s.Kubectl(t, "top", "nodes", "--no-headers")
	t.Logf("kubectl top nodes:\n%s", nodes)
	used := memInUse(t)
	hosts, err := s.BuildHosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		name := h.Name
		var line []string
		for l := range strings.Lines(nodes) {
			if f := strings.Fields(l); len(f) >= 5 && f[0] == name {
				line = f
			}
		}
		if line == nil {
			t.Errorf("kubectl top nodes does not list %s", name)
			continue
		}
		// NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)
		nodeMem, err := resource.ParseQuantity(line[3])
		if err != nil {
			t.Errorf("%s: memory %q: %v", name, line[3], err)
			continue
		}
		if d := nodeMem.Value() - used; d > 1<<30 || d < -(1<<30) {
			t.Errorf("%s: kubectl top says %s of memory in use, the host's /proc/meminfo %d MiB", name, line[3], used>>20)
		}
	}
}

// memInUse is MemTotal - MemAvailable of this machine, in bytes.
func memInUse(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kib := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 {
			v, _ := strconv.ParseInt(fs[1], 10, 64)
			kib[strings.TrimSuffix(fs[0], ":")] = v
		}
	}
	if kib["MemTotal"] == 0 || kib["MemAvailable"] == 0 {
		t.Fatalf("/proc/meminfo without MemTotal or MemAvailable: %v", kib)
	}
	return (kib["MemTotal"] - kib["MemAvailable"]) << 10
}
