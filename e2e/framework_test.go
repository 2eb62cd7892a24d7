//go:build e2e

package e2e

import (
	"os"
	"testing"

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
