package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// ---------------------------------------------------------------------------------------------
// 3: streaming. kubectl logs -f of a container that wrote a large log, and
// kubectl exec -- true, against the same through the bindings over SSH.

// streamsSection measures item 3.
type streamsSection struct {
	b   *bench
	res *streamsResult
}

type streamsResult struct {
	node     string
	logBytes int64
	// Whole-log reads of the same container: rbn's kubectl logs -f,
	// podman's logs through the bindings over the floor's SSH, and the
	// log file (fileBytes, podman's time and stream tag on each line) read
	// with cat over the floor's SSH.
	rbnLogs, floorLogs, fileLogs []time.Duration
	fileBytes                    int64
	// exec -- true round trips: the real kubectl; client-go's websocket
	// executor in this process (the same path without kubectl's process
	// start); the bindings' exec over SSH; and kubectl get --raw /readyz, the
	// kubectl process with one apiserver round trip, for what kubectl alone costs.
	kubectlExec, clientExec, floorExec, kubectlRaw []time.Duration
}

func (s *streamsSection) run(ctx context.Context) error {
	b := s.b
	s.res = &streamsResult{node: b.hosts[0].Name, logBytes: int64(b.cfg.logMiB) << 20}
	res := s.res
	// The log pod runs on a node of its own on the same host, whose
	// containerLogMaxSize holds the whole log: the default (100Mi) would
	// have conmon start the file again partway.
	logNode := "bench-streams-logs"
	err := b.createRBN(ctx, logNode, b.hosts[0], "streams", func(s *rbnv1.RemoteBuildNodeSpec) {
		s.ContainerLogMaxSize = resource.NewQuantity(2*res.logBytes+64<<20, resource.BinarySI)
	})
	if err != nil {
		return err
	}
	defer func() { _ = b.deleteRBNs([]string{logNode}) }()
	if err := b.waitNodesReady(ctx, []string{logNode}, 2*time.Minute); err != nil {
		return err
	}
	ns, err := b.newNamespace(ctx, "bench-streams")
	if err != nil {
		return err
	}
	defer b.deleteNamespace(ns)
	tr, err := trackPods(ctx, b.kube, ns, benchLabel+"=streams")
	if err != nil {
		return err
	}
	defer tr.stop()
	defer func() { _, _ = b.deletePods(context.Background(), ns, benchLabel+"=streams", 5*time.Minute) }()

	// The two measures are independent: one failing does not cost the other.
	return errors.Join(b.measureLogs(ctx, tr, ns, logNode, res), b.measureExec(ctx, tr, ns, res))
}

func (b *bench) measureLogs(ctx context.Context, tr *podTracker, ns, node string, res *streamsResult) error {
	// 100-byte lines, as a build log might have; yes | head writes them as
	// fast as the container's log pipe takes them.
	line := strings.Repeat("0123456789", 10)[:99]
	logger, err := b.runStreamsPod(ctx, tr, ns, node, "biglog", []string{"sh", "-c", fmt.Sprintf("yes %s | head -c %d", line, res.logBytes)}, corev1.PodSucceeded)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	for i := 0; i < b.cfg.logRuns; i++ {
		steps := []func() error{
			func() error {
				d, err := b.kubectlLogs(ctx, ns, "biglog", res.logBytes)
				if err == nil {
					res.rbnLogs = append(res.rbnLogs, d)
				}
				return err
			},
			func() error {
				d, err := floorLogs(ctx, logger.floor, logger.container, res.logBytes)
				if err == nil {
					res.floorLogs = append(res.floorLogs, d)
				}
				return err
			},
			func() error {
				d, n, err := floorLogFile(ctx, logger.floor, logger.container)
				if err == nil {
					res.fileLogs, res.fileBytes = append(res.fileLogs, d), n
				}
				return err
			},
		}
		if err := rotated(i, steps); err != nil {
			return fmt.Errorf("logs run %d: %w", i, err)
		}
		b.logf("logs run %d: kubectl logs -f %s, podman logs %s, cat of the log file %s", i, ms(res.rbnLogs[i]), ms(res.floorLogs[i]), ms(res.fileLogs[i]))
	}
	return nil
}

func (b *bench) measureExec(ctx context.Context, tr *podTracker, ns string, res *streamsResult) error {
	execer, err := b.runStreamsPod(ctx, tr, ns, res.node, "execer", []string{"sleep", "3600"}, corev1.PodRunning)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	execClient, err := b.execClient(ns, "execer")
	if err != nil {
		return err
	}
	// One of each, discarded: the first of each kind opens connections.
	for i := -1; i < b.cfg.execRuns; i++ {
		steps := []func() (time.Duration, error){
			func() (time.Duration, error) {
				return b.timeKubectl(ctx, "-n", ns, "exec", "execer", "--", "true")
			},
			func() (time.Duration, error) { return timeClientExec(ctx, execClient) },
			func() (time.Duration, error) { return timeFloorExec(ctx, execer.floor, execer.container) },
			func() (time.Duration, error) { return b.timeKubectl(ctx, "get", "--raw", "/readyz") },
		}
		dst := []*[]time.Duration{&res.kubectlExec, &res.clientExec, &res.floorExec, &res.kubectlRaw}
		for k := range steps {
			j := (k + max(i, 0)) % len(steps)
			d, err := steps[j]()
			if err != nil {
				return fmt.Errorf("exec run %d: %w", i, err)
			}
			if i >= 0 {
				*dst[j] = append(*dst[j], d)
			}
		}
	}
	return nil
}

// streamsPod is a pod of the streams section and its container on its host.
type streamsPod struct {
	floor     *floorConn
	container string
}

// runStreamsPod runs a pod on node, a node of the host hosts[0].
func (b *bench) runStreamsPod(ctx context.Context, tr *podTracker, ns, node, name string, command []string, phase corev1.PodPhase) (streamsPod, error) {
	if _, err := b.kube.CoreV1().Pods(ns).Create(ctx, framework.JobPod(ns, name, node, map[string]string{benchLabel: "streams"}, command), metav1.CreateOptions{}); err != nil {
		return streamsPod{}, err
	}
	err := tr.wait(ctx, "pod "+name+" to be "+string(phase), 5*time.Minute, func(pods map[string]*podTimes) (bool, string) {
		pt := pods[name]
		if pt == nil || pt.last == nil {
			return false, "not seen"
		}
		if !pt.failed.IsZero() {
			return true, "Failed"
		}
		return pt.last.Status.Phase == phase, string(pt.last.Status.Phase)
	})
	if err != nil {
		return streamsPod{}, err
	}
	pt := tr.get(name)
	if pt.last.Status.Phase != phase {
		return streamsPod{}, fmt.Errorf("pod %s is %s, want %s", name, pt.last.Status.Phase, phase)
	}
	f := b.floorOf(b.hosts[0].Name)
	cs, err := f.pm.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(pt.uid), pod.LabelContainer: "main"})
	if err != nil || len(cs) != 1 {
		return streamsPod{}, fmt.Errorf("pod %s's container on %s: %d found, %v", name, node, len(cs), err)
	}
	return streamsPod{floor: f, container: cs[0].ID}, nil
}

// kubectlLogs reads the whole log of a pod with kubectl logs -f and checks its size.
func (b *bench) kubectlLogs(ctx context.Context, ns, name string, want int64) (time.Duration, error) {
	cmd := b.stack.KubectlCmd(ctx, "-n", ns, "logs", "-f", name)
	var n countingWriter
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &n, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("kubectl logs -f %s: %w: %s", name, err, stderr.String())
	}
	d := time.Since(start)
	if int64(n) != want {
		return d, fmt.Errorf("kubectl logs -f %s: %d bytes, want %d", name, n, want)
	}
	return d, nil
}

// floorLogs reads the whole log of a container through the bindings, as
// rbn-kubelet does for kubectl logs -f of an ended container (podman 4's
// follow of an ended container's log loses data), and checks its size.
func floorLogs(ctx context.Context, f *floorConn, container string, want int64) (time.Duration, error) {
	start := time.Now()
	r, err := f.pm.Logs(ctx, container, podman.LogOptions{Tail: -1})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var n countingWriter
	if _, err := io.Copy(&n, r); err != nil {
		return 0, fmt.Errorf("podman logs %s: %w", container, err)
	}
	d := time.Since(start)
	if int64(n) != want {
		return d, fmt.Errorf("podman logs %s: %d bytes, want %d", container, n, want)
	}
	return d, nil
}

// floorLogFile reads a container's log file whole with cat over the
// floor's SSH: the transfer rbn-kubelet makes for a log read whole,
// without turning it into the log's lines. It returns the file's size.
func floorLogFile(ctx context.Context, f *floorConn, container string) (time.Duration, int64, error) {
	c, err := f.pm.InspectContainer(ctx, container)
	if err != nil {
		return 0, 0, err
	}
	if c.LogPath == "" {
		return 0, 0, fmt.Errorf("container %s has no log file (driver %q)", container, c.LogDriver)
	}
	start := time.Now()
	r, err := f.ssh.StreamChecked(ctx, "cat", "--", c.LogPath)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	var n countingWriter
	if _, err := io.Copy(&n, r); err != nil {
		return 0, 0, fmt.Errorf("cat %s: %w", c.LogPath, err)
	}
	return time.Since(start), int64(n), nil
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

func (b *bench) timeKubectl(ctx context.Context, args ...string) (time.Duration, error) {
	cmd := b.stack.KubectlCmd(ctx, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("kubectl %v: %w: %s", args, err, out)
	}
	return d, nil
}

// execClient is what kubectl exec builds: a websocket executor on the
// pod's exec subresource, through the apiserver to rbn-kubelet.
func (b *bench) execClient(ns, name string) (remotecommand.Executor, error) {
	u := b.kube.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "main", Command: []string{"true"}, Stdout: true, Stderr: true}, scheme.ParameterCodec).URL()
	return remotecommand.NewWebSocketExecutor(b.stack.Rest, "GET", u.String())
}

func timeClientExec(ctx context.Context, e remotecommand.Executor) (time.Duration, error) {
	start := time.Now()
	if err := e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		return 0, fmt.Errorf("exec through the apiserver: %w", err)
	}
	return time.Since(start), nil
}

func timeFloorExec(ctx context.Context, f *floorConn, container string) (time.Duration, error) {
	start := time.Now()
	code, err := f.pm.Exec(ctx, container, podman.ExecOptions{Cmd: []string{"true"}, Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		return 0, err
	}
	if code != 0 {
		return 0, fmt.Errorf("exec true: exit code %d", code)
	}
	return time.Since(start), nil
}

// execGoal is issue #18's bound on what exec through the apiserver may
// add to a direct exec.
const execGoal = 15 * time.Millisecond

func mibPerSec(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / (1 << 20) / d.Seconds()
}

func (s *streamsSection) summary() [][]string {
	r := s.res
	var rows [][]string
	if r != nil && len(r.rbnLogs) > 0 && len(r.floorLogs) > 0 {
		rl, fl := median(r.rbnLogs), median(r.floorLogs)
		rows = append(rows, []string{"3", fmt.Sprintf("`kubectl logs -f` of a container's %d MiB log: throughput", r.logBytes>>20),
			fmt.Sprintf("%.1f MiB/s (%s)", mibPerSec(r.logBytes, rl), secs(rl)),
			fmt.Sprintf("%.1f MiB/s (%s, podman logs via the bindings)", mibPerSec(r.logBytes, fl), secs(fl)),
			ratioF(mibPerSec(r.logBytes, rl), mibPerSec(r.logBytes, fl)), "≥ 0.9×", verdict(mibPerSec(r.logBytes, rl) >= 0.9*mibPerSec(r.logBytes, fl))})
		if len(r.fileLogs) > 0 {
			ff := median(r.fileLogs)
			rows = append(rows, []string{"3", "`kubectl logs -f` against its log file read with `cat` over SSH (the transfer rbn makes)",
				fmt.Sprintf("%.1f MiB/s of log", mibPerSec(r.logBytes, rl)),
				fmt.Sprintf("%.1f MiB/s of log (%s, the file's %d MiB)", mibPerSec(r.logBytes, ff), secs(ff), r.fileBytes>>20),
				ratioF(mibPerSec(r.logBytes, rl), mibPerSec(r.logBytes, ff)), "", ""})
		}
	} else {
		rows = append(rows, failedRow("3", "logs -f throughput", "≥ 0.9×", s.b.rep.errs[s]))
	}
	if r != nil && len(r.kubectlExec) > 0 {
		fe := median(r.floorExec)
		rows = append(rows,
			[]string{"3", "`kubectl exec -- true` round trip", ms(median(r.kubectlExec)), ms(fe) + " (exec through the bindings)", signedMs(median(r.kubectlExec) - fe), "", ""},
			[]string{"3", "exec -- true through the apiserver without kubectl's process (client-go websocket)", ms(median(r.clientExec)), ms(fe), signedMs(median(r.clientExec) - fe),
				"≤ +15 ms", verdict(median(r.clientExec)-fe <= execGoal)})
	} else {
		rows = append(rows, failedRow("3", "exec round trip", "≤ +15 ms", s.b.rep.errs[s]))
	}
	return rows
}

func (s *streamsSection) render(p printer) {
	b, r := s.b, s.res
	if !b.sectionHeader(p, s, "3. Streaming: logs and exec", r != nil) {
		return
	}
	p("On `%s`'s host: a pod whose container wrote %d MiB of 100-byte lines (`yes | head -c`) and ended (on a node of", r.node, r.logBytes>>20)
	p("its own on that host, whose `containerLogMaxSize` holds the whole log file); its whole log is")
	p("then read %d times each way, rotating which goes first: `kubectl logs -f` (the real kubectl, through the", b.cfg.logRuns)
	p("apiserver and rbn-kubelet's kubelet API, which reads the container's log file over SSH, as kubelet reads")
	p("a CRI runtime's, and turns its records into the log's lines); as the floor, podman's logs API of the same")
	p("container through the bindings over the benchmark's own SSH connection (whole log, no follow: the")
	p("container has ended, and podman 4's follow of an ended container's log loses data); and the log file")
	p("itself read with `cat` over that connection, the transfer rbn makes, without the apiserver and kubectl.")
	p("The first two check the byte count. Then a `sleep` pod and %d rounds (after one discarded) of `exec -- true` four ways,", b.cfg.execRuns)
	p("in rotating order: the real `kubectl exec`; client-go's websocket executor in the benchmark process (what")
	p("kubectl does, without starting a process); exec through the bindings over SSH (the floor); and")
	p("`kubectl get --raw /readyz`, which is kubectl's process start and one apiserver round trip, for scale.")
	p("")
	rows := [][]string{distRow("**rbn: `kubectl logs -f`, whole log**", r.rbnLogs), distRow("**floor: podman logs via the bindings**", r.floorLogs),
		distRow("the log file read with `cat` over SSH", r.fileLogs)}
	rows = append(rows,
		distRow("**rbn: `kubectl exec -- true`**", r.kubectlExec),
		distRow("rbn: exec -- true via client-go (apiserver → rbn-kubelet → SSH → podman)", r.clientExec),
		distRow("**floor: exec -- true via the bindings over SSH**", r.floorExec),
		distRow("kubectl get --raw /readyz (kubectl's own cost)", r.kubectlRaw))
	table(p, []string{"measure", "median", "p90", "min", "max", "runs"}, rows)
	if len(r.rbnLogs) > 0 && len(r.floorLogs) > 0 {
		p("Logs: %.1f MiB/s through rbn against %.1f MiB/s from podman directly (%s).",
			mibPerSec(r.logBytes, median(r.rbnLogs)), mibPerSec(r.logBytes, median(r.floorLogs)),
			ratioF(mibPerSec(r.logBytes, median(r.rbnLogs)), mibPerSec(r.logBytes, median(r.floorLogs))))
		if len(r.fileLogs) > 0 {
			p("The log file (%d MiB: podman's time and stream tag on each line) crosses the SSH connection alone in %s.",
				r.fileBytes>>20, secs(median(r.fileLogs)))
		}
	}
	if len(r.kubectlExec) > 0 {
		p("Exec: `kubectl exec -- true` takes %s, of which kubectl's process and an apiserver round trip are about %s;",
			ms(median(r.kubectlExec)), ms(median(r.kubectlRaw)))
		p("through the apiserver without kubectl %s; the bindings directly %s.", ms(median(r.clientExec)), ms(median(r.floorExec)))
	}
	p("")
}
