package scheduler

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestPrioritize(t *testing.T) {
	const img = "localhost/rbn/only-here:1.0"
	pod := PodNeeds{Images: []string{img}}
	withImage := facts(healthy(100*Gi, img))
	noImage := facts(healthy(100 * Gi))

	type n struct {
		node  *corev1.Node
		bound int
	}
	tests := []struct {
		name string
		pod  PodNeeds
		tol  int
		in   []n
		want []int64
	}{
		{
			name: "equal hosts, no facts: all equal",
			in:   []n{{node("a"), 0}, {node("b"), 0}},
			want: []int64{4, 4},
		},
		{
			name: "image present wins over load within the bands",
			in:   []n{{node("a", withImage), 5}, {node("b", noImage), 0}},
			want: []int64{5 + 2, 4},
		},
		{
			name: "load within the tolerance is equal: the scheduler's accounting decides",
			in:   []n{{node("a", noImage), 2}, {node("b", noImage), 0}, {node("c", noImage), 1}},
			want: []int64{4, 4, 4},
		},
		{
			name: "load beyond the tolerance is pushed back",
			in:   []n{{node("a", noImage), 3}, {node("b", noImage), 0}, {node("c", noImage), 6}},
			want: []int64{2, 4, 0},
		},
		{
			name: "tolerance 0: strictly fewer jobs",
			tol:  -1,
			in:   []n{{node("a", noImage), 1}, {node("b", noImage), 0}, {node("c", noImage), 2}},
			want: []int64{2, 4, 0},
		},
		{
			name: "an overloaded host loses its image preference",
			in:   []n{{node("a", withImage), 6}, {node("b", noImage), 0}},
			want: []int64{0, 4},
		},
		{
			name: "rbn-kubelet's running count lags: bound pods decide",
			in:   []n{{node("a", facts(func() rbnv1HostFacts { f := healthy(Gi); f.RunningPods = 9; return f }())), 1}, {node("b", noImage), 0}},
			want: []int64{4, 4},
		},
		{
			name: "stale facts: no image preference",
			in: []n{{node("a", facts(func() rbnv1HostFacts {
				f := healthy(Gi, img)
				f.RunningPods = 9
				f.ObservedAt = staleTime()
				return f
			}())), 0}, {node("b", noImage), 0}},
			want: []int64{4, 4},
		},
		{
			name: "one host's facts not published yet: no image preference for the others",
			in:   []n{{node("a", withImage), 0}, {node("b"), 0}, {node("c", withImage), 0}},
			want: []int64{4, 4, 4},
		},
		{
			name: "native architecture breaks ties",
			pod:  PodNeeds{Images: []string{img}, NativeArch: "arm64"},
			in:   []n{{node("a", arch("amd64")), 0}, {node("b", arch("arm64")), 0}},
			want: []int64{4, 5},
		},
		{
			name: "architecture does not beat load",
			pod:  PodNeeds{Images: []string{img}, NativeArch: "arm64"},
			in:   []n{{node("a", arch("amd64")), 0}, {node("b", arch("arm64")), 3}},
			want: []int64{4, 3},
		},
		{
			name: "image, load and architecture at once",
			pod:  PodNeeds{Images: []string{img}, NativeArch: "arm64"},
			in:   []n{{node("a", withImage, arch("arm64")), 1}, {node("b", noImage, arch("arm64")), 0}},
			want: []int64{10, 5},
		},
		{
			name: "non-rbn nodes score as the best build host and do not count for load",
			in:   []n{{node("plain", notRBN), 0}, {node("a", withImage), 3}, {node("b", noImage), 3}},
			want: []int64{9, 9, 4},
		},
		{
			name: "only non-rbn nodes: all 0",
			in:   []n{{node("p1", notRBN), 3}, {node("p2", notRBN), 0}},
			want: []int64{0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy
			switch {
			case tt.tol > 0:
				p.LoadTolerance = tt.tol
			case tt.tol < 0:
				p.LoadTolerance = 0
			}
			pn := tt.pod
			if pn.Images == nil {
				pn = pod
			}
			views := make([]NodeView, len(tt.in))
			for i, x := range tt.in {
				views[i] = view(x.node, x.bound)
			}
			got := Prioritize(pn, views, now, p)
			var scores []int64
			for i, hp := range got {
				if hp.Host != views[i].Name {
					t.Fatalf("host %d is %s, want %s", i, hp.Host, views[i].Name)
				}
				if hp.Score < 0 || hp.Score > 10 {
					t.Errorf("score %d out of range", hp.Score)
				}
				scores = append(scores, hp.Score)
			}
			if fmt.Sprint(scores) != fmt.Sprint(tt.want) {
				t.Errorf("scores = %v, want %v", scores, tt.want)
			}
		})
	}
}

// TestScoreOrder checks the lexicographic order of the parts over every
// combination: image beats load bands 0-1, load band beats architecture.
func TestScoreOrder(t *testing.T) {
	total := func(image bool, band int, arch bool) int64 {
		s := Score{}
		if image && band <= 1 {
			s.Image = scoreImage
		}
		s.Load = map[int]int64{0: scoreLoadLeast, 1: scoreLoadNear}[band]
		if arch {
			s.Arch = scoreArch
		}
		return s.Total()
	}
	for _, a := range []bool{false, true} {
		for _, b := range []bool{false, true} {
			for band := 0; band <= 1; band++ {
				if total(true, band, a) <= total(false, 0, b) {
					t.Errorf("image (band %d, arch %v) does not beat no image (arch %v)", band, a, b)
				}
				if total(a, 0, false) <= total(a, 1, true) {
					t.Errorf("load band does not beat architecture (image %v)", a)
				}
			}
		}
	}
	if total(true, 0, true) != 10 {
		t.Errorf("best score %d, want 10", total(true, 0, true))
	}
}
