// Package testwait waits on conditions in unit tests: with a deadline,
// never a sleep standing in for one.
package testwait

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Timeout bounds every wait: far beyond what a passing test needs.
const Timeout = 10 * time.Second

// Eventually checks cond every millisecond until it holds, failing the test
// (naming what) after Timeout.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, Timeout, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}
