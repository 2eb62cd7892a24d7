//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// TestClusterServicesFromIsolatedHost: a build job on the isolated host
// (nothing but its SSH port reaches it, and it reaches nothing of the
// cluster) fetches from a package-repository-like HTTP Service that runs on
// the worker node, by the names its DNS search path gives: a wait-for-repos
// init container checks the repository by its short name, the build
// fetches by the qualified and the fully qualified name, and from a second
// port of the Service. Each connection goes through rbn-forward in the pod
// and rbn-kubelet's relay (its counter grows by as many). Then a pod that
// names a Service that is not there waits, saying so, and one that names a
// headless Service fails, saying why; nothing of the job is left on the host.
func TestClusterServicesFromIsolatedHost(t *testing.T) {
	s, w, ns := servicesStack(t)
	iso := s.isolatedHost(t)
	node := s.Host(t, iso)["NAME"]

	// The repository: busybox's httpd on 8080 (the Service's 80) and 8081
	// (its 81), serving /ready and a "package".
	s.ordinaryPod(t, w, ns, "repo-server", "app: repo", `[sh, -c, "mkdir -p /www/packages && echo ok >/www/ready && echo package-payload-42 >/www/packages/x.rpm && httpd -p 8081 -h /www && exec httpd -f -p 8080 -h /www"]`)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "repo", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "repo"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
			{Name: "alt", Port: 81, TargetPort: intstr.FromInt32(8081)},
		}},
	}
	if _, err := s.Client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitEndpointReady(t, ns, "repo", "repo-server", true)

	before := s.kubeletMetricSum(t, "rbn_cluster_services_connections_total", `result="relayed"`)
	const waitForRepos = `for i in $(seq 60); do wget -q -O /dev/null http://repo/ready && exit 0; sleep 1; done; exit 1`
	build := fmt.Sprintf(`set -e
wget -q -O- http://repo.%[1]s/packages/x.rpm
wget -q -O- http://repo.%[1]s.svc.cluster.local/packages/x.rpm
wget -q -O- http://repo:81/packages/x.rpm
grep -c 'repo' /etc/hosts`, ns)
	pd := framework.JobPod(ns, "build", node, nil, []string{"sh", "-c", build})
	pd.Annotations = map[string]string{rbnv1.AnnotationClusterServices: "repo"}
	pd.Spec.InitContainers = []corev1.Container{{Name: "wait-for-repos", Image: framework.TestImage, Command: []string{"sh", "-c", waitForRepos}}}
	if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), pd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := s.WaitPodPhase(t, ns, "build", corev1.PodSucceeded, 3*time.Minute)
	if done.Spec.NodeName != node {
		t.Fatalf("the build ran on %s, want the isolated host's node %s", done.Spec.NodeName, node)
	}
	logs := strings.Fields(s.Kubectl(t, "-n", ns, "logs", "build"))
	want := []string{"package-payload-42", "package-payload-42", "package-payload-42", "4"}
	if strings.Join(logs, " ") != strings.Join(want, " ") {
		t.Fatalf("the build's log: %q, want %q (three fetches, and the four names of the Service in /etc/hosts)", logs, want)
	}
	// wait-for-repos made one connection at least, the build three.
	if relayed := s.kubeletMetricSum(t, "rbn_cluster_services_connections_total", `result="relayed"`) - before; relayed < 4 {
		t.Errorf("rbn-kubelet relayed %v connections to cluster Services, want 4 at least: the pod reached the repository another way", relayed)
	}
	if err := s.Client.CoreV1().Pods(ns).Delete(context.Background(), "build", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, "nothing of the build on the host", 2*time.Minute, func() (bool, string) {
		objs := s.HostObjects(t, iso, string(done.UID))
		return len(objs) == 0, fmt.Sprint(objs)
	})

	t.Run("after the host's SSH connection came back", func(t *testing.T) {
		// The relay listens on the pod's socket over the host's SSH
		// connection: it listens again once the connection is back.
		pd := framework.JobPod(ns, "long", node, nil, []string{"sleep", "3600"})
		pd.Annotations = map[string]string{rbnv1.AnnotationClusterServices: "repo"}
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), pd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s.WaitPodPhase(t, ns, "long", corev1.PodRunning, 2*time.Minute)
		fetch := func() (bool, string) {
			out, err := s.KubectlErr("-n", ns, "exec", "long", "--", "timeout", "15", "wget", "-q", "-O-", "http://repo/ready")
			return strings.TrimSpace(out) == "ok", fmt.Sprintf("%q (%v)", out, err)
		}
		framework.Eventually(t, "a fetch from the running pod", time.Minute, fetch)
		restore := s.cutSSH(t, iso)
		s.WaitNodeReady(t, node, corev1.ConditionFalse, []string{"SSHConnectionLost", "SSHUnreachable"}, time.Minute)
		restore()
		s.WaitNodeReady(t, node, corev1.ConditionTrue, nil, 90*time.Second)
		framework.Eventually(t, "a fetch once the host is back", time.Minute, fetch)
	})

	t.Run("a Service not there waits", func(t *testing.T) {
		pd := framework.JobPod(ns, "waits", node, nil, []string{"true"})
		pd.Annotations = map[string]string{rbnv1.AnnotationClusterServices: "nexus"}
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), pd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		framework.Eventually(t, "waits: CreateContainerConfigError naming the Service", 2*time.Minute, func() (bool, string) {
			p := s.Pod(t, ns, "waits")
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" && strings.Contains(w.Message, ns+"/nexus") {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%s %+v", p.Status.Phase, p.Status.ContainerStatuses)
		})
	})

	t.Run("a headless Service fails the pod", func(t *testing.T) {
		headless := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "peers", Namespace: ns},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "repo"},
				Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if _, err := s.Client.CoreV1().Services(ns).Create(context.Background(), headless, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pd := framework.JobPod(ns, "headless", node, nil, []string{"true"})
		pd.Annotations = map[string]string{rbnv1.AnnotationClusterServices: "peers." + ns}
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), pd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := s.WaitPodPhase(t, ns, "headless", corev1.PodFailed, 2*time.Minute)
		if p.Status.Reason != "InvalidClusterServices" || !strings.Contains(p.Status.Message, "no cluster IP") {
			t.Fatalf("pod headless: reason %q, message %q; want InvalidClusterServices saying it has no cluster IP", p.Status.Reason, p.Status.Message)
		}
	})
}
