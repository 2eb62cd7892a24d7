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
