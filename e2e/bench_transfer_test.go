//go:build bench

// TestBenchTransfer measures an S3 output upload through rbn (the pod's
// file read by podman on the build host, streamed over the node's SSH
// connection through rbn-kubelet to S3) against a direct upload of the same
// file from the same machine, and samples rbn-kubelet's memory meanwhile.
// It prints a markdown section (and writes it to $RBN_BENCH_TRANSFER_OUT
// when set). It never fails on speed, only on a broken stack.
//
// It needs a stack with the S3 server (hack/s3.sh):
//
//	RBN_S3=1 hack/dev-up.sh; eval "$(hack/cluster.sh env)"; eval "$(hack/s3.sh env)"
//	RBN_E2E_KUBECONFIG=$KUBECONFIG RBN_E2E_STATE=$RBN_STATE RBN_E2E_ROOT=$PWD \
//	  go test -tags bench,remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper \
//	  -run '^TestBenchTransfer$' -v -timeout 30m ./e2e/
//
// RBN_BENCH_TRANSFER_MIB sets the size (default 1024).
//
// Self-contained on purpose: it shares no helper with bench_test.go.

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
)

func TestBenchTransfer(t *testing.T) {
	env := map[string]string{}
	for _, k := range []string{"RBN_E2E_KUBECONFIG", "RBN_E2E_STATE", "RBN_E2E_ROOT", "RBN_S3_ENDPOINT", "RBN_S3_REGION", "RBN_S3_ACCESS_KEY", "RBN_S3_SECRET_KEY"} {
		if env[k] = os.Getenv(k); env[k] == "" {
			t.Skipf("%s is not set: see the comment atop e2e/bench_transfer_test.go", k)
		}
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
	rc, err := clientcmd.BuildConfigFromFlags("", env["RBN_E2E_KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	pidRaw, err := os.ReadFile(filepath.Join(env["RBN_E2E_STATE"], "pids", "rbn-kubelet.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidRaw)))

	endpoint := s3relay.Endpoint{URL: env["RBN_S3_ENDPOINT"], Region: env["RBN_S3_REGION"],
		AccessKeyID: env["RBN_S3_ACCESS_KEY"], SecretAccessKey: env["RBN_S3_SECRET_KEY"], PathStyle: true}
	relay, err := s3relay.New(s3relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s3c, err := relay.Client(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer s3c.Close()
	bucket := fmt.Sprintf("bench-transfer-%d", time.Now().UnixNano()%1_000_000)
	if err := xferCreateBucket(ctx, endpoint, bucket); err != nil {
		t.Fatal(err)
	}

	ns := fmt.Sprintf("bench-transfer-%d", time.Now().UnixNano()%1_000_000)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	}()
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s3"}, StringData: map[string]string{
		rbnv1.S3KeyEndpoint: endpoint.URL, rbnv1.S3KeyRegion: endpoint.Region,
		rbnv1.S3KeyAccessKeyID: endpoint.AccessKeyID, rbnv1.S3KeySecretAccessKey: endpoint.SecretAccessKey,
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually := func(what string, timeout time.Duration, cond func() (bool, error)) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			ok, err := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
			}
			<-tick.C
		}
	}
	// Default service account first, or the pod is refused.
	eventually("default service account", 30*time.Second, func() (bool, error) {
		_, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})

	// 1. The pod writes the file, then its output goes up through rbn.
	transfers := fmt.Sprintf(`{"apiVersion": "rbn.dev/v1alpha1", "kind": "Transfers", "secretName": "s3", "outputs": [{"volume": "work", "path": "image.raw", "bucket": %q, "key": "rbn/image.raw"}]}`, bucket)
	pd := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "upload", Annotations: map[string]string{rbnv1.AnnotationTransfers: transfers}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{rbnv1.LabelRemoteBuildNode: "true"},
			Tolerations:   []corev1.Toleration{{Key: rbnv1.TaintRemoteBuildNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Containers: []corev1.Container{{Name: "build", Image: "localhost/rbn/busybox:1.0",
				Command:      []string{"sh", "-c", fmt.Sprintf("dd if=/dev/urandom of=/work/image.raw bs=1M count=%d 2>/dev/null", size)},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}}},
			Volumes:                       []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	// Sample rbn-kubelet's RSS from before the first upload until the last
	// pod succeeded.
	rssBefore := xferStatus(pid)["VmRSS"]
	cpuBefore := xferCPU(pid)
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
				if v, ok := xferStatus(pid)["VmRSS"]; ok {
					mu.Lock()
					samples = append(samples, v)
					mu.Unlock()
				}
			}
		}
	}()
	// Runs alternate: through rbn, then the same file direct, so that both
	// see the same machine load; medians over the runs.
	var (
		rbnDurs, directDurs []time.Duration
		uploadedMsg         string
		res                 s3relay.Result
		mountpoint          string
	)
	for run := range runs {
		up := pd.DeepCopy()
		up.Name = fmt.Sprintf("upload-%d", run)
		if _, err := kube.CoreV1().Pods(ns).Create(ctx, up, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually("pod "+up.Name+" Succeeded", 20*time.Minute, func() (bool, error) {
			p, err := kube.CoreV1().Pods(ns).Get(ctx, up.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if p.Status.Phase == corev1.PodFailed {
				t.Fatalf("pod failed: %s: %s", p.Status.Reason, p.Status.Message)
			}
			return p.Status.Phase == corev1.PodSucceeded, fmt.Errorf("phase %s", p.Status.Phase)
		})
		p, err := kube.CoreV1().Pods(ns).Get(ctx, up.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d, msg := xferEvent(t, kube, ns, up.Name, "Uploaded")
		rbnDurs, uploadedMsg = append(rbnDurs, d), msg

		// The same file, straight from the host's disk (its volume's
		// directory, on this machine) to S3, by the same uploader.
		mountpoint = xferVolumeMountpoint(t, env, p)
		file := filepath.Join(mountpoint, "image.raw")
		start := time.Now()
		res, err = s3c.Upload(ctx, bucket, "direct/image.raw", func(context.Context) (io.ReadCloser, error) { return os.Open(file) }, nil)
		if err != nil {
			t.Fatal(err)
		}
		directDurs = append(directDurs, time.Since(start))
	}
	close(stop)
	<-sampled
	rssAfter := xferStatus(pid)["VmRSS"]
	rbnCPU := (xferCPU(pid) - cpuBefore) / float64(runs)
	rbnDur, directDur := medianDur(rbnDurs), medianDur(directDurs)

	// 3. Back down: the object as a pod's input through rbn, then straight
	// into a file beside the volume's.
	dl := pd.DeepCopy()
	dl.Name = "download"
	dl.Annotations[rbnv1.AnnotationTransfers] = fmt.Sprintf(`{"apiVersion": "rbn.dev/v1alpha1", "kind": "Transfers", "secretName": "s3", "inputs": [{"bucket": %q, "key": "direct/image.raw", "volume": "work", "path": "in.raw"}]}`, bucket)
	dl.Spec.Containers[0].Command = []string{"sh", "-c", fmt.Sprintf("test $(stat -c %%s /work/in.raw) = %d", size<<20)}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, dl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("pod download Succeeded", 20*time.Minute, func() (bool, error) {
		p, err := kube.CoreV1().Pods(ns).Get(ctx, "download", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("pod failed: %s: %s", p.Status.Reason, p.Status.Message)
		}
		return p.Status.Phase == corev1.PodSucceeded, fmt.Errorf("phase %s", p.Status.Phase)
	})
	rbnDownDur, downloadedMsg := xferEvent(t, kube, ns, "download", "Downloaded")
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
	peak, median := int64(0), int64(0)
	if len(samples) > 0 {
		peak, median = samples[len(samples)-1], samples[len(samples)/2]
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
		"sends the same file from the host's volume directory on this machine with the same uploader, no SSH or podman.", size,
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
		float64(rssBefore)/1024, float64(median)/1024, float64(peak)/1024, len(samples), float64(rssAfter)/1024, float64(xferStatus(pid)["VmHWM"])/1024)
	w("")
	w("rbn-kubelet used %.1f CPU-seconds per upload run, from the pod's creation to its success and the direct upload after it (%.1f s per GiB); the machine has %d cores, load average %s at the end.",
		rbnCPU, rbnCPU/(bytes/(1<<30)), goruntime.NumCPU(), xferLoad())
	w("")
	w("rbn's own events: %s; %s", uploadedMsg, downloadedMsg)
	fmt.Print("\n" + b.String())
	if out := os.Getenv("RBN_BENCH_TRANSFER_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// xferCreateBucket creates a bucket with the SDK (s3relay only moves objects).
func xferCreateBucket(ctx context.Context, e s3relay.Endpoint, bucket string) error {
	c := s3.New(s3.Options{Region: e.Region, BaseEndpoint: aws.String(e.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(e.AccessKeyID, e.SecretAccessKey, "")})
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	return err
}

// xferEvent returns the duration an rbn transfer event reports, and its message.
func xferEvent(t *testing.T, kube kubernetes.Interface, ns, pod, reason string) (time.Duration, string) {
	t.Helper()
	events, err := kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
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
	t.Fatalf("no %s event with a duration for pod %s: %v", reason, pod, events.Items)
	return 0, ""
}

// xferCPU is the user+system CPU seconds of a process.
func xferCPU(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // USER_HZ, 100 on Linux
}

func xferLoad() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(raw))[:min(3, len(strings.Fields(string(raw))))], " ")
}

// xferStatus returns the kB fields of /proc/<pid>/status.
func xferStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if f := strings.Fields(v); len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			out[k] = n
		}
	}
	return out
}

// xferVolumeMountpoint finds the pod's work volume on its build host.
func xferVolumeMountpoint(t *testing.T, env map[string]string, p *corev1.Pod) string {
	t.Helper()
	for i := 1; ; i++ {
		raw, err := os.ReadFile(filepath.Join(env["RBN_E2E_STATE"], "hosts", fmt.Sprintf("host%d", i), "host.env"))
		if err != nil {
			t.Fatalf("node %s is not a local build host", p.Spec.NodeName)
		}
		if !strings.Contains(string(raw), "NAME="+p.Spec.NodeName+"\n") && !strings.Contains(string(raw), "NAME=\""+p.Spec.NodeName+"\"") {
			continue
		}
		cmd := exec.Command(filepath.Join(env["RBN_E2E_ROOT"], "hack", "hosts.sh"), "podman", strconv.Itoa(i), "volume", "ls",
			"--filter", "label=rbn.dev/pod-uid="+string(p.UID), "--format", "{{.Mountpoint}}")
		cmd.Env = append(os.Environ(), "RBN_STATE="+env["RBN_E2E_STATE"])
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("volumes of pod %s on host %d: %v %s", p.Name, i, err, out)
		}
		// Podman 4 ORs label filters: pick the work volume by its name.
		for _, l := range strings.Fields(string(out)) {
			if strings.HasSuffix(l, "-work/_data") {
				return l
			}
		}
		t.Fatalf("no work volume of pod %s on host %d among %s", p.Name, i, out)
	}
}

func medianDur(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtDurs(d []time.Duration) string {
	parts := make([]string, len(d))
	for i, x := range d {
		parts[i] = x.Round(time.Millisecond).String()
	}
	return strings.Join(parts, ", ")
}
