package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/remote-build-nodes/rbn/internal/kubeletapi"
)

// sample is a function's stack (the leaf first), its CPU time, and whether
// it carries the kubelet API label.
type sample struct {
	stack []string
	cpu   time.Duration
	api   bool
}

// cpuProfile is a CPU profile of samples over dur.
func cpuProfile(dur time.Duration, samples ...sample) *profile.Profile {
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        int64(10 * time.Millisecond),
		DurationNanos: int64(dur),
	}
	funcs := map[string]*profile.Function{}
	for _, s := range samples {
		smp := &profile.Sample{Value: []int64{int64(s.cpu / (10 * time.Millisecond)), int64(s.cpu)}}
		for _, name := range s.stack {
			f := funcs[name]
			if f == nil {
				f = &profile.Function{ID: uint64(len(funcs) + 1), Name: name}
				funcs[name] = f
				p.Function = append(p.Function, f)
			}
			loc := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: f}}}
			p.Location = append(p.Location, loc)
			smp.Location = append(smp.Location, loc)
		}
		if s.api {
			smp.Label = map[string][]string{kubeletapi.ProfileLabel: {kubeletapi.ProfileComponent}}
		}
		p.Sample = append(p.Sample, smp)
	}
	return p
}

func TestSharesOf(t *testing.T) {
	p := cpuProfile(30*time.Second,
		sample{[]string{"expfmt.MetricFamilyToText", "kubeletapi.metricsOf"}, 300 * time.Millisecond, true},
		sample{[]string{"crypto/tls.(*Conn).Handshake", "net/http.(*conn).serve"}, 100 * time.Millisecond, true},
		sample{[]string{"runtime.scanobject", "runtime.gcDrain", gcMarkWorker}, 500 * time.Millisecond, false},
		sample{[]string{"encoding/json.Unmarshal", "provider.(*podWorker).observe"}, 1600 * time.Millisecond, false},
	)
	s, err := sharesOf(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.total != 2500*time.Millisecond || s.api != 400*time.Millisecond || s.gc != 500*time.Millisecond || s.span != 30*time.Second {
		t.Errorf("shares = %+v, want total 2.5s, api 400ms, gc 500ms over 30s", s)
	}
	// 400 ms of the 2 s outside the marking: a fifth of its 500 ms.
	if got := s.attributed(); got != 500*time.Millisecond {
		t.Errorf("attributed = %s, want 500ms (400ms + 500ms × 400/2000)", got)
	}
}

func TestSharesOfWithoutCPUSamples(t *testing.T) {
	p := cpuProfile(time.Second)
	p.SampleType = []*profile.ValueType{{Type: "alloc_space", Unit: "bytes"}}
	if _, err := sharesOf(p); err == nil {
		t.Error("a heap profile summed as CPU")
	}
}

func TestCPUProfilerTakesProfilesUntilFinished(t *testing.T) {
	var served int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/debug/pprof/":
			_, _ = w.Write([]byte("profiles"))
		case "/debug/pprof/profile":
			if r.URL.Query().Get("seconds") != "1" {
				http.Error(w, "want seconds=1, got "+r.URL.RawQuery, http.StatusBadRequest)
				return
			}
			served++
			var b bytes.Buffer
			p := cpuProfile(time.Second, sample{[]string{"kubeletapi.metricsOf"}, 10 * time.Millisecond, true})
			if err := p.Write(&b); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = w.Write(b.Bytes())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if !profilingServed(ctx, srv.URL) {
		t.Fatal("profiling not seen as served")
	}
	if profilingServed(ctx, srv.URL+"/none") {
		t.Error("a 404 seen as profiles served")
	}
	pr := startCPUProfiles(ctx, srv.URL, time.Second)
	merged, err := pr.finish()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sharesOf(merged)
	if err != nil {
		t.Fatal(err)
	}
	n := len(pr.profiles)
	if n < 1 || served != n || s.api != time.Duration(n)*10*time.Millisecond {
		t.Errorf("%d profiles kept of %d served, api %s: want every one served, 10ms each", n, served, s.api)
	}
}

func TestCPUProfilerReportsAFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "profiling disabled", http.StatusNotFound)
	}))
	defer srv.Close()
	_, err := startCPUProfiles(context.Background(), srv.URL, time.Second).finish()
	if err == nil || !strings.Contains(err.Error(), "profiling disabled") {
		t.Errorf("finish = %v, want the server's refusal", err)
	}
}
