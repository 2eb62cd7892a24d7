//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// The kubelet API end to end, through the apiserver and the real kubectl:
// logs, exec, attach, port-forward, stats and metrics, authentication.

// runPod creates a pod in ns with the scheduling boilerplate and the given
// spec lines (indented two spaces, from restartPolicy on) and waits for
// phase. Its processes ignore SIGTERM (PID 1 in a container): a short grace
// period keeps the namespace's deletion quick.
func (s *stack) runPod(t *testing.T, ns, name, spec string, phase corev1.PodPhase) *corev1.Pod {
	t.Helper()
	s.Apply(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec:%s\n  terminationGracePeriodSeconds: 1\n%s", name, ns, framework.PodSpec, spec))
	return s.WaitPodPhase(t, ns, name, phase, 2*time.Minute)
}

// kubectlExit runs kubectl and returns its exit code, stdout and stderr.
func (s *stack) kubectlExit(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.KubectlCmd(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("kubectl %v: %v", args, err)
	return -1, "", ""
}

// output collects a process's output for a test to wait on.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
	eof bool
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output contains want (after skipping the first
// from bytes), and returns the index after it.
func (o *output) waitFor(t *testing.T, want string, from int, timeout time.Duration) int {
	t.Helper()
	end := -1
	framework.Eventually(t, fmt.Sprintf("output %q", want), timeout, func() (bool, string) {
		s := o.String()
		if from > len(s) {
			from = len(s)
		}
		if i := strings.Index(s[from:], want); i >= 0 {
			end = from + i + len(want)
			return true, ""
		}
		return false, strconv.Quote(tail(s, 300))
	})
	return end
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// A container that logs for several seconds, followed from its start:
// lines arrive as they are written and `kubectl logs -f` returns when the
// container exits.
func TestStreamsLogsFollowUntilExit(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.runPod(t, ns, "ticker", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: tick
      image: %s
      command: [sh, -c, 'for i in 1 2 3 4 5 6; do echo line $i; sleep 1; done']`, framework.TestImage), corev1.PodRunning)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := s.KubectlCmd(ctx, "-n", ns, "logs", "-f", "ticker")
	out := &output{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "line 1\n", 0, 20*time.Second)
	firstLine := time.Since(start)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubectl logs -f: %v\n%s", err, out.String())
	}
	returned := time.Since(start)
	want := "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n"
	if out.String() != want {
		t.Errorf("followed log %q, want %q", out.String(), want)
	}
	// Streamed, not buffered until the end: the first line came seconds
	// before the last.
	if returned-firstLine < 3*time.Second {
		t.Errorf("first line after %s, end after %s: the log was not streamed", firstLine, returned)
	}
	p := s.WaitPodPhase(t, ns, "ticker", corev1.PodSucceeded, 30*time.Second)
	finished := p.Status.ContainerStatuses[0].State.Terminated.FinishedAt.Time
	// kubectl returned because the container ended (FinishedAt has whole seconds).
	if lag := time.Since(finished) - (time.Since(start) - returned); lag > 4*time.Second {
		t.Errorf("kubectl logs -f returned %s after the container finished", lag)
	}
	t.Logf("first line after %s, follow returned after %s (container ran ~5s)", firstLine.Round(time.Millisecond), returned.Round(time.Millisecond))
}

var timestamped = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (.*)$`)

// Every kubectl logs flag on a completed pod, whose logs stay readable
// until it is deleted.
func TestStreamsLogsFlags(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.runPod(t, ns, "flags", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: a
      image: %[1]s
      command: [sh, -c, 'for i in 1 2 3 4 5; do echo a$i; sleep 1; done; echo a-err >&2']
    - name: b
      image: %[1]s
      command: [sh, -c, 'echo b1; echo b2']
    - name: tty
      image: %[1]s
      tty: true
      command: [sh, -c, 'echo tty line']`, framework.TestImage), corev1.PodSucceeded)
	logs := func(args ...string) string {
		t.Helper()
		return s.Kubectl(t, append([]string{"-n", ns, "logs", "flags"}, args...)...)
	}
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	all := "a1\na2\na3\na4\na5\na-err\n"
	check("-c a", logs("-c", "a"), all)
	check("--tail=2", logs("-c", "a", "--tail=2"), "a5\na-err\n")
	check("--tail=0", logs("-c", "a", "--tail=0"), "")
	check("--tail=100", logs("-c", "a", "--tail=100"), all)
	check("--limit-bytes=5", logs("-c", "a", "--limit-bytes=5"), "a1\na2")
	check("-c tty (no stream headers)", logs("-c", "tty"), "tty line\r\n")
	check("--since=1h", logs("-c", "a", "--since=1h"), all)

	stamped := strings.Split(strings.TrimSuffix(logs("-c", "a", "--timestamps"), "\n"), "\n")
	if len(stamped) != 6 {
		t.Fatalf("--timestamps: %d lines: %q", len(stamped), stamped)
	}
	var stamps []time.Time
	for i, l := range stamped {
		m := timestamped.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("--timestamps line %q is not '<RFC3339 UTC> <line>'", l)
		}
		if want := strings.Split(all, "\n")[i]; m[2] != want {
			t.Errorf("--timestamps line %d: %q, want %q", i, m[2], want)
		}
		ts, _ := time.Parse(time.RFC3339Nano, strings.Fields(l)[0])
		stamps = append(stamps, ts)
	}
	if !slices.IsSortedFunc(stamps, func(a, b time.Time) int { return a.Compare(b) }) || stamps[4].Sub(stamps[0]) < 3*time.Second {
		t.Errorf("--timestamps: times %v do not follow the 1 s cadence", stamps)
	}
	// Lines are 1 s apart: a3's second excludes a2 and keeps a3 on.
	since := stamps[2].Truncate(time.Second).Format(time.RFC3339)
	check("--since-time="+since, logs("-c", "a", "--since-time="+since), "a3\na4\na5\na-err\n")
	// sinceTime has whole seconds on the wire: the second after the last
	// line leaves nothing.
	after := stamps[5].Truncate(time.Second).Add(time.Second).Format(time.RFC3339)
	check("--since-time="+after+" (after the last line)", logs("-c", "a", "--since-time="+after), "")

	allContainers := logs("--all-containers", "--prefix")
	for _, want := range []string{"[pod/flags/a] a1\n", "[pod/flags/a] a-err\n", "[pod/flags/b] b1\n", "[pod/flags/b] b2\n", "[pod/flags/tty] tty line"} {
		if !strings.Contains(allContainers, want) {
			t.Errorf("--all-containers --prefix lacks %q: %q", want, allContainers)
		}
	}
	code, _, stderr := s.kubectlExit(t, nil, "-n", ns, "logs", "flags", "-c", "a", "--previous")
	if code == 0 || !strings.Contains(stderr, "previous terminated container") {
		t.Errorf("--previous without a previous run: exit %d, %q", code, stderr)
	}
	code, _, stderr = s.kubectlExit(t, nil, "-n", ns, "logs", "flags", "-c", "nope")
	if code == 0 || !strings.Contains(stderr, "nope") {
		t.Errorf("unknown container: exit %d, %q", code, stderr)
	}

	// --previous: the run before a restart.
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: restarter, namespace: %s}
spec:%s
  terminationGracePeriodSeconds: 1
  restartPolicy: OnFailure
  containers:
    - name: r
      image: %s
      command: [sh, -c, 'if [ -f /data/ran ]; then echo second run; sleep 3600; else touch /data/ran; echo first run; exit 1; fi']
      volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]`, ns, framework.PodSpec, framework.TestImage))
	framework.Eventually(t, "restarter running again after one failure", 90*time.Second, func() (bool, string) {
		p := s.Pod(t, ns, "restarter")
		if len(p.Status.ContainerStatuses) == 0 {
			return false, framework.DescribeStatus(p)
		}
		cs := p.Status.ContainerStatuses[0]
		return cs.RestartCount >= 1 && cs.State.Running != nil, framework.DescribeStatus(p)
	})
	check("--previous", s.Kubectl(t, "-n", ns, "logs", "restarter", "--previous"), "first run\n")
	check("current run", s.Kubectl(t, "-n", ns, "logs", "restarter"), "second run\n")
}

// Across a restart of rbn-kubelet each node keeps the kubelet address and
// port its Node advertises (the apiserver is never pointed at another
// node's port),
// and a pod that had ended still shows its logs, timestamps as kubelet's.
func TestStreamsNodePortsSurviveKubeletRestart(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	p := s.runPod(t, ns, "done", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: main
      image: %s
      command: [sh, -c, 'echo finished work']`, framework.TestImage), corev1.PodSucceeded)
	if got := s.Kubectl(t, "-n", ns, "logs", "done"); got != "finished work\n" {
		t.Fatalf("logs before the restart: %q", got)
	}
	// Where each node is advertised: the replica's address and the node's
	// port, or (nodeServices) the node's Service and 10250.
	endpoints := map[string]string{}
	advertised := func(n *corev1.Node) string {
		return fmt.Sprintf("%v:%d", internalIPs(n), n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
	for i := 1; i <= 2; i++ {
		n, _ := s.Node(t, s.Host(t, i)["NAME"])
		endpoints[n.Name] = advertised(n)
	}
	s.KubeletSh(t, "restart")
	s.WaitNodeReady(t, p.Spec.NodeName, corev1.ConditionTrue, nil, time.Minute)
	framework.Eventually(t, "logs of the ended pod after the restart", time.Minute, func() (bool, string) {
		code, out, errs := s.kubectlExit(t, nil, "-n", ns, "logs", "done")
		return code == 0 && out == "finished work\n", out + errs
	})
	if got := s.Kubectl(t, "-n", ns, "logs", "done", "--timestamps", "--tail=1"); !timestamped.MatchString(strings.TrimSpace(got)) {
		t.Errorf("logs --timestamps after the restart: %q", got)
	}
	for name, was := range endpoints {
		n, _ := s.Node(t, name)
		if got := advertised(n); got != was {
			t.Errorf("node %s moved from kubelet endpoint %s to %s across the restart", name, was, got)
		}
	}
}

// A 50 MiB log read whole: exact byte count and content.
func TestStreamsLargeLogReadWhole(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	const size int64 = 50 << 20
	line := strings.Repeat("0123456789", 10)[:99] + "\n" // 100 bytes
	s.runPod(t, ns, "biglog", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: big
      image: %s
      command: [sh, -c, 'yes %s | head -c %d']`, framework.TestImage, strings.TrimSuffix(line, "\n"), size), corev1.PodSucceeded)

	// With -f too: podman 4 ends a followed log of an exited container
	// early, and rbn must read the rest.
	for _, follow := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow=%t", follow), func(t *testing.T) {
			readWholeLog(t, s, ns, "biglog", follow, size, line)
		})
	}
}

func readWholeLog(t *testing.T, s *stack, ns, name string, follow bool, size int64, line string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"-n", ns, "logs", name}
	if follow {
		args = append(args, "-f")
	}
	cmd := s.KubectlCmd(ctx, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var n, lines, bad int64
	br := bufio.NewReaderSize(stdout, 1<<20)
	for {
		l, err := br.ReadString('\n')
		n += int64(len(l))
		if l != "" {
			lines++
			if l != line {
				bad++
			}
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubectl logs: %v: %s", err, stderr.String())
	}
	d := time.Since(start)
	if n != size || lines != size/100 || bad != 0 {
		t.Errorf("read %d bytes in %d lines (%d wrong), want %d bytes in %d lines", n, lines, bad, size, size/100)
	}
	t.Logf("%d MiB log read whole in %s (%.1f MiB/s)", size>>20, d.Round(time.Millisecond), float64(n)/(1<<20)/d.Seconds())
}

// Exec without a terminal: exit codes, stdout and stderr apart, stdin
// (1 MiB of random bytes, which holds podman's default detach sequence
// ctrl-p ctrl-q many times over) and the round trip.
func TestStreamsExec(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.runPod(t, ns, "sleeper", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: main
      image: %s
      command: [sleep, "3600"]`, framework.TestImage), corev1.PodRunning)

	code, _, stderr := s.kubectlExit(t, nil, "-n", ns, "exec", "sleeper", "--", "sh", "-c", "exit 3")
	if code != 3 {
		t.Errorf("exec 'exit 3': kubectl exited %d (%s), want 3", code, stderr)
	}
	code, stdout, stderr := s.kubectlExit(t, nil, "-n", ns, "exec", "sleeper", "--", "sh", "-c", "echo out; echo err >&2")
	if code != 0 || stdout != "out\n" || !strings.Contains(stderr, "err\n") || strings.Contains(stdout, "err") {
		t.Errorf("stdout/stderr: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, _, stderr = s.kubectlExit(t, nil, "-n", ns, "exec", "sleeper", "--", "/no/such/binary")
	if code == 0 {
		t.Errorf("exec of a missing binary succeeded: %s", stderr)
	}

	payload := make([]byte, 1<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(payload)
	start := time.Now()
	code, stdout, stderr = s.kubectlExit(t, payload, "-n", ns, "exec", "-i", "sleeper", "--", "sh", "-c", "md5sum; echo done")
	if want := hex.EncodeToString(sum[:]) + "  -\ndone\n"; code != 0 || stdout != want {
		t.Errorf("exec -i of 1 MiB: exit %d stdout %q want %q (%s)", code, stdout, want, stderr)
	}
	t.Logf("1 MiB through exec stdin in %s", time.Since(start).Round(time.Millisecond))

	var rtts []time.Duration
	for range 10 {
		start := time.Now()
		if code, out, errs := s.kubectlExit(t, nil, "-n", ns, "exec", "sleeper", "--", "echo", "pong"); code != 0 || out != "pong\n" {
			t.Fatalf("exec echo: %d %q %q", code, out, errs)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	t.Logf("kubectl exec round trip (kubectl start to exit): median %s, min %s, max %s",
		rtts[len(rtts)/2].Round(time.Millisecond), rtts[0].Round(time.Millisecond), rtts[len(rtts)-1].Round(time.Millisecond))
}

// terminal runs kubectl on a pseudo-terminal, as a user would.
type terminal struct {
	t   *testing.T
	cmd *exec.Cmd
	pty *os.File
	out *output
}

func (s *stack) terminal(t *testing.T, rows, cols uint16, args ...string) *terminal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := s.KubectlCmd(ctx, args...)
	// pty makes kubectl a session leader (setsid), which leads its own
	// process group too: setpgid would fail after setsid.
	cmd.SysProcAttr.Setpgid = false
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, cmd: cmd, pty: f, out: &output{}}
	go func() { _, _ = io.Copy(term.out, f) }()
	t.Cleanup(func() { f.Close() })
	return term
}

func (term *terminal) send(s string) {
	term.t.Helper()
	if _, err := term.pty.WriteString(s); err != nil {
		term.t.Fatal(err)
	}
}

// size resizes the terminal: the kernel signals kubectl (SIGWINCH), which
// sends the new size along.
func (term *terminal) size(rows, cols uint16) {
	term.t.Helper()
	if err := pty.Setsize(term.pty, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		term.t.Fatal(err)
	}
}

// expectSize asks the shell for its terminal size until it reports rows x cols.
func (term *terminal) expectSize(rows, cols uint16, from int) int {
	term.t.Helper()
	want := fmt.Sprintf("%d %d", rows, cols)
	end := -1
	framework.Eventually(term.t, "terminal size "+want+" inside the container", 20*time.Second, func() (bool, string) {
		s := term.out.String()
		if i := strings.Index(s[min(from, len(s)):], want+"\r\n"); i >= 0 {
			end = from + i + len(want)
			return true, ""
		}
		term.send("stty size\r")
		time.Sleep(300 * time.Millisecond)
		return false, strconv.Quote(tail(term.out.String(), 200))
	})
	return end
}

func (term *terminal) exitCode() int {
	term.t.Helper()
	err := term.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	term.t.Fatalf("kubectl: %v\n%s", err, term.out.String())
	return -1
}

// `kubectl exec -it` on a real pseudo-terminal: the shell starts at the
// client's size, sees a window resize, and the exit code comes back.
func TestStreamsExecTTYResize(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.runPod(t, ns, "shell", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: main
      image: %s
      command: [sleep, "3600"]`, framework.TestImage), corev1.PodRunning)
	term := s.terminal(t, 24, 80, "-n", ns, "exec", "-it", "shell", "--", "sh")
	pos := term.expectSize(24, 80, 0)
	term.size(40, 132)
	pos = term.expectSize(40, 132, pos)
	term.send("tty; exit 3\r")
	term.out.waitFor(t, "/dev/pts/", pos, 10*time.Second)
	if code := term.exitCode(); code != 3 {
		t.Errorf("kubectl exec -it exited %d after 'exit 3', want 3:\n%s", code, term.out.String())
	}
}

// kubectl attach: to a reading process's stdin and output, and on a
// terminal with resize.
func TestStreamsAttach(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.runPod(t, ns, "reader", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: main
      image: %[1]s
      stdin: true
      command: [sh, -c, 'echo ready; while read line; do echo "got:$line"; done']
    - name: term
      image: %[1]s
      stdin: true
      tty: true
      command: [sh]`, framework.TestImage), corev1.PodRunning)

	out, stdin := s.attachEcho(t, ns, "reader", "main", 30*time.Second)
	pos := out.waitFor(t, "got:hello", 0, time.Second)
	_, _ = io.WriteString(stdin, "second line\n")
	out.waitFor(t, "got:second line\n", pos, 10*time.Second)

	term := s.terminal(t, 30, 100, "-n", ns, "attach", "-it", "reader", "-c", "term")
	pos = term.expectSize(30, 100, 0)
	term.size(50, 150)
	term.expectSize(50, 150, pos)
}

// attachEcho attaches kubectl to the stdin and output of a container that
// echoes each line it reads as "got:<line>" (until the test ends), and waits
// until "hello" came back.
func (s *stack) attachEcho(t *testing.T, ns, pod, container string, timeout time.Duration) (*output, io.Writer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := s.KubectlCmd(ctx, "-n", ns, "attach", "-i", pod, "-c", container)
	out := &output{}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	// Whatever arrives before the streams are up is lost, as with kubelet:
	// written again at every poll until it comes back.
	framework.Eventually(t, "attached process echoing input", timeout, func() (bool, string) {
		if strings.Contains(out.String(), "got:hello") {
			return true, ""
		}
		_, _ = io.WriteString(stdin, "hello\n")
		return false, strconv.Quote(out.String())
	})
	return out, stdin
}

// kubectl port-forward carries data both ways to a port inside the pod
// (an echo server), over the node's SSH connection.
func TestStreamsPortForward(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.runPod(t, ns, "echo", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: main
      image: %s
      command: [nc, -ll, -p, "8080", -e, cat]`, framework.TestImage), corev1.PodRunning)
	local := s.portForward(t, ns, "echo", 8080)
	for i, size := range []int{1, 4 << 20} {
		start := time.Now()
		echoRoundTrip(t, local, size)
		d := time.Since(start)
		t.Logf("connection %d: %d bytes each way in %s (%.1f MiB/s each way)", i+1, size, d.Round(time.Millisecond), float64(size)/(1<<20)/d.Seconds())
	}
}

// portForward starts kubectl port-forward to a pod port and returns the
// local address.
func (s *stack) portForward(t *testing.T, ns, pod string, port int) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := s.KubectlCmd(ctx, "-n", ns, "port-forward", "pod/"+pod, fmt.Sprintf(":%d", port), "--address=127.0.0.1")
	out := &output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> ` + strconv.Itoa(port))
	var local string
	framework.Eventually(t, "kubectl port-forward listening", 30*time.Second, func() (bool, string) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			local = "127.0.0.1:" + m[1]
			return true, ""
		}
		select {
		case err := <-exited:
			t.Fatalf("kubectl port-forward exited: %v\n%s", err, out.String())
		default:
		}
		return false, out.String()
	})
	t.Cleanup(func() {
		if strings.Contains(out.String(), "error") || strings.Contains(out.String(), "lost connection") {
			t.Logf("kubectl port-forward said:\n%s", out.String())
		}
	})
	return local
}

// echoRoundTrip sends size random bytes to an echo server while reading
// them back, half-closes, and checks every byte came back.
func echoRoundTrip(t *testing.T, addr string, size int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read back: %v after %d bytes", err, len(got))
	}
	if err := <-sent; err != nil {
		t.Fatalf("send: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes, want the %d sent", len(got), size)
	}
}

// Sessions idle longer than virtual-kubelet's 30 s default (and than the
// port-forward idle timeout it passes swapped with the creation timeout)
// stay up: the idle timeout is kubelet's 4 h.
func TestStreamsIdleSessionsOutlive30s(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 35 s")
	}
	s := newStack(t)
	ns := s.Namespace(t)
	s.runPod(t, ns, "idle", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: main
      image: %s
      command: [nc, -ll, -p, "8080", -e, cat]`, framework.TestImage), corev1.PodRunning)
	local := s.portForward(t, ns, "idle", 8080)
	echoRoundTrip(t, local, 1024)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.KubectlCmd(ctx, "-n", ns, "exec", "-i", "idle", "--", "cat")
	out := &output{}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(stdin, "before\n")
	out.waitFor(t, "before\n", 0, 20*time.Second)

	time.Sleep(35 * time.Second) // the idle period under test

	_, _ = io.WriteString(stdin, "after 35s idle\n")
	out.waitFor(t, "after 35s idle\n", 0, 10*time.Second)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("exec session after idling: %v\n%s", err, out.String())
	}
	echoRoundTrip(t, local, 1024) // the same kubectl port-forward, still connected
}

// /stats/summary and /metrics/resource of each node through the apiserver's
// node proxy, as metrics-server reads them (metrics-server is not installed
// here, so `kubectl top` cannot run: these are the endpoints it would use).
// Every node shares one IP: the right node answering proves the per-node
// port routing.
func TestStreamsNodeStatsAndMetrics(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	p := s.runPod(t, ns, "burner", fmt.Sprintf(`  restartPolicy: Never
  containers:
    - name: burn
      image: %s
      command: [sh, -c, 'while :; do :; done']`, framework.TestImage), corev1.PodRunning)
	busy := p.Spec.NodeName

	summary := func(node string) *statsv1alpha1.Summary {
		t.Helper()
		start := time.Now()
		raw := s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/stats/summary")
		t.Logf("GET /stats/summary of %s: %s", node, time.Since(start).Round(time.Millisecond))
		sum := &statsv1alpha1.Summary{}
		if err := json.Unmarshal([]byte(raw), sum); err != nil {
			t.Fatalf("summary of %s: %v\n%s", node, err, raw)
		}
		return sum
	}
	findPod := func(sum *statsv1alpha1.Summary) *statsv1alpha1.PodStats {
		for i := range sum.Pods {
			if sum.Pods[i].PodRef.Namespace == ns && sum.Pods[i].PodRef.Name == "burner" {
				return &sum.Pods[i]
			}
		}
		return nil
	}
	for i := 1; i <= 2; i++ {
		node := s.Host(t, i)["NAME"]
		sum := summary(node)
		n := sum.Node
		if n.NodeName != node {
			t.Errorf("summary asked of %s answered by %s", node, n.NodeName)
		}
		if n.CPU == nil || n.CPU.UsageCoreNanoSeconds == nil || *n.CPU.UsageCoreNanoSeconds == 0 ||
			n.Memory == nil || n.Memory.WorkingSetBytes == nil || *n.Memory.WorkingSetBytes == 0 ||
			n.Fs == nil || n.Fs.CapacityBytes == nil || *n.Fs.CapacityBytes == 0 || n.StartTime.IsZero() {
			t.Errorf("%s: node figures missing: %+v", node, n)
		} else {
			t.Logf("%s: cpu %.1f core-s since boot, working set %d MiB, podman store %d/%d GiB used",
				node, float64(*n.CPU.UsageCoreNanoSeconds)/1e9, *n.Memory.WorkingSetBytes>>20, *n.Fs.UsedBytes>>30, *n.Fs.CapacityBytes>>30)
		}
		// Available as the kubelet counts it (f_bavail), not the free
		// space podman reports, which has root's reserve in it (on these
		// machines, many GiB): within what the machine writes meanwhile.
		if avail, free := s.storeSpace(t, i); n.Fs != nil && n.Fs.AvailableBytes != nil {
			got := *n.Fs.AvailableBytes
			if d := int64(got) - int64(avail); d > 1<<30 || d < -1<<30 {
				t.Errorf("%s: podman store %d MiB available, the host's statfs says %d MiB available (%d MiB free)", node, got>>20, avail>>20, free>>20)
			}
		}
		if ps := findPod(sum); (ps != nil) != (node == busy) {
			t.Errorf("%s: burner in summary: %v, but it runs on %s", node, ps != nil, busy)
		}
	}

	// The busy loop uses about a core: after a while the counters show it.
	var ps *statsv1alpha1.PodStats
	framework.Eventually(t, "burner's container to have used 1 CPU second", time.Minute, func() (bool, string) {
		ps = findPod(summary(busy))
		if ps == nil || len(ps.Containers) != 1 || ps.Containers[0].CPU == nil {
			return false, fmt.Sprintf("%+v", ps)
		}
		used := *ps.Containers[0].CPU.UsageCoreNanoSeconds
		return used >= 1e9, fmt.Sprintf("%d ns", used)
	})
	c := ps.Containers[0]
	if c.Name != "burn" || c.Memory == nil || *c.Memory.WorkingSetBytes == 0 || ps.CPU == nil || *ps.CPU.UsageCoreNanoSeconds < *c.CPU.UsageCoreNanoSeconds {
		t.Errorf("burner stats: %+v", ps)
	}
	// Readings apart in time give rates (how much of a core the loop gets
	// depends on what else the machine runs); a host's reading is renewed
	// every 10 s while it is asked for.
	framework.Eventually(t, "burner's CPU rate", 30*time.Second, func() (bool, string) {
		ps := findPod(summary(busy))
		if ps == nil || ps.Containers[0].CPU.UsageNanoCores == nil || *ps.Containers[0].CPU.UsageNanoCores == 0 {
			return false, fmt.Sprintf("%+v", ps)
		}
		t.Logf("burner uses %.2f cores", float64(*ps.Containers[0].CPU.UsageNanoCores)/1e9)
		return true, ""
	})
	// The node's rate comes from the host sampler's last two readings.
	framework.Eventually(t, "the node's CPU rate", 20*time.Second, func() (bool, string) {
		n := summary(busy).Node.CPU
		if n == nil || n.UsageNanoCores == nil || *n.UsageNanoCores == 0 {
			return false, fmt.Sprintf("%+v", n)
		}
		t.Logf("%s uses %.2f cores", busy, float64(*n.UsageNanoCores)/1e9)
		return true, ""
	})

	start := time.Now()
	metrics := s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+busy+"/proxy/metrics/resource")
	t.Logf("GET /metrics/resource of %s: %s", busy, time.Since(start).Round(time.Millisecond))
	value := func(series string) float64 {
		t.Helper()
		for _, l := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(l, series+" ") {
				v, err := strconv.ParseFloat(strings.Fields(l)[1], 64)
				if err != nil {
					t.Fatalf("%s: %v", l, err)
				}
				return v
			}
		}
		t.Errorf("no series %s in\n%s", series, metrics)
		return 0
	}
	labels := fmt.Sprintf(`{container="burn",namespace="%s",pod="burner"}`, ns)
	if v := value("container_cpu_usage_seconds_total" + labels); v < 1 {
		t.Errorf("container_cpu_usage_seconds_total %v", v)
	}
	if v := value("container_memory_working_set_bytes" + labels); v <= 0 {
		t.Errorf("container_memory_working_set_bytes %v", v)
	}
	if v := value(fmt.Sprintf(`pod_cpu_usage_seconds_total{namespace="%s",pod="burner"}`, ns)); v < 1 {
		t.Errorf("pod_cpu_usage_seconds_total %v", v)
	}
	if v := value("container_start_time_seconds" + labels); time.Since(time.Unix(int64(v), 0)) > 10*time.Minute {
		t.Errorf("container_start_time_seconds %v", v)
	}
	if value("node_cpu_usage_seconds_total") <= 0 || value("node_memory_working_set_bytes") <= 0 || value("resource_scrape_error") != 0 {
		t.Errorf("node metrics:\n%s", metrics)
	}
	for _, typ := range []string{"# TYPE container_cpu_usage_seconds_total counter", "# TYPE node_memory_working_set_bytes gauge"} {
		if !strings.Contains(metrics, typ) {
			t.Errorf("missing %q", typ)
		}
	}

	// /metrics/cadvisor and /metrics, as Prometheus's kubelet scrape reads
	// them: cAdvisor's and kubelet's series, with the labels the
	// kubernetes-mixin dashboards select on (container, image, namespace, pod).
	cadvisor := s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+busy+"/proxy/metrics/cadvisor")
	burner := []string{`container="burn"`, `image="` + framework.TestImage + `"`, `namespace="` + ns + `"`, `pod="burner"`}
	if v, ok := promSample(t, cadvisor, "container_cpu_usage_seconds_total", append(burner, `cpu="total"`)...); !ok || v < 1 {
		t.Errorf("/metrics/cadvisor: container_cpu_usage_seconds_total of burner %v (found %v)\n%s", v, ok, cadvisor)
	}
	if v, ok := promSample(t, cadvisor, "container_memory_working_set_bytes", burner...); !ok || v <= 0 {
		t.Errorf("/metrics/cadvisor: container_memory_working_set_bytes of burner %v (found %v)", v, ok)
	}
	if _, ok := promSample(t, cadvisor, "container_network_receive_bytes_total", `pod="burner"`, `interface="eth0"`); !ok {
		t.Errorf("/metrics/cadvisor: no container_network_receive_bytes_total for burner")
	}
	if v, ok := promSample(t, cadvisor, "machine_cpu_cores"); !ok || v < 1 {
		t.Errorf("/metrics/cadvisor: machine_cpu_cores %v (found %v)", v, ok)
	}
	kubelet := s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+busy+"/proxy/metrics")
	if v, ok := promSample(t, kubelet, "kubelet_node_name", `node="`+busy+`"`); !ok || v != 1 {
		t.Errorf("/metrics: kubelet_node_name{node=%q} %v (found %v)\n%s", busy, v, ok, kubelet)
	}
	if v, ok := promSample(t, kubelet, "kubelet_running_pods"); !ok || v < 1 {
		t.Errorf("/metrics: kubelet_running_pods %v (found %v)", v, ok)
	}
	if v, ok := promSample(t, kubelet, "kubelet_running_containers", `container_state="running"`); !ok || v < 1 {
		t.Errorf("/metrics: kubelet_running_containers{container_state=running} %v (found %v)", v, ok)
	}
	// burner started on this node, served by the same replica since.
	if v, ok := promSample(t, kubelet, "kubelet_pod_worker_duration_seconds_count", `operation_type="create"`); !ok || v < 1 {
		t.Errorf("/metrics: kubelet_pod_worker_duration_seconds_count{operation_type=create} %v (found %v), want burner's first sync at least", v, ok)
	}
	if v, ok := promSample(t, kubelet, "kubelet_runtime_operations_total", `operation_type="container_create"`); !ok || v < 1 {
		t.Errorf("/metrics: kubelet_runtime_operations_total{operation_type=container_create} %v (found %v), want burner's at least", v, ok)
	}
	starts, ok := promSample(t, kubelet, "kubelet_pod_start_duration_seconds_count")
	if !ok || starts < 1 {
		t.Errorf("/metrics: kubelet_pod_start_duration_seconds_count %v (found %v), want burner's start at least", starts, ok)
	}
	if s.InCluster {
		// rbn's own split of the same starts, on its replicas' metrics
		// port: every start counted in each stage, the stages adding up to
		// the whole (no pod of this node starts meanwhile).
		took, _ := promSample(t, kubelet, "kubelet_pod_start_duration_seconds_sum")
		own := s.kubeletMetrics(t)
		var stages float64
		node := fmt.Sprintf("node=%q", busy)
		for _, stage := range []string{"config", "sandbox", "images", "containers"} {
			label := fmt.Sprintf("stage=%q", stage)
			if n := metricSum(t, own, "rbn_pod_start_stage_duration_seconds_count", node, label); n != starts {
				t.Errorf("rbn_pod_start_stage_duration_seconds_count{%s,%s} = %v, want the node's %v starts", node, label, n, starts)
			}
			sum := metricSum(t, own, "rbn_pod_start_stage_duration_seconds_sum", node, label)
			t.Logf("%s: %s stage %.3f s in %v starts", busy, stage, sum, starts)
			stages += sum
		}
		if math.Abs(stages-took) > 1e-3 {
			t.Errorf("the start stages of %s add up to %.6f s, its kubelet_pod_start_duration_seconds_sum is %.6f s", busy, stages, took)
		}
		// burner's statuses (ContainerCreating, Running) were written.
		n := metricSum(t, own, "rbn_pod_status_update_latency_seconds_count", node)
		sum := metricSum(t, own, "rbn_pod_status_update_latency_seconds_sum", node)
		if n < 1 {
			t.Errorf("rbn_pod_status_update_latency_seconds_count{%s} = %v, want burner's status writes", node, n)
		} else {
			t.Logf("%s: %v status writes, %.1f ms from change to write on average", busy, n, 1000*sum/n)
		}
	}
	running := &corev1.PodList{}
	raw := s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+busy+"/proxy/runningpods/")
	if err := json.Unmarshal([]byte(raw), running); err != nil {
		t.Fatalf("/runningpods/: %v\n%s", err, raw)
	}
	found := slices.ContainsFunc(running.Items, func(p corev1.Pod) bool {
		return p.Namespace == ns && p.Name == "burner" && len(p.Spec.Containers) == 1 && p.Spec.Containers[0].Name == "burn"
	})
	if !found {
		t.Errorf("/runningpods/ of %s lacks burner with its container burn:\n%s", busy, raw)
	}
}

// promSample is the value of the first sample of the series name in a
// scrape's text whose labels contain every one of want (label pairs).
func promSample(t testing.TB, text, name string, want ...string) (float64, bool) {
	t.Helper()
	v, ok, err := framework.MetricSample(text, name, want...)
	if err != nil {
		t.Fatal(err)
	}
	return v, ok
}

// /metrics/probes of a node through the apiserver's node proxy, as
// Prometheus's kubelet scrape reads it: a pod's httpGet readiness probe,
// every second, counted in prober_probe_total as kubelet counts it, on its
// node only, with its durations; its series go with the pod.
func TestStreamsNodeProbeMetrics(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	p := s.runPod(t, ns, "probed", fmt.Sprintf(`  containers:
    - name: web
      image: %s
      command: [sh, -c, "mkdir -p /www; echo ok >/www/ready; exec httpd -f -p 8080 -h /www"]
      ports: [{name: http, containerPort: 8080}]
      readinessProbe:
        httpGet: {path: /ready, port: http}
        periodSeconds: 1`, framework.TestImage), corev1.PodRunning)
	node := p.Spec.NodeName
	scrape := func(node string) string {
		t.Helper()
		return s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics/probes")
	}
	series := []string{`container="web"`, `namespace="` + ns + `"`, `pod="probed"`, `pod_uid="` + string(p.UID) + `"`,
		`probe_type="Readiness"`, `result="successful"`}
	var first, failedFirst float64
	framework.Eventually(t, "a successful readiness attempt of probed counted", time.Minute, func() (bool, string) {
		text := scrape(node)
		v, ok := promSample(t, text, "prober_probe_total", series...)
		// The first attempt may come before httpd listens (kubelet's does
		// too, with no initial delay): counted as failed.
		first = v
		failedFirst, _ = promSample(t, text, "prober_probe_total", `pod="probed"`, `result="failed"`)
		return ok && v >= 1, text
	})
	// Period 1 s: the next scrapes see more.
	framework.Eventually(t, "probed's successful readiness count to grow between scrapes", 30*time.Second, func() (bool, string) {
		text := scrape(node)
		v, ok := promSample(t, text, "prober_probe_total", series...)
		return ok && v > first, fmt.Sprintf("%v (found %v), first scrape %v:\n%s", v, ok, first, text)
	})
	text := scrape(node)
	if !strings.Contains(text, "# TYPE prober_probe_total counter") || !strings.Contains(text, "# TYPE prober_probe_duration_seconds histogram") {
		t.Errorf("/metrics/probes of %s: want the counter and the histogram:\n%s", node, text)
	}
	if v, ok := promSample(t, text, "prober_probe_duration_seconds_count", `container="web"`, `pod="probed"`, `probe_type="Readiness"`); !ok || v < 1 {
		t.Errorf("/metrics/probes of %s: prober_probe_duration_seconds_count of probed %v (found %v)", node, v, ok)
	}
	if v, _ := promSample(t, text, "prober_probe_total", `pod="probed"`, `result="failed"`); v != failedFirst {
		t.Errorf("/metrics/probes of %s: failed attempts of a probe that succeeds once httpd serves (%v failed before the first success):\n%s", node, failedFirst, text)
	}
	for i := 1; i <= 2; i++ {
		if other := s.Host(t, i)["NAME"]; other != node {
			if text := scrape(other); strings.Contains(text, `pod="probed"`) {
				t.Errorf("/metrics/probes of %s, which does not run probed, has its series:\n%s", other, text)
			}
		}
	}
	s.Kubectl(t, "-n", ns, "delete", "pod", "probed", "--wait=true", "--timeout=90s")
	if text := scrape(node); strings.Contains(text, `pod="probed"`) {
		t.Errorf("/metrics/probes of %s keeps the series of the deleted pod probed:\n%s", node, text)
	}
}

// The kubelet API refuses callers it cannot authenticate (401) and those
// the apiserver does not authorize for the node (403), as kubelet does;
// a token with nodes/stats gets through.
func TestStreamsKubeletAPIAuth(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	name := s.Host(t, 1)["NAME"]
	n, ok := s.Node(t, name)
	if !ok {
		t.Fatalf("node %s missing", name)
	}
	base := "https://" + framework.NodeKubeletAddress(n)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(framework.ReadFile(t, filepath.Join(s.State, "cluster", "pki", "ca.crt")))) {
		t.Fatal("no cluster CA")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	call := func(method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The serving certificate verifies with the cluster CA (above), for the node's address.
	if code, body := call("GET", "/healthz", ""); code != 200 || body != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}
	for _, r := range [][2]string{
		{"GET", "/stats/summary"}, {"GET", "/metrics/resource"}, {"GET", "/pods"},
		{"POST", "/exec/" + ns + "/any/main?command=id&output=1"},
		{"GET", "/containerLogs/" + ns + "/any/main"},
		{"POST", "/portForward/" + ns + "/any"},
	} {
		if code, body := call(r[0], r[1], ""); code != http.StatusUnauthorized {
			t.Errorf("anonymous %s %s: %d %q, want 401", r[0], r[1], code, body)
		}
		if code, _ := call(r[0], r[1], "not-a-token"); code != http.StatusUnauthorized {
			t.Errorf("bad token %s %s: %d, want 401", r[0], r[1], code)
		}
	}
	s.Kubectl(t, "-n", ns, "create", "serviceaccount", "nobody")
	nobody := strings.TrimSpace(s.Kubectl(t, "-n", ns, "create", "token", "nobody"))
	scraper := s.scraperToken(t, ns)
	if code, body := call("GET", "/stats/summary", nobody); code != http.StatusForbidden || !strings.Contains(body, "nobody") {
		t.Errorf("token without RBAC: %d %q, want 403", code, body)
	}
	if code, body := call("POST", "/exec/"+ns+"/any/main?command=id&output=1", nobody); code != http.StatusForbidden {
		t.Errorf("token without RBAC, exec: %d %q, want 403", code, body)
	}
	if code, body := call("GET", "/metrics/resource", scraper); code != 200 || !strings.Contains(body, "node_cpu_usage_seconds_total") {
		t.Errorf("token with nodes/metrics: %d %q", code, tail(body, 200))
	}
	if code, _ := call("GET", "/stats/summary", scraper); code != 200 {
		t.Errorf("token with nodes/stats: %d", code)
	}
	if code, _ := call("GET", "/pods", scraper); code != 200 {
		t.Errorf("token with get nodes/proxy, /pods: %d", code)
	}
	// get on nodes/proxy runs no code: exec, attach and port-forward need
	// create, also as the GET a WebSocket upgrade is.
	for _, r := range [][2]string{
		{"POST", "/exec/" + ns + "/any/main?command=id&output=1"},
		{"GET", "/exec/" + ns + "/any/main?command=id&output=1"},
		{"GET", "/attach/" + ns + "/any/main?output=1"},
		{"GET", "/portForward/" + ns + "/any"},
	} {
		if code, body := call(r[0], r[1], scraper); code != http.StatusForbidden || !strings.Contains(body, "create") {
			t.Errorf("scraper token (get nodes/proxy), %s %s: %d %q, want 403 naming create", r[0], r[1], code, tail(body, 200))
		}
	}
}
