package framework

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// PauseKubeProxy stops the worker node's kube-proxy (SIGSTOP) until resume
// is called or the test ends: Services and EndpointSlice changes made
// meanwhile are not programmed, as on a kube-proxy too busy to keep up.
// The process is the one started with the worker's configuration,
// <State>/worker/kube-proxy.yaml (hack/worker.sh).
func (s *Stack) PauseKubeProxy(t testing.TB) (resume func()) {
	t.Helper()
	pid, err := kubeProxyPID(filepath.Join(s.State, "worker", "kube-proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("pause kube-proxy (pid %d): %v", pid, err)
	}
	resumed := false
	resume = func() {
		if resumed {
			return
		}
		resumed = true
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Errorf("resume kube-proxy (pid %d): %v", pid, err)
		}
	}
	t.Cleanup(resume)
	return resume
}

// kubeProxyPID finds the kube-proxy process started with --config=config.
func kubeProxyPID(config string) (int, error) {
	want := []byte("--config=" + config)
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, err
	}
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		if len(args) < 2 || filepath.Base(string(args[0])) != "kube-proxy" {
			continue
		}
		for _, a := range args[1:] {
			if bytes.Equal(a, want) {
				return strconv.Atoi(filepath.Base(filepath.Dir(f)))
			}
		}
	}
	return 0, fmt.Errorf("no kube-proxy runs with --config=%s: is the worker node up (hack/worker.sh)?", config)
}
