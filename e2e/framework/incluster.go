package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RBNNamespace is where manifests/ installs rbn (the in-cluster mode).
const RBNNamespace = "rbn-system"

// App labels (app.kubernetes.io/name) of rbn's Deployments in RBNNamespace.
const (
	KubeletApp  = "rbn-kubelet"
	ExtenderApp = "rbn-extender"
	ApproverApp = "rbn-approver"
)

// RBNPods lists the pods of one of rbn's Deployments (KubeletApp,
// ExtenderApp, ApproverApp) in the in-cluster mode.
func (s *Stack) RBNPods(ctx context.Context, app string) ([]corev1.Pod, error) {
	list, err := s.Client.CoreV1().Pods(RBNNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
	if err != nil {
		return nil, fmt.Errorf("pods of %s/%s: %w", RBNNamespace, app, err)
	}
	return list.Items, nil
}

// KubeletLogs returns what rbn-kubelet has logged: its log file when it
// runs as a local process, `kubectl logs` of every current pod of its
// Deployment in the in-cluster mode (each replica serves some nodes; a
// restarted pod's log starts afresh).
func (s *Stack) KubeletLogs(ctx context.Context) (string, error) {
	if !s.InCluster {
		b, err := os.ReadFile(s.KubeletLog())
		return string(b), err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return Run(ctx, []string{s.KubectlBin, "--kubeconfig=" + s.Kubeconfig, "-n", RBNNamespace, "logs",
		"-l", "app.kubernetes.io/name=" + KubeletApp, "--tail=-1"}, nil)
}

// ExtenderURL is where kube-scheduler reaches rbn-extender, as dev-up wrote
// it ($RBN_STATE/extender/url): http on loopback for the local process,
// https at its Service's ClusterIP in the in-cluster mode.
func (s *Stack) ExtenderURL() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.State, "extender", "url"))
	if err != nil {
		return "", fmt.Errorf("rbn-extender's URL (written by hack/dev-up.sh): %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ExtenderClient is an HTTP client for ExtenderURL: it trusts the stack's
// CA, which signs rbn-extender's serving certificate in the in-cluster mode.
func (s *Stack) ExtenderClient() (*http.Client, error) {
	pem, err := os.ReadFile(filepath.Join(s.State, "cluster", "pki", "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("the stack's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in the stack's CA file")
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}

// ExtenderGet is GET ExtenderURL+path with ExtenderClient.
func (s *Stack) ExtenderGet(t testing.TB, path string) (*http.Response, error) {
	t.Helper()
	url, err := s.ExtenderURL()
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.ExtenderClient()
	if err != nil {
		t.Fatal(err)
	}
	return c.Get(url + path)
}

// kubeletPodPID is the pid of the process of rbn-kubelet's one running pod.
func (s *Stack) kubeletPodPID() (int, error) {
	pids, err := s.RBNPIDs(KubeletApp)
	if err != nil {
		return 0, err
	}
	if len(pids) != 1 {
		return 0, fmt.Errorf("want one %s process, have %v", KubeletApp, pids)
	}
	return pids[0], nil
}

// RBNPIDs returns the pids of the processes of one of rbn's Deployments
// (KubeletApp, ExtenderApp) in the in-cluster mode: each running pod's
// container runs on this machine as a process named app, in the pod's
// cgroup (cgroupfs paths name the pod's UID).
func (s *Stack) RBNPIDs(app string) ([]int, error) {
	return s.rbnPIDs(app, func(corev1.Pod) bool { return true })
}

// RBNPodPID returns the pid of the process of rbn's pod named pod (of the
// Deployment app) in the in-cluster mode.
func (s *Stack) RBNPodPID(app, pod string) (int, error) {
	pids, err := s.rbnPIDs(app, func(p corev1.Pod) bool { return p.Name == pod })
	if err != nil {
		return 0, err
	}
	return pids[0], nil
}

// rbnPIDs returns the processes of the running pods of app that keep selects.
func (s *Stack) rbnPIDs(app string, keep func(corev1.Pod) bool) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := s.RBNPods(ctx, app)
	if err != nil {
		return nil, err
	}
	var uids []string
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && keep(p) {
			uids = append(uids, "pod"+string(p.UID))
		}
	}
	if len(uids) == 0 {
		return nil, fmt.Errorf("no running pod of %s/%s", RBNNamespace, app)
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != app {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(d, "cgroup"))
		if err != nil || !slices.ContainsFunc(uids, func(u string) bool { return strings.Contains(string(cg), u) }) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	if len(pids) != len(uids) {
		return nil, fmt.Errorf("%d running pods of %s/%s, %d processes named %s in their cgroups: %v", len(uids), RBNNamespace, app, len(pids), app, pids)
	}
	return pids, nil
}

// maxShownLogLines bounds what ShowKubeletLogs prints: a failing test's
// output must stay readable where only a part of it is kept (CI).
const maxShownLogLines = 200

// ShowKubeletLogs logs, when t has failed, what rbn-kubelet logged since
// since that concerns the test: the lines that contain match (the test's
// namespace) and every warning and error, so that a failure seen only in
// CI comes with what rbn did. It reads the log file of the local process,
// or every pod's current and previous container's log in the in-cluster
// mode (a replica killed by a test restarts, and what it logged before is
// the part that matters). At most the last maxShownLogLines lines are shown.
func (s *Stack) ShowKubeletLogs(t testing.TB, match string, since time.Time) {
	t.Helper()
	if !t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lines []string
	keep := func(from, text string) {
		for _, l := range strings.Split(text, "\n") {
			if logLineConcerns(l, match, since) {
				lines = append(lines, from+": "+l)
			}
		}
	}
	if !s.InCluster {
		b, err := os.ReadFile(s.KubeletLog())
		if err != nil {
			t.Logf("rbn-kubelet's log: %v", err)
		}
		keep("rbn-kubelet", string(b))
	} else {
		pods, err := s.RBNPods(ctx, KubeletApp)
		if err != nil {
			t.Logf("rbn-kubelet's logs: %v", err)
		}
		for _, p := range pods {
			for _, previous := range []bool{true, false} {
				argv := []string{s.KubectlBin, "--kubeconfig=" + s.Kubeconfig, "-n", RBNNamespace, "logs", p.Name,
					"--since-time=" + since.UTC().Format(time.RFC3339)}
				from := p.Name
				if previous {
					argv = append(argv, "--previous")
					from += " (previous)"
				}
				out, err := Run(ctx, argv, nil)
				if err != nil {
					continue // no previous container
				}
				keep(from, out)
			}
		}
	}
	if len(lines) > maxShownLogLines {
		t.Logf("rbn-kubelet since %s: %d lines about %s or warnings; the last %d:", since.Format(time.TimeOnly), len(lines), match, maxShownLogLines)
		lines = lines[len(lines)-maxShownLogLines:]
	} else {
		t.Logf("rbn-kubelet since %s: %d lines about %s or warnings:", since.Format(time.TimeOnly), len(lines), match)
	}
	for _, l := range lines {
		t.Log(l)
	}
}

// logLineConcerns says whether a line of rbn-kubelet's JSON log, written at
// or after since, mentions match or is a warning or an error; or is the
// start of a crash.
func logLineConcerns(line, match string, since time.Time) bool {
	var head struct {
		Time  time.Time `json:"time"`
		Level string    `json:"level"`
	}
	if json.Unmarshal([]byte(line), &head) != nil {
		// A crash is written by the runtime, not the logger.
		return strings.Contains(line, match) || strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")
	}
	if head.Time.Before(since) {
		return false
	}
	return strings.Contains(line, match) || head.Level == "WARN" || head.Level == "ERROR"
}
