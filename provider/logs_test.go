package provider

import (
	"testing"
	"time"

	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

func TestLogOptions(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := now.Add(-time.Hour)
	for _, tc := range []struct {
		name    string
		opts    vkapi.ContainerLogOpts
		tail    int
		tty     bool
		running bool
		want    podman.LogOptions
	}{
		{"defaults", vkapi.ContainerLogOpts{}, -1, false, true, podman.LogOptions{Tail: -1}},
		{"follow, tail, timestamps, tty", vkapi.ContainerLogOpts{Follow: true, Timestamps: true}, 3, true, true,
			podman.LogOptions{Follow: true, Tail: 3, Timestamps: true, TTY: true}},
		{"an ended container is read whole, not followed", vkapi.ContainerLogOpts{Follow: true}, -1, false, false, podman.LogOptions{Tail: -1}},
		{"previous is never followed", vkapi.ContainerLogOpts{Follow: true, Previous: true}, -1, false, true, podman.LogOptions{Tail: -1}},
		{"sinceSeconds counts back from now", vkapi.ContainerLogOpts{SinceSeconds: 5}, -1, false, true,
			podman.LogOptions{Tail: -1, Since: now.Add(-5 * time.Second)}},
		{"sinceTime wins", vkapi.ContainerLogOpts{SinceSeconds: 5, SinceTime: at}, -1, false, true,
			podman.LogOptions{Tail: -1, Since: at}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := logOptions(tc.opts, tc.tail, tc.tty, tc.running, now); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
