package framework

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Poll checks cond every interval until it holds, ctx ends or timeout
// passes; the error says what was awaited and what cond last reported.
func Poll(ctx context.Context, what string, timeout, interval time.Duration, cond func() (bool, string)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last seen: %s)", what, ctx.Err(), state)
		case <-deadline.C:
			return fmt.Errorf("timed out after %s waiting for %s; last seen: %s", timeout, what, state)
		case <-tick.C:
		}
	}
}

// Eventually polls cond every 250 ms until it holds or timeout passes, then
// fails the test saying what was awaited and what cond last reported.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	if err := Poll(context.Background(), what, timeout, 250*time.Millisecond, cond); err != nil {
		t.Fatal(err)
	}
}

// UniqueName returns a DNS-safe name unique to the test.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000)
}
