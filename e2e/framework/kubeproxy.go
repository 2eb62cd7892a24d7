package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/internal/nodeservice"
)

// PauseKubeProxy stops the worker node's kube-proxy (SIGSTOP) until resume
// is called or the test ends: Services and EndpointSlice changes made
// meanwhile are not programmed, as on a kube-proxy too busy to keep up.
// The process is the one started with the worker's configuration,
// <State>/worker/kube-proxy.yaml (hack/worker.sh).
func (s *Stack) PauseKubeProxy(t testing.TB) (resume func()) {
	t.Helper()
	pid, err := kubeProxyPID(filepath.Join(s.State, "worker", "kube-proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("pause kube-proxy (pid %d): %v", pid, err)
	}
	resumed := false
	resume = func() {
		if resumed {
			return
		}
		resumed = true
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Errorf("resume kube-proxy (pid %d): %v", pid, err)
		}
	}
	t.Cleanup(resume)
	return resume
}

// kubeProxyPID finds the kube-proxy process started with --config=config.
func kubeProxyPID(config string) (int, error) {
	want := []byte("--config=" + config)
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, err
	}
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		if len(args) < 2 || filepath.Base(string(args[0])) != "kube-proxy" {
			continue
		}
		for _, a := range args[1:] {
			if bytes.Equal(a, want) {
				return strconv.Atoi(filepath.Base(filepath.Dir(f)))
			}
		}
	}
	return 0, fmt.Errorf("no kube-proxy runs with --config=%s: is the worker node up (hack/worker.sh)?", config)
}

// NodeRouteReport says where the apiserver's dial to node's address goes
// now, for a test that failed to reach it: the Node's address, the
// EndpointSlice of its Service and the replicas' pod IPs (what rbn wrote),
// the worker's kube-proxy rules for the address and the neighbour entries of
// their targets (what the machine does), and kube-proxy's last log lines.
// Each part that cannot be read says why instead.
func (s *Stack) NodeRouteReport(ctx context.Context, node string) string {
	var b strings.Builder
	section := func(title, body string, err error) {
		fmt.Fprintf(&b, "--- %s\n", title)
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
		}
		b.WriteString(strings.TrimRight(body, "\n"))
		b.WriteString("\n")
	}
	addr := ""
	if n, err := s.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err != nil {
		section("node "+node, "", err)
	} else {
		addr = NodeInternalIP(n)
		section("node "+node, fmt.Sprintf("address %s, Ready=%s (%s)", NodeKubeletAddress(n), ReadyCondition(n).Status, ReadyCondition(n).Reason), nil)
	}
	if slice, err := s.Client.DiscoveryV1().EndpointSlices(RBNNamespace).Get(ctx, nodeservice.Name(node), metav1.GetOptions{}); err != nil {
		section("EndpointSlice", "", err)
	} else {
		var lines []string
		for _, e := range slice.Endpoints {
			lines = append(lines, fmt.Sprintf("%v ready=%v serving=%v terminating=%v", e.Addresses,
				deref(e.Conditions.Ready), deref(e.Conditions.Serving), deref(e.Conditions.Terminating)))
		}
		section(fmt.Sprintf("EndpointSlice %s (resourceVersion %s)", slice.Name, slice.ResourceVersion), strings.Join(lines, "\n"), nil)
	}
	if pods, err := s.RBNPods(ctx, KubeletApp); err != nil {
		section("rbn-kubelet pods", "", err)
	} else {
		var lines []string
		for _, p := range pods {
			lines = append(lines, fmt.Sprintf("%s ip=%s phase=%s deleting=%v", p.Name, p.Status.PodIP, p.Status.Phase, p.DeletionTimestamp != nil))
		}
		section("rbn-kubelet pods", strings.Join(lines, "\n"), nil)
	}
	rules, err := Run(ctx, []string{"iptables-save", "-t", "nat"}, nil)
	byChain := map[string][]string{}
	var mine, targets []string
	for _, l := range strings.Split(rules, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "-A" {
			byChain[f[1]] = append(byChain[f[1]], l)
		}
		if addr != "" && strings.Contains(l, " "+addr+"/32 ") {
			mine = append(mine, l)
		}
	}
	// Follow the jumps from the address's rules to the DNAT targets.
	queue, seen := slices.Clone(mine), map[string]bool{}
	for len(queue) > 0 {
		f := strings.Fields(queue[0])
		queue = queue[1:]
		if i := slices.Index(f, "-j"); i >= 0 && i+1 < len(f) && strings.HasPrefix(f[i+1], "KUBE-") && !seen[f[i+1]] {
			seen[f[i+1]] = true
			for _, l := range byChain[f[i+1]] {
				if !slices.Contains(mine, l) {
					mine = append(mine, l)
				}
			}
			queue = append(queue, byChain[f[i+1]]...)
		}
		if i := slices.Index(f, "--to-destination"); i >= 0 && i+1 < len(f) {
			host, _, _ := strings.Cut(f[i+1], ":")
			targets = append(targets, host)
		}
	}
	section("kube-proxy's nat rules for "+addr, strings.Join(mine, "\n"), err)
	filter, err := Run(ctx, []string{"iptables-save", "-t", "filter"}, nil)
	var rejects []string
	for _, l := range strings.Split(filter, "\n") {
		if addr != "" && strings.Contains(l, " "+addr+"/32 ") {
			rejects = append(rejects, l)
		}
	}
	section("kube-proxy's filter rules for "+addr, strings.Join(rejects, "\n"), err)
	for _, target := range targets {
		out, err := Run(ctx, []string{"ip", "neigh", "show", target}, nil)
		section("neighbour "+target, out, err)
	}
	log, err := os.ReadFile(filepath.Join(s.State, "worker", "logs", "kube-proxy.log"))
	lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
	section("kube-proxy's log, last lines", strings.Join(lines[max(0, len(lines)-30):], "\n"), err)
	return b.String()
}

func deref(b *bool) string {
	if b == nil {
		return "unset"
	}
	return strconv.FormatBool(*b)
}
