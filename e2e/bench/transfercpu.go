package bench

import (
	"context"
	"fmt"
	"io"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/internal/tarstream"
	"github.com/remote-build-nodes/rbn/provider"
)

// Where an upload's CPU goes. On a machine whose few cores run the build
// host's podman and sshd, rbn-kubelet and the S3 server at once, an upload
// through rbn is bound by the CPU all of them need together; the direct
// upload needs only the reader's and the S3 server's. These figures measure
// that bound: the machine's busy CPU over each upload, by process, and the
// same for each stage of rbn's path taken alone.

// uploadCPU watches pod name until it Succeeded and returns the machine's
// CPU from the moment its status says its outputs upload (condition
// rbn.dev/OutputsUploaded False, Uploading) to the moment it Succeeded.
func uploadCPU(ctx context.Context, kube kubernetes.Interface, ns, name string) (framework.CPUUse, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	w, err := kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		return framework.CPUUse{}, err
	}
	defer w.Stop()
	var start *framework.CPUSnapshot
	for {
		select {
		case <-ctx.Done():
			return framework.CPUUse{}, fmt.Errorf("pod %s: not Succeeded: %w", name, ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				return framework.CPUUse{}, fmt.Errorf("pod %s: watch ended", name)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted {
				return framework.CPUUse{}, fmt.Errorf("pod %s: watch event %s", name, ev.Type)
			}
			switch {
			case p.Status.Phase == corev1.PodFailed:
				return framework.CPUUse{}, fmt.Errorf("pod %s failed: %s: %s", name, p.Status.Reason, p.Status.Message)
			case p.Status.Phase == corev1.PodSucceeded && start == nil:
				return framework.CPUUse{}, fmt.Errorf("pod %s: Succeeded without an Uploading status seen", name)
			case p.Status.Phase == corev1.PodSucceeded:
				return start.Until(framework.TakeCPUSnapshot()), nil
			case start == nil && uploading(p):
				s := framework.TakeCPUSnapshot()
				start = &s
			}
		}
	}
}

func uploading(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == provider.ConditionOutputsUploaded && c.Status == corev1.ConditionFalse && c.Reason == "Uploading" {
			return true
		}
	}
	return false
}

// transferStage is one way of moving the file, timed over runs, with the
// machine's CPU in each run.
type transferStage struct {
	name string
	durs []time.Duration
	cpu  []framework.CPUUse
}

// transferStages takes rbn's upload path apart on the build host of p
// (whose container build wrote file, /work/image.raw in it), over the
// bench's own SSH connection, the way rbn-kubelet holds one: podman's
// archive of the file, read and dropped; the file itself (cat), read and
// dropped; and podman's archive into S3 by the bench, which is rbn's path
// without rbn-kubelet. The stages alternate, runs times each.
func transferStages(ctx context.Context, stack *framework.Stack, p *corev1.Pod, file string, s3c *s3relay.Client, bucket string, runs int) ([]transferStage, error) {
	hosts, err := stack.BuildHosts()
	if err != nil {
		return nil, err
	}
	k := slices.IndexFunc(hosts, func(h framework.BuildHost) bool { return h.Name == p.Spec.NodeName })
	if k < 0 {
		return nil, fmt.Errorf("node %s is not one of the %d build hosts", p.Spec.NodeName, len(hosts))
	}
	if len(p.Status.ContainerStatuses) == 0 {
		return nil, fmt.Errorf("pod %s has no container status", p.Name)
	}
	ctr := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "podman://")
	f, err := dialFloor(ctx, hosts[k])
	if err != nil {
		return nil, err
	}
	defer f.close()

	archive := func(ctx context.Context) (io.ReadCloser, error) { return f.pm.CopyFrom(ctx, ctr, "/work/image.raw") }
	drop := func(open func(context.Context) (io.ReadCloser, error)) func() error {
		return func() error {
			r, err := open(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(io.Discard, r)
			return err
		}
	}
	stages := []transferStage{
		{name: "podman's archive of the file over SSH, read and dropped by the bench"},
		{name: "the file itself (`cat`) over SSH, read and dropped by the bench"},
		{name: "podman's archive over SSH into S3 by the bench (rbn's path without rbn-kubelet)"},
	}
	steps := []func() error{
		drop(archive),
		drop(func(ctx context.Context) (io.ReadCloser, error) { return f.ssh.StreamChecked(ctx, "cat", "--", file) }),
		func() error {
			_, err := s3c.Upload(ctx, bucket, "stage/image.raw", func(ctx context.Context) (io.ReadCloser, error) {
				ar, err := archive(ctx)
				if err != nil {
					return nil, err
				}
				r, _, err := tarstream.SingleFile(ar)
				if err != nil {
					ar.Close()
					return nil, err
				}
				return struct {
					io.Reader
					io.Closer
				}{r, ar}, nil
			}, nil)
			return err
		},
	}
	for run := range runs {
		for k := range steps {
			s := (run + k) % len(steps)
			before := framework.TakeCPUSnapshot()
			start := time.Now()
			if err := steps[s](); err != nil {
				return nil, fmt.Errorf("%s: %w", stages[s].name, err)
			}
			stages[s].durs = append(stages[s].durs, time.Since(start))
			stages[s].cpu = append(stages[s].cpu, before.Until(framework.TakeCPUSnapshot()))
		}
	}
	return stages, nil
}

// writeTransferCPU writes where the uploads' CPU went, and the bound the
// machine's cores set on each path.
func writeTransferCPU(w func(string, ...any), sizeMiB int64, clkTck float64, rbnDurs []time.Duration, rbnCPU []framework.CPUUse,
	directDurs []time.Duration, directCPU []framework.CPUUse, stages []transferStage) {
	cores := float64(goruntime.NumCPU())
	gib := float64(sizeMiB) / 1024
	paths := append([]transferStage{
		{name: "upload through rbn (from the Uploading status to Succeeded)", durs: rbnDurs, cpu: rbnCPU},
		{name: "upload direct from the same machine", durs: directDurs, cpu: directCPU},
	}, stages...)
	w("### Where the upload's CPU goes (%d cores)", int(cores))
	w("")
	w("The machine's busy CPU over each path (all processes: /proc/stat, less idle and iowait), and each process's, by command name; " +
		"the stages take rbn's path apart on the same host over the bench's own SSH connection. A path that needs C CPU-seconds " +
		"cannot take less than C / cores seconds here: the last two columns are the throughput that bound allows, and that throughput against the direct upload's measured one.")
	w("")
	w("| path | duration (median) | throughput | machine CPU-s (median) | CPU-s per GiB | share of the cores over its duration | CPU-s by process (median run) | throughput the cores bound it to | that bound against the direct upload's throughput |")
	w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	direct := 0.0
	if len(directDurs) > 0 {
		direct = float64(sizeMiB) / median(directDurs).Seconds()
	}
	for _, p := range paths {
		if len(p.durs) == 0 || len(p.cpu) == 0 {
			continue
		}
		d := median(p.durs)
		busy := make([]float64, len(p.cpu))
		for i, u := range p.cpu {
			busy[i] = u.Busy / clkTck
		}
		cpu := medianF(busy)
		// The run whose busy CPU is the median's, for the processes.
		mid := p.cpu[0]
		for i := range p.cpu {
			if busy[i] == cpu {
				mid = p.cpu[i]
			}
		}
		var procs []string
		for _, c := range mid.Top(5) {
			procs = append(procs, fmt.Sprintf("%s %.1f", c.Comm, c.Ticks/clkTck))
		}
		bound := float64(sizeMiB) / (cpu / cores)
		w("| %s | %s | %.1f MiB/s | %.1f | %.1f | %.0f%% | %s | %.0f MiB/s | %.0f%% |", p.name, d.Round(time.Millisecond),
			float64(sizeMiB)/d.Seconds(), cpu, cpu/gib, 100*cpu/(cores*d.Seconds()), strings.Join(procs, ", "), bound, 100*bound/direct)
	}
}
