//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// portalMetricsPort is rbn-portal's metrics port on every real node
// (manifests/portal).
const portalMetricsPort = 10268

// Services reach pods on remote build nodes through rbn-portal, unchanged
// from a normal cluster: from a pod on the worker node, by ClusterIP, by
// DNS name and by NodePort; two pods on one build host both serving port
// 22, each through its own Service; and a pod on the isolated host, which
// nothing but its SSH connection reaches.
func TestServicesReachRemotePods(t *testing.T) {
	s := newStack(t)
	if !s.InCluster {
		t.Skip("rbn-portal runs in the cluster: bring the stack up in the in-cluster mode (the default of hack/dev-up.sh and hack/test.sh e2e)")
	}
	w := s.worker(t)
	ns := s.Namespace(t)
	iso := s.isolatedHost(t)
	servers := []struct {
		name string
		host int
	}{{"one", 1}, {"two", 1}, {"iso", iso}}
	for _, srv := range servers {
		// Answers every connection on 22 with its hostname (the pod's name).
		pd := framework.JobPod(ns, srv.name, s.Host(t, srv.host)["NAME"], map[string]string{"app": srv.name},
			[]string{"sh", "-c", "exec nc -ll -p 22 -e hostname"})
		pd.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "ssh", ContainerPort: 22}}
		pd.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
			ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("ssh")}}}
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), pd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: srv.name, Namespace: ns},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": srv.name},
				Ports: []corev1.ServicePort{{Name: "ssh", Port: 22, TargetPort: intstr.FromString("ssh")}}},
		}
		if _, err := s.Client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	client := s.ordinaryPod(t, w, ns, "client", "app: client", `[sleep, "3600"]`)
	before := s.portalAccepted(t, w)
	relayed := 0
	for _, srv := range servers {
		s.WaitPodPhase(t, ns, srv.name, corev1.PodRunning, 2*time.Minute)
		s.waitEndpointReady(t, ns, srv.name, srv.name, true)
		svc, err := s.Client.CoreV1().Services(ns).Get(context.Background(), srv.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range []struct{ how, host, port string }{
			{"ClusterIP", svc.Spec.ClusterIP, "22"},
			{"DNS name", srv.name + "." + ns + ".svc.cluster.local", "22"},
			{"NodePort", w.ip, strconv.Itoa(int(svc.Spec.Ports[0].NodePort))},
		} {
			// The portal opens the path once the EndpointSlice reaches it.
			framework.Eventually(t, fmt.Sprintf("%s through its %s %s:%s", srv.name, target.how, target.host, target.port), time.Minute, func() (bool, string) {
				out, err := s.KubectlErr("-n", ns, "exec", client.Name, "--", "nc", "-w", "10", target.host, target.port)
				return strings.TrimSpace(out) == srv.name, fmt.Sprintf("%q (%v)", out, err)
			})
			relayed++
		}
	}
	if after := s.portalAccepted(t, w); after-before < float64(relayed) {
		t.Errorf("rbn-portal accepted %v connections for the %d that reached the pods: they took another path", after-before, relayed)
	}
}

// portalAccepted is rbn_portal_connections_accepted_total of the worker's
// rbn-portal (host network: the worker's address).
func (s *stack) portalAccepted(t *testing.T, w workerNode) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/metrics", w.ip, portalMetricsPort))
	if err != nil {
		t.Fatalf("rbn-portal's metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := promSample(t, string(b), "rbn_portal_connections_accepted_total")
	if !ok {
		t.Fatalf("no rbn_portal_connections_accepted_total in rbn-portal's metrics:\n%s", b)
	}
	return v
}

// sshClient runs a pod on the worker node with the real OpenSSH client and
// the user's private key (a Secret), from which the tests log in to
// customization jobs through their Services, as users do from the cluster.
func (s *stack) sshClient(t *testing.T, w workerNode, ns string, key userKey) string {
	t.Helper()
	if w.sshdImage == "" {
		t.Fatal("the worker node has no sshd image (worker.env SSHD_IMAGE): bring the stack up again")
	}
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: user-key, namespace: %[1]s}
stringData:
  id_ed25519: |
%[2]s
---
apiVersion: v1
kind: Pod
metadata: {name: ssh-client, namespace: %[1]s}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: key, secret: {secretName: user-key, defaultMode: 0400}}]
  containers:
  - name: main
    image: %[3]s
    imagePullPolicy: Never
    command: [sleep, "3600"]
    volumeMounts: [{name: key, mountPath: /key, readOnly: true}]
`, ns, indent(readFile(t, key.private), 4), w.sshdImage))
	s.WaitPodPhase(t, ns, "ssh-client", corev1.PodRunning, 2*time.Minute)
	return "ssh-client"
}

// sshFrom runs the real ssh client in the worker's client pod against
// host:port and returns its output and error.
func (s *stack) sshFrom(ns, client, host, port, command string) (string, error) {
	return s.KubectlErr("-n", ns, "exec", client, "--", "ssh", "-i", "/key/id_ed25519", "-p", port,
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "root@"+host, command)
}

// The image-customization job as users meet it: its pod on a remote build
// node (two at once on one host, both on port 22, and one on the isolated
// host) behind a LoadBalancer Service on port 22, as the image service makes
// it; the user logs in with the real ssh client from a pod on the worker
// node by ClusterIP, DNS name and NodePort, copies a file in with scp, and
// ends the job.
func TestCustomizationJobThroughService(t *testing.T) {
	s := newStack(t)
	if !s.InCluster {
		t.Skip("rbn-portal runs in the cluster: bring the stack up in the in-cluster mode (the default of hack/dev-up.sh and hack/test.sh e2e)")
	}
	w := s.worker(t)
	ns := s.Namespace(t)
	key := newUserKey(t)
	jobs := []struct {
		name string
		host int
	}{{"ims-a", 1}, {"ims-b", 1}, {"ims-iso", s.isolatedHost(t)}}
	for _, j := range jobs {
		s.customizeJob(t, ns, j.name, s.Host(t, j.host)["NAME"], key)
		s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  type: LoadBalancer
  selector: {app: %[1]s-customize}
  ports: [{name: ssh, port: 22, targetPort: ssh}]
`, j.name, ns))
	}
	client := s.sshClient(t, w, ns, key)
	for _, j := range jobs {
		pod := s.waitJobReady(t, ns, j.name)
		s.waitEndpointReady(t, ns, j.name, pod.Name, true)
		svc, err := s.Client.CoreV1().Services(ns).Get(context.Background(), j.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range []struct{ how, host, port string }{
			{"ClusterIP", svc.Spec.ClusterIP, "22"},
			{"DNS name", j.name + "." + ns + ".svc.cluster.local", "22"},
			{"NodePort", w.ip, strconv.Itoa(int(svc.Spec.Ports[0].NodePort))},
		} {
			framework.Eventually(t, fmt.Sprintf("ssh to %s by its %s", j.name, target.how), time.Minute, func() (bool, string) {
				out, err := s.sshFrom(ns, client, target.host, target.port, "cat /mnt/image/etc/image-id; hostname")
				return out == j.name+"\n"+pod.Name+"\n", fmt.Sprintf("%q (%v)", out, err)
			})
		}
		// scp through the ClusterIP, from the client pod.
		if out, err := s.KubectlErr("-n", ns, "exec", client, "--", "sh", "-c",
			"echo customized >/tmp/overlay.conf && scp -i /key/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR /tmp/overlay.conf root@"+svc.Spec.ClusterIP+":/mnt/image/etc/overlay.conf"); err != nil {
			t.Fatalf("scp to %s: %v\n%s", j.name, err, out)
		}
		if got := s.Kubectl(t, "-n", ns, "exec", pod.Name, "-c", "sshd", "--", "cat", "/mnt/image/etc/overlay.conf"); got != "customized\n" {
			t.Errorf("%s: the copied file: %q", j.name, got)
		}
	}
	for _, j := range jobs {
		svc, err := s.Client.CoreV1().Services(ns).Get(context.Background(), j.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := s.sshFrom(ns, client, svc.Spec.ClusterIP, "22", "touch /mnt/image/complete"); err != nil {
			t.Fatalf("ending %s: %v\n%s", j.name, err, out)
		}
		s.waitJobPod(t, ns, j.name, 2*time.Minute)
	}
}
