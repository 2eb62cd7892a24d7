//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// stack is the local stack of package framework, which holds the helpers
// the end-to-end tests share with the benchmarks. A helper only some tests
// need is a method of stack in their file.
type stack struct{ *framework.Stack }

// newStack connects to the stack hack/test.sh brought up and described in
// the environment.
func newStack(t *testing.T) *stack {
	t.Helper()
	env, err := framework.EnvFromOS()
	if err != nil {
		t.Fatalf("%v: run the end-to-end tests with `make test-e2e`, which brings the stack up", err)
	}
	s, err := framework.Connect(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &stack{s}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitEvent waits until the pod has an event of reason whose message
// contains text.
func (s *stack) waitEvent(t *testing.T, ns, pod, reason, text string) {
	t.Helper()
	framework.Eventually(t, fmt.Sprintf("%s: a %s event with %q", pod, reason, text), 2*time.Minute, func() (bool, string) {
		events := s.Events(t, ns, "Pod", pod)
		if hasEvent(events, reason, text) {
			return true, ""
		}
		seen := make([]string, 0, len(events))
		for _, e := range events {
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "\n")
	})
}

// hostPathDir is a directory of the stack's hostPath allowlist for the
// test namespace ns (the build hosts share this machine's file system),
// removed at the end of the test.
func (s *stack) hostPathDir(t *testing.T, ns string) string {
	t.Helper()
	dir := filepath.Join(s.State, "hostpath", ns)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
