package podman

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/containers/podman/v5/libpod/define"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/domain/entities/types"
	"github.com/containers/podman/v5/pkg/specgen"
)

// ContainerState is what a container's inspection says about its run.
type ContainerState struct {
	ID         string
	Name       string
	Labels     map[string]string
	Status     string // created, running, stopped, exited, ...
	Running    bool
	ExitCode   int32
	OOMKilled  bool
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	ImageID    string
	ImageName  string
	// UpperDir is the container's writable layer on the host (overlay's
	// upper directory; "" with other storage drivers), LogPath its log
	// file ("" with the journald driver), written by LogDriver.
	UpperDir, LogPath, LogDriver string
	// IPAddress is the container's address on its first network (for a
	// pod's infra container: the pod's IP).
	IPAddress string
	// Lost: the container was started but neither runs nor has a recorded
	// end. Podman resets a container's state when it finds its own state
	// from an earlier boot (its tmp dir's "alive" file gone): the host
	// rebooted, or podman's run-time state was wiped, while it ran.
	// Podman 4 then says "created", podman 5 "exited", either with the
	// start time kept, no finish time and exit code 0, which reads as a
	// container to start or one that succeeded. ExitCode is then
	// LostExitCode.
	Lost bool
}

// LostExitCode is a lost container's exit code: SIGKILL's, which kubelet
// reports too for a container whose end it cannot know
// (ContainerStatusUnknown). Never 0: a lost run did not succeed.
const LostExitCode = 128 + 9

// Exited reports whether the container ran and finished, or was lost.
func (s *ContainerState) Exited() bool {
	return !s.Running && ((s.Status == "exited" || s.Status == "stopped") && !s.FinishedAt.IsZero() || s.Lost)
}

// lost says whether a container's state is one podman reset after a
// reboot: started, not running, never finished.
func lost(s *ContainerState) bool {
	switch s.Status {
	case "created", "configured", "exited", "stopped":
		return !s.Running && !s.StartedAt.IsZero() && s.FinishedAt.IsZero()
	}
	return false
}

// CreateContainer creates a container from spec. An existing container of
// the same name gives ErrConflict: names are deterministic, so a retried
// create that already happened is recognisable.
func (c *Client) CreateContainer(ctx context.Context, spec *specgen.SpecGenerator) (_ string, err error) {
	cctx, end, err := c.call(ctx, opContainerCreate)
	if err != nil {
		return "", err
	}
	defer end(&err)
	resp, err := containers.CreateWithSpec(cctx, spec, nil)
	if err != nil {
		return "", wrap("create container "+spec.Name, err)
	}
	return resp.ID, nil
}

// StartContainer starts a created container.
func (c *Client) StartContainer(ctx context.Context, name string) (err error) {
	cctx, end, err := c.call(ctx, opContainerStart)
	if err != nil {
		return err
	}
	defer end(&err)
	return wrap("start container "+name, containers.Start(cctx, name, nil))
}

// StopContainer sends the stop signal, then SIGKILL after timeout.
func (c *Client) StopContainer(ctx context.Context, name string, timeout time.Duration) (err error) {
	// Whole seconds, rounded up: what is left of a grace period (0.9 s,
	// say) must not become an immediate SIGKILL.
	secs := uint((max(timeout, 0) + time.Second - 1) / time.Second)
	cctx, end, err := c.callWithin(ctx, opContainerStop, c.cfg.RequestTimeout+time.Duration(secs)*time.Second)
	if err != nil {
		return err
	}
	defer end(&err)
	return wrap("stop container "+name, containers.Stop(cctx, name, new(containers.StopOptions).WithTimeout(secs).WithIgnore(true)))
}

// RemoveContainer removes a container (and kills it first when force).
func (c *Client) RemoveContainer(ctx context.Context, name string, force bool) (err error) {
	cctx, end, err := c.call(ctx, opContainerRemove)
	if err != nil {
		return err
	}
	defer end(&err)
	_, err = containers.Remove(cctx, name, new(containers.RemoveOptions).WithForce(force).WithIgnore(true))
	return wrap("remove container "+name, err)
}

// InspectContainer returns a container's state.
func (c *Client) InspectContainer(ctx context.Context, name string) (_ *ContainerState, err error) {
	cctx, end, err := c.call(ctx, opContainerInspect)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	d, err := containers.Inspect(cctx, name, nil)
	if err != nil {
		return nil, wrap("inspect container "+name, err)
	}
	return containerState(d), nil
}

// containerState is what rbn reads of an inspected container.
func containerState(d *define.InspectContainerData) *ContainerState {
	s := &ContainerState{ID: d.ID, Name: d.Name, ImageID: d.Image, ImageName: d.ImageName}
	if d.GraphDriver != nil {
		s.UpperDir = d.GraphDriver.Data["UpperDir"]
	}
	if hc := d.HostConfig; hc != nil && hc.LogConfig != nil {
		s.LogPath, s.LogDriver = hc.LogConfig.Path, hc.LogConfig.Type
	}
	if d.Config != nil {
		s.Labels = d.Config.Labels
	}
	if ns := d.NetworkSettings; ns != nil {
		s.IPAddress = ns.IPAddress
		for _, n := range sortedNetworks(ns.Networks) {
			if s.IPAddress == "" && n.IPAddress != "" {
				s.IPAddress = n.IPAddress
			}
		}
	}
	if st := d.State; st != nil {
		s.Status, s.Running, s.ExitCode, s.OOMKilled, s.Error = st.Status, st.Running, st.ExitCode, st.OOMKilled, st.Error
		s.StartedAt, s.FinishedAt = st.StartedAt, st.FinishedAt
		if s.Lost = lost(s); s.Lost {
			s.ExitCode = LostExitCode
		}
	}
	return s
}

// ContainerSummary is a container as listed.
type ContainerSummary struct {
	ID     string
	Name   string
	Labels map[string]string
	State  string
	// ImageID is the image it was made from; Image names it as the list
	// does.
	ImageID, Image string
	// Infra: the infra container of a podman pod.
	Infra bool
	// Pod is the ID of the podman pod it is part of ("": none).
	Pod string
	// PID is its main process on the host while it runs (0: none): its
	// network namespace is the container's, the pod's for the containers
	// of a pod.
	PID       int
	StartedAt time.Time
}

// summary is what ListContainers makes of a list entry.
func summary(l types.ListContainer) ContainerSummary {
	s := ContainerSummary{ID: l.ID, Labels: l.Labels, State: l.State, ImageID: l.ImageID, Image: l.Image,
		Infra: l.IsInfra, Pod: l.Pod, PID: l.Pid}
	if len(l.Names) > 0 {
		s.Name = l.Names[0]
	}
	if l.StartedAt > 0 {
		s.StartedAt = time.Unix(l.StartedAt, 0)
	}
	return s
}

// ListContainers lists all containers (running or not) carrying every given label.
func (c *Client) ListContainers(ctx context.Context, labels map[string]string) (_ []ContainerSummary, err error) {
	cctx, end, err := c.call(ctx, opContainerList)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	list, err := containers.List(cctx, new(containers.ListOptions).WithAll(true).WithFilters(labelFilter(labels)))
	if err != nil {
		return nil, wrap("list containers", err)
	}
	out := make([]ContainerSummary, 0, len(list))
	for _, l := range list {
		out = append(out, summary(l))
	}
	return out, nil
}

// CopyInto extracts a tar stream into path inside a (possibly not started)
// container; paths on its named volumes land in the volumes. Files keep the
// owners the archive gives them: podman's default would give them to the
// container's user.
func (c *Client) CopyInto(ctx context.Context, container, path string, tar io.Reader) (err error) {
	cctx, end, err := c.call(ctx, opCopyInto)
	if err != nil {
		return err
	}
	defer end(&err)
	copyFn, err := containers.CopyFromArchiveWithOptions(cctx, container, path, tar, new(containers.CopyOptions).WithChown(false))
	if err != nil {
		return wrap("copy into "+container+":"+path, err)
	}
	return wrap("copy into "+container+":"+path, copyFn())
}

func labelFilter(labels map[string]string) map[string][]string {
	f := map[string][]string{}
	for k, v := range labels {
		f["label"] = append(f["label"], k+"="+v)
	}
	return f
}

func sortedNetworks(m map[string]*define.InspectAdditionalNetwork) []*define.InspectAdditionalNetwork {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*define.InspectAdditionalNetwork, 0, len(keys))
	for _, k := range keys {
		if m[k] != nil {
			out = append(out, m[k])
		}
	}
	return out
}

// CopyFrom streams a tar archive of path inside a (possibly not started)
// container, its entries named after path's base name; paths on the
// container's named volumes come from the volumes. Closing the reader ends
// the transfer. A missing path gives ErrNotFound.
//
// The archive is read straight from a connection of its own to the host's
// podman socket, as the bindings' CopyToArchive asks for it but without
// their path through the local forward and a pipe: two copies and four
// system calls less for every chunk of a bulk stream (make bench's S3
// upload).
func (c *Client) CopyFrom(ctx context.Context, container, path string) (_ io.ReadCloser, err error) {
	defer c.begin(opCopyFrom)(&err)
	what := "copy from " + container + ":" + path
	u := url.URL{Path: streamAPIPrefix + "/containers/" + url.PathEscape(container) + "/archive", RawQuery: url.Values{"path": {path}}.Encode()}
	req, err := http.NewRequest(http.MethodGet, "http://d"+u.RequestURI(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	conn, _, resp, err := c.open(ctx, what, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer conn.Close()
		return nil, responseError(what, resp)
	}
	// ctx bounds the stream, as it bounded the bindings' request.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	return &responseStream{what: what, body: resp.Body, conn: conn, stop: stop}, nil
}

// responseStream is a response body read from a connection of its own:
// closing it closes the connection.
type responseStream struct {
	what string
	body io.ReadCloser
	conn net.Conn
	stop func() bool
	once sync.Once
}

func (s *responseStream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if err != nil && err != io.EOF {
		err = &APIError{Op: s.what, Err: err}
	}
	return n, err
}

func (s *responseStream) Close() error {
	var err error
	s.once.Do(func() {
		s.stop()
		err = s.conn.Close()
	})
	return err
}
