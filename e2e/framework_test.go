//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// stack describes the running local stack, from the environment hack/test.sh sets.
type stack struct {
	kubeconfig string
	kubectlBin string
	state      string
	root       string
	client     kubernetes.Interface
}

func mustEnv(t *testing.T, k string) string {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		t.Fatalf("%s is not set: run the end-to-end tests with `make test-e2e`, which brings the stack up", k)
	}
	return v
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{
		kubeconfig: mustEnv(t, "RBN_E2E_KUBECONFIG"),
		kubectlBin: mustEnv(t, "RBN_E2E_KUBECTL"),
		state:      mustEnv(t, "RBN_E2E_STATE"),
		root:       mustEnv(t, "RBN_E2E_ROOT"),
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	s.client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run executes argv and returns stdout; stderr is in the error.
func run(ctx context.Context, argv []string, stdin []byte) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\nstdout: %s\nstderr: %s", strings.Join(argv, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// kubectl runs the real kubectl against the stack.
func (s *stack) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.kubectlErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *stack) kubectlErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return run(ctx, append([]string{s.kubectlBin, "--kubeconfig=" + s.kubeconfig}, args...), nil)
}

func (s *stack) apply(t *testing.T, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := run(ctx, []string{s.kubectlBin, "--kubeconfig=" + s.kubeconfig, "apply", "-f", "-"}, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
}

// hosts runs hack/hosts.sh with args against the stack's hosts.
func (s *stack) hosts(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.root, "hack", "hosts.sh"), args...)
	cmd.Env = append(os.Environ(), "RBN_STATE="+s.state)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/hosts.sh %v: %v\n%s", args, err, out)
	}
}

// host reads a build host's host.env (hack/hosts.sh writes it).
func (s *stack) host(t *testing.T, i int) map[string]string {
	t.Helper()
	env, err := readEnvFile(filepath.Join(s.state, "hosts", fmt.Sprintf("host%d", i), "host.env"))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eventually polls cond until it holds or timeout passes, then fails saying what was awaited.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, last)
		}
		<-tick.C
	}
}

func (s *stack) node(t *testing.T, name string) (*corev1.Node, bool) {
	t.Helper()
	out, err := s.kubectlErr("get", "node", name, "-o", "json", "--ignore-not-found")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) == "" {
		return nil, false
	}
	n := &corev1.Node{}
	if err := json.Unmarshal([]byte(out), n); err != nil {
		t.Fatal(err)
	}
	return n, true
}

func (s *stack) rbn(t *testing.T, name string) (*rbnv1.RemoteBuildNode, bool) {
	t.Helper()
	out, err := s.kubectlErr("get", "remotebuildnode", name, "-o", "json", "--ignore-not-found")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) == "" {
		return nil, false
	}
	r := &rbnv1.RemoteBuildNode{}
	if err := json.Unmarshal([]byte(out), r); err != nil {
		t.Fatal(err)
	}
	return r, true
}

func readyCondition(n *corev1.Node) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

// waitNodeReady waits until the node's Ready condition has status want (and reason, if given).
func (s *stack) waitNodeReady(t *testing.T, name string, want corev1.ConditionStatus, reasons []string, timeout time.Duration) corev1.NodeCondition {
	t.Helper()
	var got corev1.NodeCondition
	eventually(t, fmt.Sprintf("node %s Ready=%s reason in %v", name, want, reasons), timeout, func() (bool, string) {
		n, ok := s.node(t, name)
		if !ok {
			return false, "node absent"
		}
		got = readyCondition(n)
		if got.Status != want {
			return false, fmt.Sprintf("Ready=%s reason=%s message=%s", got.Status, got.Reason, got.Message)
		}
		if len(reasons) == 0 {
			return true, ""
		}
		for _, r := range reasons {
			if got.Reason == r {
				return true, ""
			}
		}
		return false, fmt.Sprintf("Ready=%s reason=%s message=%s", got.Status, got.Reason, got.Message)
	})
	return got
}

func (s *stack) events(t *testing.T, namespace, kind, name string) []corev1.Event {
	t.Helper()
	list, err := s.client.CoreV1().Events(namespace).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// uniqueName returns a DNS-safe name unique to the test.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000)
}

// hostPodman runs podman on build host i as its service does (in its network
// namespace, if isolated), returning the error instead of failing.
func (s *stack) hostPodman(i int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.root, "hack", "hosts.sh"), append([]string{"podman", strconv.Itoa(i)}, args...)...)
	cmd.Env = append(os.Environ(), "RBN_STATE="+s.state)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hosts.sh podman %d %v: %w\n%s", i, args, err, out)
	}
	return string(out), nil
}

// mustHostPodman is hostPodman that fails the test on an error.
func (s *stack) mustHostPodman(t *testing.T, i int, args ...string) string {
	t.Helper()
	out, err := s.hostPodman(i, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
