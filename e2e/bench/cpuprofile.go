package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/remote-build-nodes/rbn/internal/kubeletapi"
)

// ---------------------------------------------------------------------------------------------
// rbn-kubelet's CPU profiles over a measurement window: what its kubelet
// API server used, told from the rest by the pprof label it runs under
// (kubeletapi.ProfileLabel). The process's CPU time moves with everything
// rbn-kubelet does; at scale its own background work (pod workers, Leases,
// sweeps) varies by more between two 15 s sub-windows than scraping costs,
// so a difference of medians can come out negative. The profile attributes.

// cpuProfileEach is the length of each profile taken back to back: Go
// serves one CPU profile at a time.
const cpuProfileEach = 30 * time.Second

// cpuProfiler takes rbn-kubelet's CPU profiles back to back until finished.
type cpuProfiler struct {
	stop     chan struct{}
	done     chan struct{}
	profiles []*profile.Profile
	err      error
}

// profilingServed says whether rbn-kubelet serves Go's profiles at base
// (its metrics address: RBN_KUBELET_PROFILING=1, config enableProfiling).
func profilingServed(ctx context.Context, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/pprof/", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// startCPUProfiles starts taking profiles of each's length from base, the
// first at once.
func startCPUProfiles(ctx context.Context, base string, each time.Duration) *cpuProfiler {
	p := &cpuProfiler{stop: make(chan struct{}), done: make(chan struct{})}
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(each.Seconds()))
	go func() {
		defer close(p.done)
		// One at least: the window's start falls in the first.
		for {
			prof, err := fetchProfile(ctx, url)
			if err != nil {
				p.err = err
				return
			}
			p.profiles = append(p.profiles, prof)
			select {
			case <-p.stop:
				return
			default:
			}
		}
	}()
	return p
}

// finish waits for the profile under way (the window's end falls in it)
// and returns every profile merged into one.
func (p *cpuProfiler) finish() (*profile.Profile, error) {
	close(p.stop)
	<-p.done
	if p.err != nil {
		return nil, p.err
	}
	if len(p.profiles) == 0 {
		return nil, errors.New("no CPU profile taken")
	}
	return profile.Merge(p.profiles)
}

func fetchProfile(ctx context.Context, url string) (*profile.Profile, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("CPU profile: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	prof, err := profile.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	return prof, nil
}

// cpuShares is a CPU profile summed up: what the kubelet API server used,
// the garbage collector's background marking, and everything.
type cpuShares struct {
	total, api, gc time.Duration
	span           time.Duration // the profiles' length together
}

// gcMarkWorker is the function of the garbage collector's background
// marking goroutines: they carry no label, whoever allocated.
const gcMarkWorker = "runtime.gcBgMarkWorker"

// sharesOf sums prof's CPU samples: those labelled as the kubelet API
// server's, those of the collector's background marking, and all.
func sharesOf(prof *profile.Profile) (cpuShares, error) {
	idx := slices.IndexFunc(prof.SampleType, func(t *profile.ValueType) bool { return t.Type == "cpu" && t.Unit == "nanoseconds" })
	if idx < 0 {
		return cpuShares{}, errors.New("CPU profile without cpu/nanoseconds samples")
	}
	s := cpuShares{span: time.Duration(prof.DurationNanos)}
	for _, smp := range prof.Sample {
		v := time.Duration(smp.Value[idx])
		s.total += v
		switch {
		case slices.Contains(smp.Label[kubeletapi.ProfileLabel], kubeletapi.ProfileComponent):
			s.api += v
		case inStack(smp, gcMarkWorker):
			s.gc += v
		}
	}
	return s, nil
}

func inStack(smp *profile.Sample, fn string) bool {
	for _, loc := range smp.Location {
		for _, l := range loc.Line {
			if l.Function != nil && l.Function.Name == fn {
				return true
			}
		}
	}
	return false
}

// attributed is the kubelet API server's CPU with its share of the
// collector's background marking, shared in proportion to the CPU used
// outside it (allocation, which drives the collector, roughly follows CPU).
func (s cpuShares) attributed() time.Duration {
	rest := s.total - s.gc
	if rest <= 0 {
		return s.api
	}
	return s.api + time.Duration(float64(s.gc)*float64(s.api)/float64(rest))
}
