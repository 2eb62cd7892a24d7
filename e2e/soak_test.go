//go:build e2e && soak

package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// The churn soak (make soak, hack/soak.sh; build tag soak, never part of
// make test): pods are created and deleted continuously on the build hosts
// for RBN_SOAK_DURATION (default 30m), RBN_SOAK_CONCURRENCY (default 8) at
// a time. Each pod is one of: a job that runs to its end (its log read
// afterwards), a job deleted while it runs, a job exec'ed into with the
// real kubectl, then deleted. rbn-kubelet's resident memory, goroutines and
// open SSH channels (its /metrics, every replica) and the podman objects
// rbn made on every host are sampled at the start, every
// RBN_SOAK_SAMPLE_EVERY (default 5m) and at the end, once the last pod is
// gone: nothing may grow (the channels and host objects back to where they
// started; goroutines and memory within a margin, as the Go runtime keeps
// some of what it grew), no pod may fail. The report goes to
// RBN_SOAK_OUT when set (hack/soak.sh: docs/soak.md).

type soakSample struct {
	at       time.Duration
	done     int64
	replicas map[string]replicaFigures // rbn-kubelet pod -> figures
	objects  int                       // podman containers, pods and volumes of rbn, all hosts
}

type replicaFigures struct {
	rssBytes, goroutines, channels float64
}

func (s soakSample) total() replicaFigures {
	var t replicaFigures
	for _, f := range s.replicas {
		t.rssBytes += f.rssBytes
		t.goroutines += f.goroutines
		t.channels += f.channels
	}
	return t
}

func TestSoak(t *testing.T) {
	env, err := framework.EnvFromOS()
	if err != nil {
		t.Fatal(err)
	}
	// The churn's own requests must not queue in client-go's rate limiter
	// (5 per second by default): the soak measures rbn, not its client.
	fs, err := framework.Connect(env, func(c *rest.Config) { c.QPS, c.Burst = 100, 200 })
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{fs}
	if !s.InCluster {
		t.Fatal("the soak reads rbn-kubelet's figures from its pods' /metrics: run it with rbn in the cluster (hack/soak.sh does)")
	}
	duration := envDuration(t, "RBN_SOAK_DURATION", 30*time.Minute)
	every := envDuration(t, "RBN_SOAK_SAMPLE_EVERY", 5*time.Minute)
	concurrency := 8
	if v := os.Getenv("RBN_SOAK_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("RBN_SOAK_CONCURRENCY=%q: want a positive number", v)
		}
		concurrency = n
	}
	nodes := s.buildNodes(t)
	s.waitIdle(t, nodes)
	hosts := make([]int, len(nodes))
	for i, n := range nodes {
		hosts[i] = s.HostIndex(t, n)
	}
	ns := s.Namespace(t)
	start := time.Now()
	var done atomic.Int64
	sample := func() soakSample {
		return soakSample{at: time.Since(start), done: done.Load(), replicas: s.kubeletFigures(t), objects: s.rbnHostObjects(t, hosts)}
	}
	// The baseline is taken idle after a warm-up round of every kind on
	// every worker: what a first pod grows once (the podman API's
	// keep-alive pool, informer caches) is not growth.
	var warm sync.WaitGroup
	for w := range concurrency {
		warm.Go(func() {
			for kind := range 3 {
				if err := s.soakPod(ns, fmt.Sprintf("warm-%d-%d", w, kind), kind); err != nil {
					t.Errorf("warm-up: %v", err)
				}
			}
		})
	}
	warm.Wait()
	if t.Failed() {
		t.FailNow()
	}
	s.waitNoPods(t, ns)
	first := sample()
	samples := []soakSample{first}
	t.Logf("start (after the warm-up, idle): %s", describeSample(first))

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var (
		mu       sync.Mutex
		failures []string
		kinds    [3]atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				kind := (w + i) % 3
				name := fmt.Sprintf("soak-%d-%d", w, i)
				if err := s.soakPod(ns, name, kind); err != nil {
					fail("%s: %v", name, err)
					return
				}
				kinds[kind].Add(1)
				done.Add(1)
			}
		})
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for ctx.Err() == nil {
		select {
		case <-ticker.C:
			sm := sample()
			samples = append(samples, sm)
			t.Logf("%s: %s", sm.at.Round(time.Second), describeSample(sm))
		case <-ctx.Done():
		}
	}
	wg.Wait()
	s.waitNoPods(t, ns)
	// Back to where it started, once settled (a deleted pod's last
	// goroutines and channels end a moment after its object goes): the
	// host objects exactly; the SSH channels within the podman API's
	// keep-alive pool (at most 2 idle connections per host, which one
	// idle moment may hold and another not).
	pool := float64(2 * len(hosts))
	var last soakSample
	framework.Eventually(t, "host objects and SSH channels back to the start", 3*time.Minute, func() (bool, string) {
		last = sample()
		return last.objects <= first.objects && last.total().channels <= first.total().channels+pool, describeSample(last)
	})
	samples = append(samples, last)
	t.Logf("end: %s", describeSample(last))

	f0, f1 := first.total(), last.total()
	report := soakReport(duration, concurrency, len(nodes), &kinds, samples, failures)
	if out := os.Getenv("RBN_SOAK_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Log("\n" + report)
	if len(failures) > 0 {
		t.Errorf("%d pod(s) failed:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	if done.Load() == 0 {
		t.Error("no pod completed a cycle")
	}
	// The Go runtime keeps memory it grew; goroutines of informers and
	// connections come and go with the nodes' state: margins, not equality.
	if f1.goroutines > f0.goroutines*1.1+20 {
		t.Errorf("goroutines grew from %.0f to %.0f", f0.goroutines, f1.goroutines)
	}
	if f1.rssBytes > f0.rssBytes*1.5 {
		t.Errorf("rbn-kubelet's resident memory grew from %.0f MiB to %.0f MiB", f0.rssBytes/(1<<20), f1.rssBytes/(1<<20))
	}
}

// waitNoPods waits until namespace ns has no pods left.
func (s *stack) waitNoPods(t *testing.T, ns string) {
	t.Helper()
	framework.Eventually(t, "every pod of "+ns+" gone", 5*time.Minute, func() (bool, string) {
		pods, err := s.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d left", len(pods.Items))
	})
}

// soakPod runs one cycle of a soak pod of kind 0 (runs to its end, its
// log read), 1 (deleted while it runs) or 2 (exec'ed into, then deleted),
// and waits until its object is gone.
func (s *stack) soakPod(ns, name string, kind int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	command := []string{"sh", "-c", "echo soak " + name + "; sleep 600"}
	if kind == 0 {
		command = []string{"sh", "-c", "echo soak " + name}
	}
	p := framework.JobPod(ns, name, "", map[string]string{"app": "soak"}, command)
	pods := s.Client.CoreV1().Pods(ns)
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return err
	}
	want := corev1.PodRunning
	if kind == 0 {
		want = corev1.PodSucceeded
	}
	for {
		got, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase == want {
			break
		}
		if got.Status.Phase == corev1.PodFailed || (want == corev1.PodRunning && got.Status.Phase == corev1.PodSucceeded) {
			return fmt.Errorf("phase %s, want %s: %s", got.Status.Phase, want, framework.DescribeStatus(got))
		}
		if err := waitPodChange(ctx, s, ns, name, got.ResourceVersion); err != nil {
			return fmt.Errorf("waiting for %s: %w", want, err)
		}
	}
	switch kind {
	case 0:
		b, err := pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("logs: %w", err)
		}
		if !strings.Contains(string(b), "soak "+name) {
			return fmt.Errorf("logs %q lack the pod's line", b)
		}
	case 2:
		out, err := framework.Run(ctx, []string{s.KubectlBin, "--kubeconfig=" + s.Kubeconfig, "-n", ns, "exec", name, "--", "echo", "in " + name}, nil)
		if err != nil {
			return fmt.Errorf("exec: %w", err)
		}
		if strings.TrimSpace(out) != "in "+name {
			return fmt.Errorf("exec printed %q", out)
		}
	}
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	for {
		got, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := waitPodChange(ctx, s, ns, name, got.ResourceVersion); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("waiting for the deletion: %w", err)
		}
	}
}

// waitPodChange waits for the next event of pod name after resourceVersion
// (or its deletion).
func waitPodChange(ctx context.Context, s *stack, ns, name, resourceVersion string) error {
	w, err := s.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   "metadata.name=" + name,
		ResourceVersion: resourceVersion,
	})
	if err != nil {
		return err
	}
	defer w.Stop()
	select {
	case _, ok := <-w.ResultChan():
		if !ok {
			return nil // the watch ended: look again
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kubeletFigures scrapes every Ready rbn-kubelet replica's /metrics.
func (s *stack) kubeletFigures(t *testing.T) map[string]replicaFigures {
	t.Helper()
	pods, err := s.RBNPods(context.Background(), framework.KubeletApp)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]replicaFigures{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil || !podReady(&p) {
			continue
		}
		text, err := framework.ScrapeMetrics(p.Status.PodIP, 10265)
		if err != nil {
			t.Fatalf("rbn-kubelet %s: %v", p.Name, err)
		}
		var sums [3]float64
		for i, name := range []string{"process_resident_memory_bytes", "go_goroutines", "rbn_ssh_channels_open"} {
			v, found, err := framework.MetricSum(text, name)
			if err != nil || !found {
				t.Fatalf("rbn-kubelet %s: %s: found %v, %v", p.Name, name, found, err)
			}
			sums[i] = v
		}
		out[p.Name] = replicaFigures{rssBytes: sums[0], goroutines: sums[1], channels: sums[2]}
	}
	if len(out) == 0 {
		t.Fatal("no Ready rbn-kubelet replica")
	}
	return out
}

// rbnHostObjects counts the podman containers, pods and volumes carrying
// rbn's pod label on the hosts.
func (s *stack) rbnHostObjects(t *testing.T, hosts []int) int {
	t.Helper()
	n := 0
	for _, h := range hosts {
		n += len(s.HostObjectsLabelled(t, h, "rbn.dev/pod-uid"))
	}
	return n
}

func describeSample(sm soakSample) string {
	f := sm.total()
	return fmt.Sprintf("%d cycles, rbn-kubelet RSS %.0f MiB, %.0f goroutines, %.0f SSH channels (%d replicas), %d podman objects of rbn on the hosts",
		sm.done, f.rssBytes/(1<<20), f.goroutines, f.channels, len(sm.replicas), sm.objects)
}

func soakReport(duration time.Duration, concurrency, nodes int, kinds *[3]atomic.Int64, samples []soakSample, failures []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Churn soak\n\nGenerated by `make soak` (hack/soak.sh: `go test -tags e2e,soak -run TestSoak ./e2e/`, e2e/soak_test.go) on %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "%s of churn on %d build nodes, %d pods in flight: %d cycles (%d run to their end and their logs read, %d deleted while running, %d exec'ed into then deleted); %d failed.\n\n",
		duration, nodes, concurrency, kinds[0].Load()+kinds[1].Load()+kinds[2].Load(), kinds[0].Load(), kinds[1].Load(), kinds[2].Load(), len(failures))
	b.WriteString("The first row is taken idle after a warm-up round (each worker ran one pod of each kind), the last once every pod is gone. rbn-kubelet's figures are summed over its replicas (the standby serves no node). The SSH channels of an idle replica are its hosts' event streams and samplers and the podman API's keep-alive pool (at most 2 idle connections per host).\n\n")
	b.WriteString("| time | cycles done | rbn-kubelet RSS (MiB) | goroutines | open SSH channels | podman objects of rbn on the hosts |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, sm := range samples {
		f := sm.total()
		fmt.Fprintf(&b, "| %s | %d | %.1f | %.0f | %.0f | %d |\n", sm.at.Round(time.Second), sm.done, f.rssBytes/(1<<20), f.goroutines, f.channels, sm.objects)
	}
	return b.String()
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration (30m, 90s)", key, v)
	}
	return d
}
