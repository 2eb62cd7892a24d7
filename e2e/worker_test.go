//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// The stack's real worker node (hack/worker.sh): kubelet, containerd, the CNI bridge, kube-proxy
// in iptables mode and CoreDNS, beside the remote build nodes.

// workerNode is what hack/worker.sh wrote about the node (worker.env).
type workerNode struct {
	name, ip, image string
	// sshdImage has the real ssh and scp clients (and sshd).
	sshdImage string
	podCIDR   *net.IPNet
}

func (s *stack) worker(t *testing.T) workerNode {
	t.Helper()
	env, err := framework.ReadEnvFile(filepath.Join(s.State, "worker", "worker.env"))
	if err != nil {
		t.Fatalf("the stack has no worker node (hack/worker.sh up; RBN_WORKER=0 leaves it out): %v", err)
	}
	_, cidr, err := net.ParseCIDR(env["POD_CIDR"])
	if err != nil {
		t.Fatalf("worker.env POD_CIDR: %v", err)
	}
	return workerNode{name: env["NODE_NAME"], ip: env["NODE_IP"], image: env["BUSYBOX_IMAGE"], sshdImage: env["SSHD_IMAGE"], podCIDR: cidr}
}

// ordinaryPod is a pod with no toleration and no node selector: only the worker can take it.
// Its one container runs command (a YAML flow sequence); the image is in the worker's containerd
// already (no registry is reachable from it).
func (s *stack) ordinaryPod(t *testing.T, w workerNode, ns, name, labels, command string) *corev1.Pod {
	t.Helper()
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {%s}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: %s
`, name, ns, labels, w.image, command))
	return s.WaitPodPhase(t, ns, name, corev1.PodRunning, 2*time.Minute)
}

// webServer runs a pod answering every TCP connection on 8080 with its hostname (the pod's name),
// after logging a line.
func (s *stack) webServer(t *testing.T, w workerNode, ns, name string) *corev1.Pod {
	t.Helper()
	return s.ordinaryPod(t, w, ns, name, "app: "+name,
		`[sh, -c, "echo serving on 8080; exec nc -ll -p 8080 -e hostname"]`)
}

// readAll connects to addr and returns what the server sends before closing.
func readAll(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(string(b))
}

// The worker is an ordinary node: Ready, renewing its own Lease, with neither the remote build
// node taint nor its label.
func TestWorkerNodeReadyAndUntainted(t *testing.T) {
	s := newStack(t)
	w := s.worker(t)
	s.WaitNodeReady(t, w.name, corev1.ConditionTrue, nil, time.Minute)
	// The node lifecycle controller removes the not-ready taint a few seconds after Ready.
	var n *corev1.Node
	framework.Eventually(t, "no taint on the worker", 30*time.Second, func() (bool, string) {
		var ok bool
		if n, ok = s.Node(t, w.name); !ok {
			return false, "no node"
		}
		return len(n.Spec.Taints) == 0, fmt.Sprintf("taints %v", n.Spec.Taints)
	})
	if n.Spec.Unschedulable {
		t.Error("node is cordoned")
	}
	if v, ok := n.Labels[rbnv1.LabelRemoteBuildNode]; ok {
		t.Errorf("label %s=%s on the worker", rbnv1.LabelRemoteBuildNode, v)
	}
	if internal := framework.NodeInternalIP(n); internal != w.ip {
		t.Errorf("InternalIP %q, want %s", internal, w.ip)
	}
	lease := func() *coordinationv1.Lease {
		l, err := s.Client.CoordinationV1().Leases("kube-node-lease").Get(context.Background(), w.name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the worker's Lease: %v", err)
		}
		return l
	}
	first := lease()
	if h := first.Spec.HolderIdentity; h == nil || *h != w.name {
		t.Fatalf("Lease holder %v, want %s", h, w.name)
	}
	framework.Eventually(t, "the worker's Lease renewed", 45*time.Second, func() (bool, string) {
		l := lease()
		return l.Spec.RenewTime != nil && first.Spec.RenewTime != nil && l.Spec.RenewTime.After(first.Spec.RenewTime.Time),
			fmt.Sprintf("renewTime %v", l.Spec.RenewTime)
	})
}

// A pod without the remote build node toleration lands on the worker and gets an address from the
// pod CIDR; kubectl logs, exec and port-forward work on it through the apiserver and the
// kubelet's API.
func TestWorkerOrdinaryPodLogsExecPortForward(t *testing.T) {
	s := newStack(t)
	w := s.worker(t)
	ns := s.Namespace(t)
	p := s.webServer(t, w, ns, "web")
	if p.Spec.NodeName != w.name {
		t.Fatalf("pod on node %q, want the worker %s", p.Spec.NodeName, w.name)
	}
	if ip := net.ParseIP(p.Status.PodIP); ip == nil || !w.podCIDR.Contains(ip) {
		t.Fatalf("pod IP %q, want one in %s", p.Status.PodIP, w.podCIDR)
	}

	framework.Eventually(t, "kubectl logs showing the pod's line", 30*time.Second, func() (bool, string) {
		out, err := s.KubectlErr("-n", ns, "logs", "web")
		return err == nil && strings.Contains(out, "serving on 8080"), fmt.Sprint(out, err)
	})
	if code, out, errOut := s.kubectlExit(t, []byte("through stdin\n"), "-n", ns, "exec", "-i", "web", "--", "sh", "-c", "cat; cat /etc/hostname; exit 3"); code != 3 || out != "through stdin\nweb\n" {
		t.Errorf("kubectl exec: exit %d, stdout %q, stderr %q; want exit 3 and the input and the hostname", code, out, errOut)
	}
	local := s.portForward(t, ns, "web", 8080)
	if got := readAll(t, local); got != "web" {
		t.Errorf("through kubectl port-forward: %q, want web", got)
	}
}

// A ClusterIP Service selecting a worker pod is reachable from another pod on the worker by its
// ClusterIP and by its name under cluster.local (cluster DNS), and a NodePort Service from this
// machine at the node's address.
func TestWorkerServices(t *testing.T) {
	s := newStack(t)
	w := s.worker(t)
	ns := s.Namespace(t)
	s.webServer(t, w, ns, "web")
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-nodeport, namespace: %[1]s}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, ns))
	client := s.ordinaryPod(t, w, ns, "client", "app: client", `[sleep, "3600"]`)
	if client.Spec.NodeName != w.name {
		t.Fatalf("client pod on node %q, want the worker %s", client.Spec.NodeName, w.name)
	}
	svc, err := s.Client.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusterIP := svc.Spec.ClusterIP

	// From the client pod: kube-proxy's rules route the ClusterIP to the server pod.
	fromClient := func(what string, script string) {
		t.Helper()
		framework.Eventually(t, what, time.Minute, func() (bool, string) {
			code, out, errOut := s.kubectlExit(t, nil, "-n", ns, "exec", "client", "--", "sh", "-c", script)
			return code == 0 && strings.TrimSpace(out) == "web", fmt.Sprintf("exit %d, stdout %q, stderr %q", code, out, errOut)
		})
	}
	fromClient("web by ClusterIP "+clusterIP+" from the client pod", fmt.Sprintf("nc %s 80 </dev/null", clusterIP))

	// Cluster DNS: the pod's resolv.conf names the DNS Service, which answers with the ClusterIP.
	name := fmt.Sprintf("web.%s.svc.cluster.local", ns)
	framework.Eventually(t, name+" resolving to "+clusterIP+" in the client pod", time.Minute, func() (bool, string) {
		code, out, errOut := s.kubectlExit(t, nil, "-n", ns, "exec", "client", "--", "nslookup", name)
		return code == 0 && strings.Contains(out, "Address: "+clusterIP), fmt.Sprintf("exit %d, stdout %q, stderr %q", code, out, errOut)
	})
	// busybox's nc resolves names with the static C library, which cannot use DNS inside the
	// image: connect to the address busybox's own resolver (nslookup) found for the name.
	fromClient("web by DNS name "+name+" from the client pod", fmt.Sprintf(
		`ip=$(nslookup %s | sed -n 's/^Address: *\([0-9.]*\)$/\1/p' | tail -n 1); [ -n "$ip" ] && nc "$ip" 80 </dev/null`, name))

	np, err := s.Client.CoreV1().Services(ns).Get(context.Background(), "web-nodeport", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(w.ip, fmt.Sprint(np.Spec.Ports[0].NodePort))
	framework.Eventually(t, "web at the NodePort "+addr+" from this machine", time.Minute, func() (bool, string) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(conn)
		return err == nil && strings.TrimSpace(string(b)) == "web", fmt.Sprintf("%q %v", b, err)
	})
}
