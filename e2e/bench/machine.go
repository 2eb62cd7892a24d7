package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/internal/podman"
)

// ---------------------------------------------------------------------------------------------
// The machine.

type machineInfo struct {
	cpus                          int
	cpuModel                      string
	memTotalKB                    int64
	kernel                        string
	loadStart, loadEnd            string
	othersStart, othersEnd        string
	goVersion, k8sVersion, rbnRev string
}

type hostFacts struct {
	name string
	info *podman.HostInfo
}

func (b *bench) machine(ctx context.Context, t *testing.T) machineInfo {
	m := machineInfo{cpus: goruntime.NumCPU(), goVersion: goruntime.Version(), loadStart: framework.Loadavg()}
	m.memTotalKB = framework.Meminfo()["MemTotal"]
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(raw))
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if v, err := b.kube.Discovery().ServerVersion(); err == nil {
		m.k8sVersion = v.GitVersion
	}
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = b.stack.Root
	if out, err := cmd.Output(); err == nil {
		m.rbnRev = strings.TrimSpace(string(out))
	}
	m.othersStart = b.otherStacks()
	t.Logf("machine: %d CPUs (%s), %d MiB, kernel %s, load %s, sharing: %s",
		m.cpus, m.cpuModel, m.memTotalKB/1024, m.kernel, m.loadStart, m.othersStart)
	return m
}

// otherStacks counts the other stacks' processes on the machine: they
// compete for its cores.
func (b *bench) otherStacks() string {
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	own, _ := b.stack.KubeletPID()
	apiservers, kubelets, compilers := 0, 0, 0
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(raw)) {
		case "kube-apiserver":
			apiservers++
		case kubeletName:
			if p != fmt.Sprintf("/proc/%d/comm", own) {
				kubelets++
			}
		case "compile", "link":
			compilers++
		}
	}
	return fmt.Sprintf("%d other kube-apiserver(s), %d other rbn-kubelet(s), %d Go compile/link process(es)",
		max(apiservers-1, 0), kubelets, compilers)
}
