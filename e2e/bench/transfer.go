package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// RunTransfer measures an S3 output upload through rbn (the pod's file
// read by podman on the build host, streamed over the node's SSH connection
// through rbn-kubelet to S3) against a direct upload of the same file from
// the same machine, and samples rbn-kubelet's memory meanwhile. It prints a
// markdown section (and writes it to $RBN_BENCH_TRANSFER_OUT when set),
// which hack/bench.sh appends to the report. It never fails on speed, only
// on a broken stack.
//
// It needs a stack with the S3 server (hack/s3.sh), as hack/bench.sh
// brings up; the test is skipped when the environment does not describe
// one. RBN_BENCH_TRANSFER_MIB sets the size (default 1024),
// RBN_BENCH_TRANSFER_RUNS the upload runs (default 3).
func RunTransfer(t *testing.T) {
	env, err := framework.EnvFromOS()
	if err != nil {
		t.Skipf("%v: run the benchmarks with `make bench`", err)
	}
	s3env, err := framework.S3EnvFromOS()
	if err != nil {
		t.Skipf("%v: run the benchmarks with `make bench`, which starts the S3 server", err)
	}
	size := int64(1024)
	if v := os.Getenv("RBN_BENCH_TRANSFER_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			t.Fatalf("RBN_BENCH_TRANSFER_MIB=%q", v)
		}
		size = n
	}
	runs := 3
	if v := os.Getenv("RBN_BENCH_TRANSFER_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("RBN_BENCH_TRANSFER_RUNS=%q", v)
		}
		runs = n
	}
	ctx := context.Background()
	stack, err := framework.Connect(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	kube := stack.Client
	pid, err := stack.KubeletPID()
	if err != nil {
		t.Fatal(err)
	}
	clkTck := clockTicks()
	cpuSeconds := func() float64 {
		v, _ := framework.ProcCPU(pid)
		return v / clkTck
	}
	rss := func(field string) int64 {
		st, _ := framework.ProcStatus(pid)
		return st[field]
	}

	endpoint := s3relay.Endpoint{URL: s3env.Endpoint, Region: s3env.Region,
		AccessKeyID: s3env.AccessKey, SecretAccessKey: s3env.SecretKey, PathStyle: true}
	relay, err := s3relay.New(s3relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s3c, err := relay.Client(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer s3c.Close()
	bucket := framework.UniqueName("bench-transfer")
	if err := s3env.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}

	ns, err := createNamespace(ctx, kube, "bench-transfer")
	if err != nil {
		t.Fatal(err)
	}
	defer deleteNamespace(kube, ns)
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s3"}, StringData: map[string]string{
		rbnv1.S3KeyEndpoint: endpoint.URL, rbnv1.S3KeyRegion: endpoint.Region,
		rbnv1.S3KeyAccessKeyID: endpoint.AccessKeyID, rbnv1.S3KeySecretAccessKey: endpoint.SecretAccessKey,
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// rbn-kubelet reads the Secret as the pod's service account.
	if err := grantSecret(ctx, kube, ns, "s3"); err != nil {
		t.Fatal(err)
	}
	// succeeded waits until pod name succeeded, failing the test if it failed.
	succeeded := func(name string) {
		t.Helper()
		framework.Eventually(t, "pod "+name+" Succeeded", 20*time.Minute, func() (bool, string) {
			p, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if p.Status.Phase == corev1.PodFailed {
				t.Fatalf("pod failed: %s: %s", p.Status.Reason, p.Status.Message)
			}
			return p.Status.Phase == corev1.PodSucceeded, "phase " + string(p.Status.Phase)
		})
	}

	// 1. The pod writes the file, then its output goes up through rbn.
	transfers := fmt.Sprintf(`{"apiVersion": "rbn.dev/v1alpha1", "kind": "Transfers", "secretName": "s3", "outputs": [{"volume": "work", "path": "image.raw", "bucket": %q, "key": "rbn/image.raw"}]}`, bucket)
	pd := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "upload", Annotations: map[string]string{rbnv1.AnnotationTransfers: transfers}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "build", Image: benchImage,
				Command:      []string{"sh", "-c", fmt.Sprintf("dd if=/dev/urandom of=/work/image.raw bs=1M count=%d 2>/dev/null", size)},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}}},
			Volumes:                       []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	framework.RemoteNodePlacement(&pd.Spec)
	// The direct upload and the stages read the same data from a pod that
	// keeps it: rbn empties an ended pod's emptyDirs, as kubelet does. The
	// upload pods run on its node, so that every path reads the same host.
	src := pd.DeepCopy()
	src.Name, src.Annotations = "source", nil
	src.Spec.Containers[0].Command = []string{"sh", "-c", fmt.Sprintf("dd if=/dev/urandom of=/work/image.raw bs=1M count=%d 2>/dev/null && touch /work/done && exec sleep 3600", size)}
	src.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/work/done"}}}}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, src, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, "pod source Ready", 10*time.Minute, func() (bool, string) {
		p, err := kube.CoreV1().Pods(ns).Get(ctx, src.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		src = p
		return podReady(p), "phase " + string(p.Status.Phase)
	})
	framework.OnNode(&pd.Spec, src.Spec.NodeName)
	mountpoint := volumeMountpoint(t, stack, src)
	file := filepath.Join(mountpoint, "image.raw")
	// Sample rbn-kubelet's RSS from before the first upload until the last
	// pod succeeded.
	rssBefore := rss("VmRSS")
	cpuBefore := cpuSeconds()
	var (
		mu      sync.Mutex
		samples []int64
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if st, err := framework.ProcStatus(pid); err == nil {
					v := st["VmRSS"]
					mu.Lock()
					samples = append(samples, v)
					mu.Unlock()
				}
			}
		}
	}()
	// Runs alternate: through rbn, then as much data direct, so that both
	// see the same machine load; medians over the runs.
	var (
		rbnDurs, directDurs     []time.Duration
		uploadedMsg             string
		res                     s3relay.Result
		rbnCPUUse, directCPUUse []framework.CPUUse
	)
	for run := range runs {
		up := pd.DeepCopy()
		up.Name = fmt.Sprintf("upload-%d", run)
		if _, err := kube.CoreV1().Pods(ns).Create(ctx, up, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		use, err := uploadCPU(ctx, kube, ns, up.Name)
		if err != nil {
			t.Fatal(err)
		}
		rbnCPUUse = append(rbnCPUUse, use)
		d, msg := transferEvent(t, kube, ns, up.Name, "Uploaded")
		rbnDurs, uploadedMsg = append(rbnDurs, d), msg

		// The same amount of data, straight from the host's disk (the
		// source pod's volume directory, on this machine) to S3, by the
		// same uploader.
		before := framework.TakeCPUSnapshot()
		start := time.Now()
		res, err = s3c.Upload(ctx, bucket, "direct/image.raw", func(context.Context) (io.ReadCloser, error) { return os.Open(file) }, nil)
		if err != nil {
			t.Fatal(err)
		}
		directDurs = append(directDurs, time.Since(start))
		directCPUUse = append(directCPUUse, before.Until(framework.TakeCPUSnapshot()))
	}
	close(stop)
	<-sampled
	rssAfter := rss("VmRSS")
	rbnCPU := (cpuSeconds() - cpuBefore) / float64(runs)
	rbnDur, directDur := median(rbnDurs), median(directDurs)
	// Then rbn's path taken apart, outside the figures above.
	stages, err := transferStages(ctx, stack, src, file, s3c, bucket, runs)
	if err != nil {
		t.Fatal(err)
	}

	// 3. Back down: the object as a pod's input through rbn, then straight
	// into a file beside the volume's.
	dl := pd.DeepCopy()
	dl.Name = "download"
	dl.Annotations[rbnv1.AnnotationTransfers] = fmt.Sprintf(`{"apiVersion": "rbn.dev/v1alpha1", "kind": "Transfers", "secretName": "s3", "inputs": [{"bucket": %q, "key": "direct/image.raw", "volume": "work", "path": "in.raw"}]}`, bucket)
	dl.Spec.Containers[0].Command = []string{"sh", "-c", fmt.Sprintf("test $(stat -c %%s /work/in.raw) = %d", size<<20)}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, dl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	succeeded("download")
	rbnDownDur, downloadedMsg := transferEvent(t, kube, ns, "download", "Downloaded")
	target := filepath.Join(mountpoint, "direct-download.raw")
	start := time.Now()
	_, err = s3c.Download(ctx, bucket, "direct/image.raw", func(_ context.Context, body io.Reader, _ int64) error {
		f, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	directDownDur := time.Since(start)
	_ = os.Remove(target)

	mu.Lock()
	slices.Sort(samples)
	peak, rssMedian := int64(0), int64(0)
	if len(samples) > 0 {
		peak, rssMedian = samples[len(samples)-1], samples[len(samples)/2]
	}
	mu.Unlock()
	bytes := float64(size << 20)
	rbnRate, directRate := bytes/rbnDur.Seconds()/(1<<20), bytes/directDur.Seconds()/(1<<20)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## 6. S3 transfers through rbn-kubelet (%d MiB, issue #7)", size)
	w("")
	w("A pod writes %d MiB of random data to an emptyDir and declares it as an output (`rbn.dev/transfers`); "+
		"rbn-kubelet streams it from podman's archive API over the node's SSH connection into a multipart upload "+
		"(%d MiB parts, %d in flight, part buffers bounded at %d MiB for the whole process). The direct upload "+
		"sends as much random data, written the same way by a pod on the same host that keeps running (rbn empties an ended pod's emptyDirs), "+
		"from its volume's directory on this machine with the same uploader, no SSH or podman.", size,
		s3relay.DefaultPartSize>>20, s3relay.DefaultConcurrency, relay.MemoryBound()>>20)
	w("")
	w("| transfer | duration | throughput | ratio |")
	w("| --- | --- | --- | --- |")
	w("| upload through rbn (podman archive -> SSH -> rbn-kubelet -> S3), median of %d | %s | %.1f MiB/s | %.0f%% of direct (goal >= 80%%) |", runs, rbnDur.Round(time.Millisecond), rbnRate, 100*rbnRate/directRate)
	w("| upload direct from the same machine (%s), median of %d | %s | %.1f MiB/s | 100%% |", res.Checksum, runs, directDur.Round(time.Millisecond), directRate)
	w("| upload runs through rbn / direct | %s / %s | | |", fmtDurs(rbnDurs), fmtDurs(directDurs))
	w("| download through rbn (S3 -> rbn-kubelet -> SSH -> podman archive, into the volume) | %s | %.1f MiB/s | %.0f%% of direct |",
		rbnDownDur.Round(time.Millisecond), bytes/rbnDownDur.Seconds()/(1<<20), 100*directDownDur.Seconds()/rbnDownDur.Seconds())
	w("| download direct to a file on the same disk | %s | %.1f MiB/s | 100%% |", directDownDur.Round(time.Millisecond), bytes/directDownDur.Seconds()/(1<<20))
	w("")
	w("rbn-kubelet VmRSS: %.1f MiB before, median %.1f MiB and peak %.1f MiB over %d samples while the pod ran and uploaded, %.1f MiB after; VmHWM (lifetime) %.1f MiB.",
		float64(rssBefore)/1024, float64(rssMedian)/1024, float64(peak)/1024, len(samples), float64(rssAfter)/1024, float64(rss("VmHWM"))/1024)
	w("")
	w("rbn-kubelet used %.1f CPU-seconds per upload run, from the pod's creation to its success and the direct upload after it (%.1f s per GiB); the machine has %d cores, load average %s at the end.",
		rbnCPU, rbnCPU/(bytes/(1<<30)), goruntime.NumCPU(), framework.Loadavg())
	w("")
	w("rbn's own events: %s; %s", uploadedMsg, downloadedMsg)
	w("")
	writeTransferCPU(w, size, clkTck, rbnDurs, rbnCPUUse, directDurs, directCPUUse, stages)
	fmt.Print("\n" + b.String())
	if out := os.Getenv("RBN_BENCH_TRANSFER_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// grantSecret lets the namespace's default service account, the pods',
// read Secret name.
func grantSecret(ctx context.Context, kube kubernetes.Interface, ns, name string) error {
	role := "read-" + name
	if _, err := kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{name}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}},
	}, metav1.CreateOptions{})
	return err
}

// transferEvent returns the duration an rbn transfer event reports, and its message.
func transferEvent(t *testing.T, kube kubernetes.Interface, ns, podName, reason string) (time.Duration, string) {
	t.Helper()
	events, err := kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + podName})
	if err != nil {
		t.Fatal(err)
	}
	durRE := regexp.MustCompile(` in ([0-9.]+(?:ms|s|m[0-9.]+s|h[0-9.]+m[0-9.]+s))(?: \(|$)`)
	for _, e := range events.Items {
		if e.Reason == reason {
			if m := durRE.FindStringSubmatch(e.Message); m != nil {
				d, err := time.ParseDuration(m[1])
				if err == nil {
					return d, e.Message
				}
			}
		}
	}
	t.Fatalf("no %s event with a duration for pod %s: %v", reason, podName, events.Items)
	return 0, ""
}

// volumeMountpoint finds the pod's work volume on its build host.
func volumeMountpoint(t *testing.T, stack *framework.Stack, p *corev1.Pod) string {
	t.Helper()
	i := stack.HostIndex(t, p.Spec.NodeName)
	out := stack.MustHostPodman(t, i, "volume", "ls", "--filter", "label="+pod.LabelPodUID+"="+string(p.UID), "--format", "{{.Mountpoint}}")
	// Podman 4 ORs label filters: pick the work volume by its name.
	for _, l := range strings.Fields(out) {
		if strings.HasSuffix(l, "-work/_data") {
			return l
		}
	}
	t.Fatalf("no work volume of pod %s on host %d among %s", p.Name, i, out)
	return ""
}

func fmtDurs(d []time.Duration) string {
	parts := make([]string, len(d))
	for i, x := range d {
		parts[i] = x.Round(time.Millisecond).String()
	}
	return strings.Join(parts, ", ")
}
