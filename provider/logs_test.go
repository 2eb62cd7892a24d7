package provider

import (
	"context"
	"io"
	"testing"
	"time"

	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

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

// TestContainerLogsFromTheFile: a log read whole comes from the
// container's log file on the host, as podman's API would give it; a
// followed log, a tail, another driver's log and a file the host cannot
// read go through podman's API.
func TestContainerLogsFromTheFile(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	name := ctrName("main", 0)
	path := h.rt.byName(name).LogPath
	h.rt.contents = map[string]string{path: "2026-01-01T12:00:00.5+01:00 stdout P fir\n" +
		"2026-01-01T12:00:00.6+01:00 stdout F st\n" +
		"2026-01-01T12:00:01+01:00 stderr F second\n"}
	h.rt.logs = map[string]string{name: "from podman\n"}
	read := func(what string, opts vkapi.ContainerLogOpts, tail int, want, call string) {
		t.Helper()
		before := len(h.rt.called(call))
		rc, err := h.w.p.ContainerLogs(context.Background(), pd.Namespace, pd.Name, "main", opts, tail)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", what, got, err, want)
		}
		if n := len(h.rt.called(call)) - before; n != 1 {
			t.Errorf("%s: %d calls %q, want 1; all calls: %q", what, n, call, h.rt.calls)
		}
	}

	read("running, read whole", vkapi.ContainerLogOpts{}, -1, "first\nsecond\n", "read-file "+path)
	read("running, followed", vkapi.ContainerLogOpts{Follow: true}, -1, "from podman\n", "logs ")
	h.rt.exit(name, 0)
	h.sync()
	read("ended, -f reads it whole", vkapi.ContainerLogOpts{Follow: true}, -1, "first\nsecond\n", "read-file "+path)
	read("timestamps, the file's, one per line", vkapi.ContainerLogOpts{Timestamps: true}, -1,
		"2026-01-01T12:00:00.5+01:00 first\n2026-01-01T12:00:01+01:00 second\n", "read-file ")
	read("since", vkapi.ContainerLogOpts{SinceTime: time.Date(2026, 1, 1, 11, 0, 1, 0, time.UTC)}, -1, "second\n", "read-file ")
	read("limitBytes", vkapi.ContainerLogOpts{LimitBytes: 3}, -1, "fir", "read-file ")
	read("tail", vkapi.ContainerLogOpts{Tail: 1}, 1, "from podman\n", "logs ")

	delete(h.rt.contents, path)
	read("file gone", vkapi.ContainerLogOpts{}, -1, "from podman\n", "logs ")
	h.rt.contents[path] = "2026-01-01T12:00:00.5+01:00 stdout F from the file\n"
	h.rt.byName(name).LogDriver = "journald"
	read("journald", vkapi.ContainerLogOpts{}, -1, "from podman\n", "logs ")
}
