package provider

import (
	"errors"
	"testing"

	"github.com/containers/podman/v5/pkg/specgen"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

func TestSubPathBindsAndCheck(t *testing.T) {
	plan := &pod.Plan{Volumes: []pod.Volume{
		{K8sName: "work", Kind: pod.VolumeEmptyDir, PodmanName: "rbn-u-work"},
		{K8sName: "cache", Kind: pod.VolumeHostPath, HostPath: "/srv/cache"},
	}}
	c := pod.Container{K8sName: "build", Mounts: []pod.Mount{
		{Volume: "work", MountPath: "/work"},
		{Volume: "work", MountPath: "/out", SubPath: "out"},
		{Volume: "cache", MountPath: "/cache", SubPath: "x/y"},
	}}
	mountpoints := map[string]string{"work": "/var/lib/containers/storage/volumes/rbn-u-work/_data"}
	s, err := pod.ContainerSpec(c, withUID(plan), 0, "POD", mountpoints)
	if err != nil {
		t.Fatal(err)
	}
	binds := subPathBinds(c, plan, s, mountpoints)
	if len(binds) != 2 || binds[0].source != mountpoints["work"]+"/out" || binds[1].base != "/srv/cache" || binds[1].source != "/srv/cache/x/y" {
		t.Fatalf("binds: %+v", binds)
	}

	for _, tt := range []struct {
		name     string
		resolved []string
		wantErr  error
		want     []string // sources after the check
	}{
		{"plain directories", []string{mountpoints["work"], mountpoints["work"] + "/out", "/srv/cache", "/srv/cache/x/y"}, nil,
			[]string{mountpoints["work"] + "/out", "/srv/cache/x/y"}},
		{"a symlink within the volume is followed", []string{mountpoints["work"], mountpoints["work"] + "/real-out", "/srv/cache", "/srv/cache/x/y"}, nil,
			[]string{mountpoints["work"] + "/real-out", "/srv/cache/x/y"}},
		{"the hostPath itself behind a symlink", []string{mountpoints["work"], mountpoints["work"] + "/out", "/mnt/cache", "/mnt/cache/x/y"}, nil,
			[]string{mountpoints["work"] + "/out", "/mnt/cache/x/y"}},
		{"a symlink to /", []string{mountpoints["work"], "/", "/srv/cache", "/srv/cache/x/y"}, ErrSubPathOutsideVolume, nil},
		{"a sibling sharing the prefix", []string{mountpoints["work"], mountpoints["work"] + "x/out", "/srv/cache", "/srv/cache/x/y"}, ErrSubPathOutsideVolume, nil},
		{"a hostPath subPath leaving it", []string{mountpoints["work"], mountpoints["work"] + "/out", "/srv/cache", "/etc"}, ErrSubPathOutsideVolume, nil},
		{"a short answer", []string{mountpoints["work"]}, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := pod.ContainerSpec(c, withUID(plan), 0, "POD", mountpoints)
			err := checkResolved(s, binds, tt.resolved)
			if tt.want == nil {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := []string{source(s, "/out"), source(s, "/cache")}; got[0] != tt.want[0] || got[1] != tt.want[1] {
				t.Errorf("sources %q, want %q", got, tt.want)
			}
		})
	}
}

func withUID(p *pod.Plan) *pod.Plan {
	q := *p
	q.Labels = map[string]string{pod.LabelPodUID: "u"}
	return &q
}

func source(s *specgen.SpecGenerator, dest string) string {
	for _, m := range s.Mounts {
		if m.Destination == dest {
			return m.Source
		}
	}
	return ""
}
