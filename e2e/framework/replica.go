package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/nodeservice"
)

// Where the replicas of rbn-kubelet record which one serves which node
// (internal/sharding: one Lease rbn-node-<node> per RemoteBuildNode).
const (
	ShardingNamespace = "rbn-system"
	ShardingPrefix    = "rbn-node-"
)

// KubeletReplica is a second rbn-kubelet process against the stack, beside
// the one hack/kubelet.sh runs: same configuration, its own kubelet API
// ports and identity (POD_NAME), so that the two share the nodes through
// their Leases as two pods of the Deployment do.
type KubeletReplica struct {
	Identity string
	// Ports: the kubelet API ports its nodes advertise, first..last.
	PortFirst, PortLast int32
	Log                 string
	cmd                 *exec.Cmd
	done                chan error
}

// PrimaryKubeletIdentity is the identity of the rbn-kubelet hack/kubelet.sh
// runs: no POD_NAME, so this machine's hostname.
func PrimaryKubeletIdentity() (string, error) { return os.Hostname() }

var kubeletPortLine = regexp.MustCompile(`(?m)^kubeletPort: .*$`)

// StartKubeletReplica starts a replica named identity whose kubelet API is
// on port and its nodes' on the 50 ports after it; it is stopped (SIGTERM)
// when the test ends, if still running.
func (s *Stack) StartKubeletReplica(t testing.TB, identity string, port int32) *KubeletReplica {
	t.Helper()
	dir := filepath.Join(s.State, "kubelet")
	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatalf("the stack's rbn-kubelet configuration: %v", err)
	}
	r := &KubeletReplica{Identity: identity, PortFirst: port + 1, PortLast: port + 50,
		Log: filepath.Join(dir, "rbn-kubelet-"+identity+".log"), done: make(chan error, 1)}
	cfg = kubeletPortLine.ReplaceAll(cfg, []byte("kubeletPort: "+strconv.Itoa(int(port))))
	cfg = fmt.Appendf(cfg, "kubeletPortRange: %d-%d\n", r.PortFirst, r.PortLast)
	path := filepath.Join(dir, "config-"+identity+".yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(r.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	r.cmd = exec.Command(filepath.Join(s.Root, "bin", KubeletName), "--config="+path)
	r.cmd.Env = append(os.Environ(), "POD_NAME="+identity, "POD_NAMESPACE="+ShardingNamespace)
	if conf := filepath.Join(s.State, "registry", "registries.conf"); fileExists(conf) {
		r.cmd.Env = append(r.cmd.Env, "CONTAINERS_REGISTRIES_CONF="+conf)
	}
	r.cmd.Stdout, r.cmd.Stderr = log, log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start rbn-kubelet replica %s: %v", identity, err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if err := r.Stop(30 * time.Second); err != nil {
			t.Errorf("stopping replica %s: %v", identity, err)
		}
	})
	return r
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Pid is the replica's process id.
func (r *KubeletReplica) Pid() int { return r.cmd.Process.Pid }

// Kill ends the replica with SIGKILL (a crash: nothing released) and waits for it.
func (r *KubeletReplica) Kill() error {
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-r.done
	r.done <- nil
	return nil
}

// Stop sends SIGTERM (an orderly stop: the replica releases its nodes) and
// waits up to timeout for it to exit; the exit status of a replica that was
// already gone is not an error.
func (r *KubeletReplica) Stop(timeout time.Duration) error {
	select {
	case err := <-r.done:
		r.done <- err
		return nil
	default:
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-r.done:
		r.done <- nil
		return err
	case <-time.After(timeout):
		_ = r.cmd.Process.Kill()
		<-r.done
		r.done <- nil
		return fmt.Errorf("replica %s did not exit within %s of SIGTERM", r.Identity, timeout)
	}
}

// LeaseHolders maps every RemoteBuildNode with a Lease to the replica
// holding it ("" when released).
func (s *Stack) LeaseHolders(ctx context.Context) (map[string]string, error) {
	list, err := s.Client.CoordinationV1().Leases(ShardingNamespace).List(ctx, metav1.ListOptions{LabelSelector: "rbn.dev/lease=node"})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range list.Items {
		if len(l.Name) > len(ShardingPrefix) {
			out[l.Name[len(ShardingPrefix):]] = ptr.Deref(l.Spec.HolderIdentity, "")
		}
	}
	return out, nil
}

// ServedBy says whether node is served by the replica identity whose nodes
// advertise ports first..last: it holds the node's Lease, and the Node is
// Ready and advertises a kubelet port of that replica.
func (s *Stack) ServedBy(ctx context.Context, node, identity string, first, last int32) (bool, string) {
	holders, err := s.LeaseHolders(ctx)
	if err != nil {
		return false, err.Error()
	}
	if h := holders[node]; h != identity {
		return false, fmt.Sprintf("lease held by %q", h)
	}
	n, err := s.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	p := n.Status.DaemonEndpoints.KubeletEndpoint.Port
	if p < first || p > last {
		return false, fmt.Sprintf("node advertises kubelet port %d, not in %d-%d", p, first, last)
	}
	if !NodeReady(n) {
		return false, "node not Ready: " + ReadyCondition(n).Reason
	}
	return true, ""
}

// PrimaryKubeletPorts is the range of kubelet API ports the nodes of the
// rbn-kubelet hack/kubelet.sh runs advertise (its kubeletPortRange, by
// default the 200 ports after its kubeletPort).
func (s *Stack) PrimaryKubeletPorts() (first, last int32, err error) {
	cfg, err := os.ReadFile(filepath.Join(s.State, "kubelet", "config.yaml"))
	if err != nil {
		return 0, 0, err
	}
	m := regexp.MustCompile(`(?m)^kubeletPortRange: (\d+)-(\d+)$`).FindSubmatch(cfg)
	if m != nil {
		f, _ := strconv.Atoi(string(m[1]))
		l, _ := strconv.Atoi(string(m[2]))
		return int32(f), int32(l), nil
	}
	m = regexp.MustCompile(`(?m)^kubeletPort: (\d+)$`).FindSubmatch(cfg)
	if m == nil {
		return 0, 0, errors.New("no kubeletPort in the stack's rbn-kubelet configuration")
	}
	p, _ := strconv.Atoi(string(m[1]))
	return int32(p) + 1, int32(p) + 200, nil
}

// NodeInternalIP is the node's InternalIP address, "" without one.
func NodeInternalIP(n *corev1.Node) string {
	var addr string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
		}
	}
	return addr
}

// NodeKubeletAddress is where the node says its kubelet API is: its
// InternalIP and its daemonEndpoints' kubelet port, where the apiserver
// dials it.
func NodeKubeletAddress(n *corev1.Node) string {
	return net.JoinHostPort(NodeInternalIP(n), strconv.Itoa(int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)))
}

// WaitKubeletReachable waits until node's kubelet API accepts connections
// at the address its Node advertises, where the apiserver dials it for
// `kubectl logs`, exec and port-forward. After rbn-kubelet restarted or
// another replica took the node over, that address (the node's Service,
// with config nodeServices) is led to the new server by kube-proxy a moment
// later; until then those requests find it refused.
func (s *Stack) WaitKubeletReachable(t testing.TB, node string, timeout time.Duration) {
	t.Helper()
	Eventually(t, node+"'s kubelet API reachable at its Node's address", timeout, func() (bool, string) {
		n, err := s.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		addr := NodeKubeletAddress(n)
		if err := Accepts(addr); err != nil {
			return false, fmt.Sprintf("%s: %v", addr, err)
		}
		return true, ""
	})
}

// Accepts says why addr does not accept a TCP connection within 2 s, nil
// when it does (the connection is closed at once).
func Accepts(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	_ = conn.Close()
	return nil
}

// KubeletTarget is where node's kubelet API is served: the replica's pod IP
// and the node's own port there. A Node that advertises its Service
// (config nodeServices) is led there by its EndpointSlice; else it
// advertises the replica's address and port itself. viaService says which.
func (s *Stack) KubeletTarget(ctx context.Context, n *corev1.Node) (ip string, port int32, viaService bool, err error) {
	addr := NodeInternalIP(n)
	svc, err := s.Client.CoreV1().Services(RBNNamespace).Get(ctx, nodeservice.Name(n.Name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && svc.Spec.ClusterIP != addr) {
		return addr, n.Status.DaemonEndpoints.KubeletEndpoint.Port, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	slice, err := s.Client.DiscoveryV1().EndpointSlices(RBNNamespace).Get(ctx, nodeservice.Name(n.Name), metav1.GetOptions{})
	if err != nil {
		return "", 0, true, err
	}
	if len(slice.Endpoints) != 1 || len(slice.Endpoints[0].Addresses) != 1 || len(slice.Ports) != 1 || slice.Ports[0].Port == nil {
		return "", 0, true, fmt.Errorf("EndpointSlice %s/%s leads to %v ports %v, want one address and port", RBNNamespace, slice.Name, slice.Endpoints, slice.Ports)
	}
	return slice.Endpoints[0].Addresses[0], *slice.Ports[0].Port, true, nil
}
