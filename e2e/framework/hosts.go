package framework

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The build hosts of the local stack: hack/hosts.sh runs an sshd and a
// podman service per host under $RBN_STATE/hosts/hostN and describes each
// in its host.env.

// BuildHost is one host's host.env.
type BuildHost struct {
	Index                                   int // N of hostN
	Name, Address, User, Socket, Known, Key string
	Port                                    int
	// Arch is the host's architecture as Kubernetes names it (amd64,
	// arm64): an emulated aarch64 host (RBN_ARM64_HOSTS) says arm64.
	Arch string
}

func (s *Stack) hostEnvPath(i int) string {
	return filepath.Join(s.State, "hosts", fmt.Sprintf("host%d", i), "host.env")
}

// Host reads build host i's host.env.
func (s *Stack) Host(t testing.TB, i int) map[string]string {
	t.Helper()
	env, err := ReadEnvFile(s.hostEnvPath(i))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// HostIndex returns the number of the build host node belongs to.
func (s *Stack) HostIndex(t testing.TB, node string) int {
	t.Helper()
	for i := 1; ; i++ {
		if _, err := os.Stat(s.hostEnvPath(i)); err != nil {
			break
		}
		if s.Host(t, i)["NAME"] == node {
			return i
		}
	}
	t.Fatalf("node %s is not a local build host", node)
	return 0
}

// BuildHosts reads the host.env of every host of this machine's
// architecture, ordered by index: the hosts hack/test.sh registers as
// RemoteBuildNodes. The emulated hosts of another architecture are left out
// (the stack starts them unregistered, and the test that uses one registers
// its node itself: e2e/arm64_test.go); HostsOfArch lists those.
func (s *Stack) BuildHosts() ([]BuildHost, error) {
	return s.HostsOfArch(runtime.GOARCH)
}

// HostsOfArch reads the host.env of every host of architecture arch,
// ordered by index.
func (s *Stack) HostsOfArch(arch string) ([]BuildHost, error) {
	all, err := s.allBuildHosts()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(h BuildHost) bool { return h.Arch != arch }), nil
}

// allBuildHosts reads every host.env, ordered by index. A host.env without
// ARCH (written before hosts.sh recorded it) is this machine's.
func (s *Stack) allBuildHosts() ([]BuildHost, error) {
	files, err := filepath.Glob(filepath.Join(s.State, "hosts", "host*", "host.env"))
	if err != nil {
		return nil, err
	}
	var hosts []BuildHost
	for _, f := range files {
		idx, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(f)), "host"))
		if err != nil {
			continue
		}
		env, err := ReadEnvFile(f)
		if err != nil {
			return nil, err
		}
		port, err := strconv.Atoi(env["PORT"])
		if err != nil {
			return nil, fmt.Errorf("%s: PORT: %w", f, err)
		}
		hosts = append(hosts, BuildHost{
			Index: idx, Name: env["NAME"], Address: env["ADDRESS"], Port: port, User: env["USER"],
			Socket: env["PODMAN_SOCKET"], Known: env["KNOWN_HOSTS"], Key: env["PRIVATE_KEY"],
			Arch: cmp.Or(env["ARCH"], runtime.GOARCH),
		})
	}
	slices.SortFunc(hosts, func(a, b BuildHost) int { return a.Index - b.Index })
	return hosts, nil
}

// HostsSh runs hack/hosts.sh with args against the stack's hosts.
func (s *Stack) HostsSh(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := s.Script(ctx, "hosts.sh", args...).CombinedOutput(); err != nil {
		t.Fatalf("hack/hosts.sh %v: %v\n%s", args, err, out)
	}
}

// HostPodman runs podman on build host i as its service does (in its
// network namespace, if isolated) and returns its combined output.
func (s *Stack) HostPodman(i int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.Script(ctx, "hosts.sh", append([]string{"podman", strconv.Itoa(i)}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hosts.sh podman %d %v: %w\n%s", i, args, err, out)
	}
	return string(out), nil
}

// MustHostPodman is HostPodman failing the test on an error.
func (s *Stack) MustHostPodman(t testing.TB, i int, args ...string) string {
	t.Helper()
	out, err := s.HostPodman(i, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// HostObjects lists podman containers, pods and volumes carrying the pod's
// UID label on build host i, through the host's own podman CLI.
func (s *Stack) HostObjects(t testing.TB, i int, uid string) []string {
	t.Helper()
	return s.HostObjectsLabelled(t, i, "rbn.dev/pod-uid="+uid)
}

// HostObjectsLabelled lists podman containers, pods and volumes on build
// host i that match a podman label filter ("key" or "key=value"), as
// "ps:<name>", "pod:<name>", "volume:<name>".
func (s *Stack) HostObjectsLabelled(t testing.TB, i int, label string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []string
	for _, what := range [][]string{
		{"ps", "-a", "--format", "{{.Names}}"},
		{"pod", "ps", "--format", "{{.Name}}"},
		{"volume", "ls", "--format", "{{.Name}}"},
	} {
		args := append([]string{"podman", fmt.Sprint(i)}, what...)
		args = append(args, "--filter", "label="+label)
		b, err := s.Script(ctx, "hosts.sh", args...).Output()
		if err != nil {
			t.Fatalf("hosts.sh %v: %v", args, err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				out = append(out, what[0]+":"+l)
			}
		}
	}
	return out
}

// HostContainerState returns the podman state of a container on host i,
// "absent" when podman cannot inspect it.
func (s *Stack) HostContainerState(t testing.TB, i int, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.Script(ctx, "hosts.sh", "podman", fmt.Sprint(i), "inspect", "--format", "{{.State.Status}}", name).Output()
	if err != nil {
		return "absent"
	}
	return strings.TrimSpace(string(out))
}

// KubeletName is rbn-kubelet's process name (and its log's and pid file's).
const KubeletName = "rbn-kubelet"

// KubeletPID returns the pid of the stack's rbn-kubelet, checking that the
// process still is rbn-kubelet: the local process, or in the in-cluster mode
// the process of the Deployment's running pod (its container runs on this
// machine, in the pod's cgroup).
func (s *Stack) KubeletPID() (int, error) {
	if s.InCluster {
		return s.kubeletPodPID()
	}
	raw, err := os.ReadFile(filepath.Join(s.State, "pids", KubeletName+".pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, err
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != KubeletName {
		return 0, fmt.Errorf("pid %d is not %s (%q, %v)", pid, KubeletName, comm, err)
	}
	return pid, nil
}

// KubeletPIDs returns every rbn-kubelet process of the stack: the local
// one, or one per replica of the Deployment in the in-cluster mode.
func (s *Stack) KubeletPIDs() ([]int, error) {
	if s.InCluster {
		return s.RBNPIDs(KubeletApp)
	}
	pid, err := s.KubeletPID()
	if err != nil {
		return nil, err
	}
	return []int{pid}, nil
}

// KubeletLog is the path of rbn-kubelet's log when it runs as a local
// process (KubeletLogs reads it in either mode).
func (s *Stack) KubeletLog() string {
	return filepath.Join(s.State, "kubelet", KubeletName+".log")
}
