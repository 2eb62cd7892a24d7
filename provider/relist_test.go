package provider

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

func ctr(id, uid, state string) podman.ContainerSummary {
	labels := map[string]string{}
	if uid != "" {
		labels[pod.LabelPodUID] = uid
	}
	return podman.ContainerSummary{ID: id, State: state, Labels: labels}
}

func TestRelistWakesOnlyChangedPods(t *testing.T) {
	base := []podman.ContainerSummary{
		ctr("infra-a", "a", "running"), ctr("main-a", "a", "running"),
		ctr("infra-b", "b", "running"), ctr("main-b", "b", "running"),
		ctr("stray", "", "running"), // no pod label: not a pod's
	}
	tests := []struct {
		name string
		cur  []podman.ContainerSummary
		want []types.UID
	}{
		{"nothing changed", base, nil},
		{"the same containers listed in another order", []podman.ContainerSummary{base[3], base[2], base[1], base[0]}, nil},
		{"a container exited", []podman.ContainerSummary{base[0], ctr("main-a", "a", "exited"), base[2], base[3]}, []types.UID{"a"}},
		{"a container restarted (a new one beside the old)", append(slices.Clone(base), ctr("main-b-1", "b", "running")), []types.UID{"b"}},
		{"a container removed", []podman.ContainerSummary{base[0], base[2], base[3]}, []types.UID{"a"}},
		{"a pod gone from the host", []podman.ContainerSummary{base[2], base[3]}, []types.UID{"a"}},
		{"a new pod", append(slices.Clone(base), ctr("infra-c", "c", "created")), []types.UID{"c"}},
		{"a container without a pod changed", []podman.ContainerSummary{base[0], base[1], base[2], base[3], ctr("stray", "", "exited")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := changedPods(fingerprint(base), fingerprint(tt.cur))
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("changed pods = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHostChangesWakeWorkersOnlyWhenTheHostTurnsReady(t *testing.T) {
	var r readiness
	steps := []struct {
		ready, wake bool
		what        string
	}{
		{false, false, "connecting"},
		{true, true, "first contact"},
		{true, false, "facts refreshed"},
		{true, false, "facts refreshed again"},
		{false, false, "connection lost"},
		{false, false, "still lost, another reason"},
		{true, true, "back"},
	}
	for _, s := range steps {
		if got := r.becameReady(s.ready); got != s.wake {
			t.Errorf("%s (ready %t): wake workers = %t, want %t", s.what, s.ready, got, s.wake)
		}
	}
}
