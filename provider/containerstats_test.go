package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// countingRead is a podman stats read that counts its calls and names its
// reading after the call ("1", "2", ...), waiting for release first when
// it is set.
type countingRead struct {
	calls   atomic.Int32
	release chan struct{}
	fail    error
}

func (r *countingRead) read(ctx context.Context) ([]podman.ContainerStats, error) {
	n := r.calls.Add(1)
	if r.release != nil {
		select {
		case <-r.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r.fail != nil {
		return nil, r.fail
	}
	return []podman.ContainerStats{{ID: fmt.Sprint(n)}}, nil
}

// readingID gets a reading of c and names it.
func readingID(t *testing.T, c *containerStatsCache) string {
	t.Helper()
	stats, err := c.get(context.Background())
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(stats) != 1 {
		t.Fatalf("get: %v", stats)
	}
	return stats[0].ID
}

// The time in these tests is synctest's bubble's: time.Sleep moves it on
// at once.

func TestContainerStatsCacheKeepsAReadingForMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &countingRead{}
		c := newContainerStatsCache(r.read, 10*time.Second, time.Now)
		if got := readingID(t, c); got != "1" {
			t.Fatalf("first reading %s", got)
		}
		time.Sleep(10*time.Second - time.Nanosecond)
		if got := readingID(t, c); got != "1" || r.calls.Load() != 1 {
			t.Errorf("within maxAge: reading %s after %d reads, want the first after 1", got, r.calls.Load())
		}
		time.Sleep(time.Nanosecond)
		if got := readingID(t, c); got != "1" {
			t.Errorf("at maxAge: reading %s, want the kept one at once, the new one read meanwhile", got)
		}
		synctest.Wait()
		if got := readingID(t, c); got != "2" || r.calls.Load() != 2 {
			t.Errorf("once read: reading %s after %d reads, want the new one", got, r.calls.Load())
		}
	})
}

func TestContainerStatsCacheOneReadForConcurrentCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &countingRead{release: make(chan struct{})}
		c := newContainerStatsCache(r.read, 10*time.Second, time.Now)
		got := make(chan string, 5)
		for range cap(got) {
			go func() {
				stats, err := c.get(context.Background())
				got <- fmt.Sprint(stats, err)
			}()
		}
		synctest.Wait() // every caller waits
		if n := r.calls.Load(); n != 1 {
			t.Fatalf("%d reads for 5 callers at once, want 1", n)
		}
		close(r.release)
		for range cap(got) {
			if g := <-got; g != fmt.Sprint([]podman.ContainerStats{{ID: "1"}}, nil) {
				t.Errorf("a caller got %s", g)
			}
		}
	})
}

func TestContainerStatsCacheKeepsNoFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		broken := errors.New("podman: connection refused")
		r := &countingRead{release: make(chan struct{}), fail: broken}
		c := newContainerStatsCache(r.read, 10*time.Second, time.Now)
		errs := make(chan error, 2)
		for range cap(errs) {
			go func() {
				_, err := c.get(context.Background())
				errs <- err
			}()
		}
		synctest.Wait()
		close(r.release)
		for range cap(errs) {
			if err := <-errs; !errors.Is(err, broken) {
				t.Errorf("a caller waiting on the failed read got %v", err)
			}
		}
		r.fail = nil
		if got := readingID(t, c); got != "2" {
			t.Errorf("after a failure: reading %s, want a new read", got)
		}
	})
}

// A caller that gives up does not end the read the others wait on, and
// its reading serves the next caller.
func TestContainerStatsCacheReadOutlivesItsCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &countingRead{release: make(chan struct{})}
		c := newContainerStatsCache(r.read, 10*time.Second, time.Now)
		ctx, cancel := context.WithCancel(context.Background())
		gaveUp := make(chan error, 1)
		go func() {
			_, err := c.get(ctx)
			gaveUp <- err
		}()
		synctest.Wait() // the read is the first caller's
		other := make(chan string, 1)
		go func() {
			stats, err := c.get(context.Background())
			other <- fmt.Sprint(stats, err)
		}()
		synctest.Wait()
		cancel()
		if err := <-gaveUp; !errors.Is(err, context.Canceled) {
			t.Errorf("the caller that gave up got %v", err)
		}
		close(r.release)
		if g := <-other; g != fmt.Sprint([]podman.ContainerStats{{ID: "1"}}, nil) {
			t.Errorf("the other caller got %s", g)
		}
		if got := readingID(t, c); got != "1" || r.calls.Load() != 1 {
			t.Errorf("next caller: reading %s after %d reads, want the first", got, r.calls.Load())
		}
	})
}

// A read that never answers ends at containerStatsReadTimeout for its
// waiters, and the next caller reads again.
func TestContainerStatsCacheReadTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &countingRead{release: make(chan struct{})}
		c := newContainerStatsCache(r.read, 10*time.Second, time.Now)
		start := time.Now()
		if _, err := c.get(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("get of a read that hangs: %v", err)
		}
		if took := time.Since(start); took != containerStatsReadTimeout {
			t.Errorf("gave up after %v, want %v", took, containerStatsReadTimeout)
		}
		close(r.release)
		if got := readingID(t, c); got != "2" {
			t.Errorf("after the timeout: reading %s, want a new read", got)
		}
	})
}

func TestNodeContainerStatsFiltersTheHostsReading(t *testing.T) {
	host := []podman.ContainerStats{
		{ID: "a", Labels: map[string]string{pod.LabelNode: "n1"}},
		{ID: "b", Labels: map[string]string{pod.LabelNode: "n2"}},
		{ID: "c", Labels: map[string]string{pod.LabelNode: "n1"}},
		{ID: "not-rbn"},
	}
	var reads int
	h := &Host{containerStats: newContainerStatsCache(func(context.Context) ([]podman.ContainerStats, error) {
		reads++
		return host, nil
	}, time.Minute, time.Now)}
	ids := func(node string) []string {
		stats, err := h.nodeContainerStats(context.Background(), node)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range stats {
			out = append(out, s.ID)
		}
		return out
	}
	if got := ids("n1"); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("n1: %v", got)
	}
	if got := ids("n2"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("n2: %v", got)
	}
	if got := ids("n3"); got != nil {
		t.Errorf("n3: %v", got)
	}
	if reads != 1 {
		t.Errorf("%d reads of the host for three nodes, want 1", reads)
	}
}

// A container started or ended on the host: the next caller reads anew,
// even within maxAge, and does not join a read asked for before the change,
// whose reading is not kept.
func TestContainerStatsCacheReadsAnewAfterAChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &countingRead{}
		c := newContainerStatsCache(r.read, 10*time.Second, time.Now)
		if got := readingID(t, c); got != "1" {
			t.Fatalf("first reading %s", got)
		}
		c.changed()
		if got := readingID(t, c); got != "2" {
			t.Errorf("after a change: reading %s, want a new one", got)
		}
		if got := readingID(t, c); got != "2" {
			t.Errorf("no change since: reading %s, want the kept one", got)
		}
	})
}

// gatedReads is a podman stats read whose n-th call waits for gate n and
// names its reading "n".
type gatedReads struct {
	calls atomic.Int32
	gates []chan struct{}
}

func newGatedReads(n int) *gatedReads {
	g := &gatedReads{}
	for range n {
		g.gates = append(g.gates, make(chan struct{}))
	}
	return g
}

func (g *gatedReads) read(ctx context.Context) ([]podman.ContainerStats, error) {
	n := g.calls.Add(1)
	select {
	case <-g.gates[n-1]:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []podman.ContainerStats{{ID: fmt.Sprint(n)}}, nil
}

// getAsync gets a reading of c in a goroutine, once every goroutine of the
// bubble waits, and names what it got.
func getAsync(c *containerStatsCache) <-chan string {
	got := make(chan string, 1)
	go func() {
		stats, err := c.get(context.Background())
		got <- fmt.Sprint(stats, err)
	}()
	synctest.Wait()
	return got
}

// cacheWithReading is a cache of n gated reads that has kept the first.
func cacheWithReading(t *testing.T, n int) (*gatedReads, *containerStatsCache) {
	t.Helper()
	g := newGatedReads(n)
	close(g.gates[0])
	c := newContainerStatsCache(g.read, 10*time.Second, time.Now)
	if got := readingID(t, c); got != "1" {
		t.Fatalf("first reading %s", got)
	}
	return g, c
}

func reading(id string) string { return fmt.Sprint([]podman.ContainerStats{{ID: id}}, nil) }

// Changes while a read runs: one more read after it, never two at once;
// callers after the changes get the later reading, and the earlier one is
// not given to them.
func TestContainerStatsCacheReadsAgainAfterAChangeDuringARead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGatedReads(2)
		c := newContainerStatsCache(g.read, 10*time.Second, time.Now)
		before := getAsync(c)
		c.changed()
		after := getAsync(c)
		c.changed() // a second change: still one read queued
		after2 := getAsync(c)
		if n := g.calls.Load(); n != 1 {
			t.Fatalf("%d reads at once, want 1", n)
		}
		close(g.gates[0])
		if got := <-before; got != reading("1") {
			t.Errorf("the caller before the change got %s", got)
		}
		synctest.Wait()
		if n := g.calls.Load(); n != 2 {
			t.Fatalf("%d reads once the first ended, want 2: the next one starts then", n)
		}
		close(g.gates[1])
		for _, ch := range []<-chan string{after, after2} {
			if got := <-ch; got != reading("2") {
				t.Errorf("a caller after the change got %s, want the read that followed it", got)
			}
		}
		if got := readingID(t, c); got != "2" || g.calls.Load() != 2 {
			t.Errorf("kept reading %s after %d reads, want the one asked for after the change", got, g.calls.Load())
		}
	})
}

// A read slower than containerStatsStaleWait: callers holding a reading
// are given it, not a timeout (at once when it is only older than maxAge,
// after containerStatsStaleWait when a container started or ended since),
// and the slow read's reading is kept once it comes.
func TestContainerStatsCacheGivesTheKeptReadingDuringASlowRead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(*containerStatsCache)
		wait   time.Duration
	}{
		{"older than maxAge", func(*containerStatsCache) { time.Sleep(10 * time.Second) }, 0},
		{"taken before a change", func(c *containerStatsCache) { c.changed() }, containerStatsStaleWait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g, c := cacheWithReading(t, 2)
				tc.before(c)
				start := time.Now()
				a, b := getAsync(c), getAsync(c)
				for _, ch := range []<-chan string{a, b} {
					if got := <-ch; got != reading("1") {
						t.Errorf("during the slow read a caller got %s, want the kept reading", got)
					}
				}
				if took := time.Since(start); took != tc.wait {
					t.Errorf("the kept reading came after %v, want %v", took, tc.wait)
				}
				if n := g.calls.Load(); n != 2 {
					t.Errorf("%d reads, want 2 (the slow one shared)", n)
				}
				close(g.gates[1])
				synctest.Wait()
				if got := readingID(t, c); got != "2" || g.calls.Load() != 2 {
					t.Errorf("after the slow read: reading %s after %d reads, want its reading kept", got, g.calls.Load())
				}
			})
		})
	}
}

// A kept reading older than containerStatsMaxStale is not given: the
// caller waits for the read.
func TestContainerStatsCacheGivesNoReadingOlderThanMaxStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, c := cacheWithReading(t, 3)
		time.Sleep(containerStatsMaxStale + time.Nanosecond)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if stats, err := c.get(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("with a reading older than %v: got %v, %v; want to wait for the read", containerStatsMaxStale, stats, err)
		}
		// The read outlived that caller: its reading is kept, and given
		// at once (a minute old) while the next read runs.
		close(g.gates[1])
		synctest.Wait()
		got := readingID(t, c)
		synctest.Wait() // the third read has started
		if got != "2" || g.calls.Load() != 3 {
			t.Errorf("after the read: reading %s after %d reads, want the second while the third runs", got, g.calls.Load())
		}
		close(g.gates[2])
		synctest.Wait()
	})
}
