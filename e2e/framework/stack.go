package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// Stack is the running local stack: its Env and a client of its apiserver.
type Stack struct {
	Env
	// Rest is the client configuration Client was made from, for other
	// clients (dynamic, remotecommand).
	Rest   *rest.Config
	Client kubernetes.Interface
}

// Connect builds the stack's client from env.Kubeconfig; tune, when not
// nil, adjusts the client configuration first (rate limits, user agent).
func Connect(env Env, tune func(*rest.Config)) (*Stack, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", env.Kubeconfig, err)
	}
	if tune != nil {
		tune(rc)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", env.Kubeconfig, err)
	}
	return &Stack{Env: env, Rest: rc, Client: client}, nil
}

// Run executes argv and returns stdout; the error carries argv, stdout and
// stderr.
func Run(ctx context.Context, argv []string, stdin []byte) (string, error) {
	cmd := Command(ctx, argv[0], argv[1:]...)
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

// KubectlCmd is the real kubectl against the stack, not started.
func (s *Stack) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	return Command(ctx, s.KubectlBin, append([]string{"--kubeconfig=" + s.Kubeconfig}, args...)...)
}

// Kubectl runs the real kubectl against the stack and returns its stdout,
// failing the test on an error.
func (s *Stack) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.KubectlErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// KubectlErr is Kubectl returning the error, with a 2-minute timeout.
func (s *Stack) KubectlErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return Run(ctx, append([]string{s.KubectlBin, "--kubeconfig=" + s.Kubeconfig}, args...), nil)
}

// Apply runs kubectl apply with manifest on stdin.
func (s *Stack) Apply(t testing.TB, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Run(ctx, []string{s.KubectlBin, "--kubeconfig=" + s.Kubeconfig, "apply", "-f", "-"}, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
}

// Script is hack/<name> with args, run against the stack's state dir.
func (s *Stack) Script(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := Command(ctx, filepath.Join(s.Root, "hack", name), args...)
	cmd.Env = append(cmd.Environ(), "RBN_STATE="+s.State)
	return cmd
}

// KubeletErr runs hack/kubelet.sh action (start, stop, restart).
func (s *Stack) KubeletErr(ctx context.Context, action string) error {
	if out, err := s.Script(ctx, "kubelet.sh", action).CombinedOutput(); err != nil {
		return fmt.Errorf("hack/kubelet.sh %s: %w\n%s", action, err, out)
	}
	return nil
}

// KubeletSh is KubeletErr failing the test on an error.
func (s *Stack) KubeletSh(t testing.TB, action string) {
	t.Helper()
	if err := s.KubeletErr(context.Background(), action); err != nil {
		t.Fatal(err)
	}
}

// Namespace creates a namespace for one test, waits for its default
// service account (pods are refused until it exists) and deletes the
// namespace when the test ends.
func (s *Stack) Namespace(t testing.TB) string {
	t.Helper()
	ns := UniqueName("e2e")
	created := time.Now()
	s.Kubectl(t, "create", "namespace", ns)
	Eventually(t, "default service account in "+ns, 30*time.Second, func() (bool, string) {
		_, err := s.Client.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	t.Cleanup(func() {
		s.ShowKubeletLogs(t, ns, created)
		_, _ = s.KubectlErr("delete", "namespace", ns, "--wait=true", "--timeout=120s")
	})
	return ns
}

// Pod gets a pod, failing the test on an error.
func (s *Stack) Pod(t testing.TB, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := s.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// WaitPodPhase waits until the pod is in phase and returns it.
func (s *Stack) WaitPodPhase(t testing.TB, ns, name string, phase corev1.PodPhase, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	Eventually(t, fmt.Sprintf("pod %s/%s %s", ns, name, phase), timeout, func() (bool, string) {
		var err error
		p, err = s.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == phase, DescribeStatus(p)
	})
	return p
}

// DescribeStatus is the pod's status as JSON, for failure messages.
func DescribeStatus(p *corev1.Pod) string {
	b, _ := json.Marshal(p.Status)
	return string(b)
}

// getJSON reads one object with kubectl get -o json into obj; false when it
// does not exist.
func (s *Stack) getJSON(t testing.TB, kind, name string, obj any) bool {
	t.Helper()
	out, err := s.KubectlErr("get", kind, name, "-o", "json", "--ignore-not-found")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) == "" {
		return false
	}
	if err := json.Unmarshal([]byte(out), obj); err != nil {
		t.Fatal(err)
	}
	return true
}

// Node reads a node through kubectl; false when it does not exist.
func (s *Stack) Node(t testing.TB, name string) (*corev1.Node, bool) {
	t.Helper()
	n := &corev1.Node{}
	if !s.getJSON(t, "node", name, n) {
		return nil, false
	}
	return n, true
}

// RBN reads a RemoteBuildNode through kubectl; false when it does not exist.
func (s *Stack) RBN(t testing.TB, name string) (*rbnv1.RemoteBuildNode, bool) {
	t.Helper()
	r := &rbnv1.RemoteBuildNode{}
	if !s.getJSON(t, "remotebuildnode", name, r) {
		return nil, false
	}
	return r, true
}

// ReadyCondition is the node's Ready condition (zero when it has none).
func ReadyCondition(n *corev1.Node) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

// NodeReady says whether the node is Ready.
func NodeReady(n *corev1.Node) bool { return ReadyCondition(n).Status == corev1.ConditionTrue }

// WaitNodeReady waits until the node's Ready condition has status want (and
// one of reasons, if any are given).
func (s *Stack) WaitNodeReady(t testing.TB, name string, want corev1.ConditionStatus, reasons []string, timeout time.Duration) corev1.NodeCondition {
	t.Helper()
	var got corev1.NodeCondition
	Eventually(t, fmt.Sprintf("node %s Ready=%s reason in %v", name, want, reasons), timeout, func() (bool, string) {
		n, ok := s.Node(t, name)
		if !ok {
			return false, "node absent"
		}
		got = ReadyCondition(n)
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

// Events lists the events of one object.
func (s *Stack) Events(t testing.TB, namespace, kind, name string) []corev1.Event {
	t.Helper()
	list, err := s.Client.CoreV1().Events(namespace).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}
