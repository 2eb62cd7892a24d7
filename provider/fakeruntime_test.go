package provider

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"testing/iotest"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"
	"k8s.io/utils/clock"

	"github.com/remote-build-nodes/rbn/internal/hostvolume"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// fakeRuntime is a podRuntime in memory: podman pods, containers, images
// and volumes, with what the worker asked of it in calls. Containers run
// until a test ends them (exit); time is the test's clock.
type fakeRuntime struct {
	// looks counts the container lists and inspects (not in calls: every
	// sync makes them).
	looks int

	// listenUnix, when set, makes the listeners of ListenUnix.
	listenUnix func(path string) (net.Listener, error)

	clock clock.PassiveClock
	// info is what Info reports; nil: a podman 5.4.0 with no storage figures,
	// or nothing when noInfo (a host not probed yet).
	info   *podman.HostInfo
	noInfo bool
	// links are the fake host's symlinks: a path to its target.
	links map[string]string
	// specs are the containers created, by name; podSpecs the podman pods.
	specs    map[string]*specgen.SpecGenerator
	podSpecs map[string]*specgen.PodSpecGenerator

	mu       sync.Mutex
	ready    bool
	changed  chan struct{}
	pods     map[string]*podman.PodSummary     // by name
	ctrs     map[string]*podman.ContainerState // by name
	ctrPod   map[string]string                 // container name -> podman pod (name or ID)
	images   map[string]bool
	volumes  map[string]podman.Volume
	networks map[string]podman.Network
	pullErr  map[string]error // image -> what its pulls answer
	existErr error            // what image lookups answer, when set
	pingErr  error            // what Ping answers, when set
	startErr map[string]error // container name -> what its start answers
	// exitOnStart: container name -> the exit code it ends with as soon as
	// it started (before anyone looks).
	exitOnStart map[string]int32
	// faults are what the next calls of an operation answer ("create-pod",
	// "remove-pod"), each once, before the fake does the call.
	faults   map[string][]error
	calls    []string
	nextID   int
	files    map[string]string // host path -> type, as stat's %F names it
	contents map[string]string // host path -> content of a regular file
	// du is the disk space of host paths, as DiskUsage answers it.
	du     map[string]int64
	copied []string // entries written by CopyInto: "path mode gid"
	// tree is what CopyInto wrote into volumes on the fake host, by host
	// path (see hostfiles_test.go).
	tree map[string]fakeEntry
	logs map[string]string // container name -> its whole log
	// started, when set, is called after each successful start, with the
	// container's name, without the fake's lock held.
	started func(name string)
	// onCall, when set, is told each call as recorded, with the fake's
	// lock held (a test steps its clock there: the call takes that long).
	onCall func(call string)
	// execSync answers ExecSync (probes); nil: exit code 0, no output.
	execSync func(ctx context.Context, container string, cmd []string, out io.Writer) (int, error)
	// execCode is what Exec's processes exit with.
	execCode int
	// execTimeout, when set, is told each ExecSync's command timeout.
	execTimeout func(time.Duration)
}

var _ podRuntime = (*fakeRuntime)(nil)

func newFakeRuntime(clk clock.PassiveClock) *fakeRuntime {
	return &fakeRuntime{
		clock: clk, ready: true, changed: make(chan struct{}),
		pods: map[string]*podman.PodSummary{}, ctrs: map[string]*podman.ContainerState{}, ctrPod: map[string]string{},
		images: map[string]bool{}, volumes: map[string]podman.Volume{},
		pullErr: map[string]error{}, startErr: map[string]error{},
	}
}

// fault takes the next error injected for op, if any; f.mu held.
func (f *fakeRuntime) fault(op string) error {
	errs := f.faults[op]
	if len(errs) == 0 {
		return nil
	}
	f.faults[op] = errs[1:]
	return errs[0]
}

func (f *fakeRuntime) record(format string, args ...any) {
	call := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, call)
	if f.onCall != nil {
		f.onCall(call)
	}
}

// called returns the calls made so far that start with prefix.
func (f *fakeRuntime) called(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if len(c) >= len(prefix) && c[:len(prefix)] == prefix {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeRuntime) setReady(ready bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready = ready
	close(f.changed)
	f.changed = make(chan struct{})
}

// exit ends the running container name with code, now.
func (f *fakeRuntime) exit(name string, code int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[name]
	if c == nil {
		panic("exit: no container " + name)
	}
	c.Running, c.Status, c.ExitCode, c.FinishedAt = false, "exited", code, f.clock.Now()
}

func (f *fakeRuntime) byName(name string) *podman.ContainerState {
	if c, ok := f.ctrs[name]; ok {
		return c
	}
	for _, c := range f.ctrs {
		if c.ID == name {
			return c
		}
	}
	return nil
}

func (f *fakeRuntime) id() string {
	f.nextID++
	return fmt.Sprintf("id%03d", f.nextID)
}

func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func notFound(op string) error { return fmt.Errorf("%s: %w", op, podman.ErrNotFound) }

// Ping answers what pingErr holds, or nothing when the host is ready.
func (f *fakeRuntime) Ping(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ping")
	if f.pingErr != nil {
		return f.pingErr
	}
	if !f.ready {
		return errors.New("podman: no ssh connection")
	}
	return nil
}

func (f *fakeRuntime) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeRuntime) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeRuntime) Info() *podman.HostInfo {
	if f.noInfo {
		return nil
	}
	if f.info != nil {
		return f.info
	}
	return &podman.HostInfo{PodmanVersion: "5.4.0"}
}

func (f *fakeRuntime) CreatePod(_ context.Context, spec *specgen.PodSpecGenerator) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("create-pod %s", spec.Name)
	if err := f.fault("create-pod"); err != nil {
		return "", err
	}
	if _, ok := f.pods[spec.Name]; ok {
		return "", fmt.Errorf("create pod %s: %w", spec.Name, podman.ErrConflict)
	}
	for name := range spec.Networks {
		if _, ok := f.networks[name]; !ok {
			return "", fmt.Errorf("create pod %s: unable to find network with name or ID %s: network not found", spec.Name, name)
		}
	}
	infra := &podman.ContainerState{ID: f.id(), Name: spec.InfraName, Labels: maps.Clone(spec.Labels), Status: "created", ImageID: "infra-image"}
	f.ctrs[infra.Name] = infra
	p := &podman.PodSummary{ID: f.id(), Name: spec.Name, Labels: maps.Clone(spec.Labels), InfraID: infra.ID}
	f.pods[spec.Name] = p
	if f.podSpecs == nil {
		f.podSpecs = map[string]*specgen.PodSpecGenerator{}
	}
	f.podSpecs[spec.Name] = spec
	f.ctrPod[infra.Name] = p.Name
	return p.ID, nil
}

func (f *fakeRuntime) InspectPod(_ context.Context, name string) (*podman.PodSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[name]
	if !ok {
		return nil, notFound("inspect pod " + name)
	}
	cp := *p
	return &cp, nil
}

func (f *fakeRuntime) ListPods(_ context.Context, labels map[string]string) ([]podman.PodSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []podman.PodSummary
	for _, p := range f.pods {
		if matches(p.Labels, labels) {
			out = append(out, *p)
		}
	}
	return out, nil
}

func (f *fakeRuntime) RemovePod(_ context.Context, name string, timeout time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove-pod %s", name)
	if err := f.fault("remove-pod"); err != nil {
		return err
	}
	p, ok := f.pods[name]
	if !ok {
		return notFound("remove pod " + name)
	}
	for c, owner := range f.ctrPod {
		if owner == p.Name || owner == p.ID {
			delete(f.ctrs, c)
			delete(f.ctrPod, c)
		}
	}
	delete(f.pods, name)
	return nil
}

func (f *fakeRuntime) CreateContainer(_ context.Context, spec *specgen.SpecGenerator) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("create %s", spec.Name)
	if _, ok := f.ctrs[spec.Name]; ok {
		return "", fmt.Errorf("create container %s: %w", spec.Name, podman.ErrConflict)
	}
	c := &podman.ContainerState{ID: f.id(), Name: spec.Name, Labels: maps.Clone(spec.Labels), Status: "created", ImageID: "image-" + spec.Image,
		UpperDir: "/overlay/" + spec.Name + "/diff", LogPath: "/containers/" + spec.Name + "/ctr.log", LogDriver: "k8s-file"}
	f.ctrs[spec.Name] = c
	f.ctrPod[spec.Name] = spec.Pod
	if f.specs == nil {
		f.specs = map[string]*specgen.SpecGenerator{}
	}
	f.specs[spec.Name] = spec
	return c.ID, nil
}

func (f *fakeRuntime) StartContainer(_ context.Context, name string) error {
	if err := f.start(name); err != nil {
		return err
	}
	if f.started != nil {
		f.started(name)
	}
	return nil
}

func (f *fakeRuntime) start(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start %s", name)
	c := f.byName(name)
	if c == nil {
		return notFound("start container " + name)
	}
	if err := f.startErr[c.Name]; err != nil {
		c.Error = err.Error()
		return err
	}
	c.Running, c.Status, c.StartedAt, c.FinishedAt, c.Error = true, "running", f.clock.Now(), time.Time{}, ""
	if code, ok := f.exitOnStart[c.Name]; ok {
		c.Running, c.Status, c.ExitCode, c.FinishedAt = false, "exited", code, f.clock.Now()
	}
	if c.Labels["rbn.dev/container"] == "" {
		c.IPAddress = "10.88.0.7" // the infra container: the pod's IP
		for net := range f.podSpecs[f.ctrPod[c.Name]].Networks {
			// The first address after the bridge's, from the pod's network.
			c.IPAddress = f.networks[net].Subnet.Addr().Next().Next().String()
		}
	}
	return nil
}

func (f *fakeRuntime) StopContainer(_ context.Context, name string, timeout time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.byName(name)
	if c == nil {
		return notFound("stop container " + name)
	}
	f.record("stop %s %s", c.Name, timeout)
	if c.Running {
		c.Running, c.Status, c.ExitCode, c.FinishedAt = false, "exited", 143, f.clock.Now()
	}
	return nil
}

func (f *fakeRuntime) RemoveContainer(_ context.Context, name string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.byName(name); c != nil {
		f.record("remove %s", c.Name)
		delete(f.ctrs, c.Name)
		delete(f.ctrPod, c.Name)
	}
	return nil // podman's remove ignores a missing container
}

func (f *fakeRuntime) InspectContainer(_ context.Context, name string) (*podman.ContainerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looks++
	c := f.byName(name)
	if c == nil {
		return nil, notFound("inspect container " + name)
	}
	cp := *c
	return &cp, nil
}

func (f *fakeRuntime) ListContainers(_ context.Context, labels map[string]string) ([]podman.ContainerSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looks++
	var out []podman.ContainerSummary
	for _, name := range slices.Sorted(maps.Keys(f.ctrs)) {
		c := f.ctrs[name]
		if matches(c.Labels, labels) {
			out = append(out, podman.ContainerSummary{ID: c.ID, Name: c.Name, Labels: maps.Clone(c.Labels), State: c.Status})
		}
	}
	return out, nil
}

func (f *fakeRuntime) Logs(_ context.Context, nameOrID string, o podman.LogOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("logs %s tail=%d", nameOrID, o.Tail)
	for name, c := range f.ctrs {
		if name != nameOrID && c.ID != nameOrID {
			continue
		}
		if out, ok := f.logs[name]; ok {
			return io.NopCloser(strings.NewReader(out)), nil
		}
	}
	return nil, errors.New("fake runtime: no logs")
}

func (f *fakeRuntime) Images() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.images))
}

func (f *fakeRuntime) RefreshImages(context.Context) {}

func (f *fakeRuntime) ImageExists(_ context.Context, ref string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.existErr != nil {
		return false, f.existErr
	}
	return f.images[ref], nil
}

func (f *fakeRuntime) PullImage(_ context.Context, ref string, _ *podman.Credentials, _ *slog.Logger) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("pull %s", ref)
	if err := f.pullErr[ref]; err != nil {
		return "", err
	}
	f.images[ref] = true
	return "", nil
}

func (f *fakeRuntime) EnsureVolume(_ context.Context, name string, labels, opts map[string]string) (*podman.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ensure-volume %s o=%s", name, opts["o"])
	v, ok := f.volumes[name]
	if !ok {
		v = podman.Volume{Name: name, Labels: maps.Clone(labels), Mountpoint: "/volumes/" + name}
		f.volumes[name] = v
	}
	return &v, nil
}

func (f *fakeRuntime) EnsureNetwork(_ context.Context, want podman.Network) (*podman.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ensure-network %s %s", want.Name, want.Subnet)
	if err := f.fault("ensure-network"); err != nil {
		return nil, err
	}
	if f.networks == nil {
		f.networks = map[string]podman.Network{}
	}
	n, ok := f.networks[want.Name]
	if !ok {
		n = want
		n.Labels = maps.Clone(want.Labels)
		f.networks[want.Name] = n
	}
	return &n, nil
}

func (f *fakeRuntime) ListNetworks(_ context.Context, labels map[string]string) ([]podman.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []podman.Network
	for _, n := range f.networks {
		if matches(n.Labels, labels) {
			out = append(out, n)
		}
	}
	return out, nil
}

// RemoveNetwork refuses a network a podman pod joined, as podman does.
func (f *fakeRuntime) RemoveNetwork(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove-network %s", name)
	for pod, spec := range f.podSpecs {
		if _, joined := spec.Networks[name]; joined && f.pods[pod] != nil {
			return fmt.Errorf("remove network %s: network is being used by pod %s", name, pod)
		}
	}
	delete(f.networks, name)
	return nil
}

func (f *fakeRuntime) ListVolumes(_ context.Context, labels map[string]string) ([]podman.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []podman.Volume
	for _, v := range f.volumes {
		if matches(v.Labels, labels) {
			out = append(out, v)
		}
	}
	return out, nil
}

func (f *fakeRuntime) RemoveVolume(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove-volume %s", name)
	delete(f.volumes, name)
	return nil
}

// CopyInto records the archive's entries in copied, each as
// "path mode gid" (mode in octal), and writes them into the fake host's
// tree when p is where the container mounts a volume.
func (f *fakeRuntime) CopyInto(_ context.Context, container, p string, archive io.Reader) error {
	return f.write("copy-into", p, archive, func(data []byte) error {
		f.record("copy-into %s %s", container, p)
		return f.extract(container, p, bytes.NewReader(data))
	})
}

// ExtractTar writes the archive into the fake host's directory dir, and
// its entries into copied.
func (f *fakeRuntime) ExtractTar(_ context.Context, dir string, archive io.Reader) error {
	return f.write("extract-tar", dir, archive, func(data []byte) error {
		f.record("extract-tar %s", dir)
		return f.extractAt(dir, bytes.NewReader(data))
	})
}

// write takes the next fault of op, or reads archive, lists its entries
// under p into copied and hands it to apply, with f.mu held.
func (f *fakeRuntime) write(op, p string, archive io.Reader, apply func(data []byte) error) error {
	f.mu.Lock()
	fault := f.fault(op)
	f.mu.Unlock()
	if fault != nil {
		return fault
	}
	data, err := io.ReadAll(archive)
	if err != nil {
		return err
	}
	entries, err := tarEntries(p, data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.copied = append(f.copied, entries...)
	return apply(data)
}

// tarEntries lists an archive's entries under p as "path mode gid".
func tarEntries(p string, data []byte) ([]string, error) {
	tr := tar.NewReader(bytes.NewReader(data))
	var entries []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		entries = append(entries, fmt.Sprintf("%s %o %d", path.Join(p, h.Name), h.Mode, h.Gid))
	}
}

// CopyFrom archives a file the container has bind-mounted from the fake
// host (f.contents); anything else is not found.
func (f *fakeRuntime) CopyFrom(_ context.Context, container, p string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("copy-from %s %s", container, p)
	c := f.byName(container)
	if c == nil {
		return nil, notFound("copy from " + container)
	}
	data, ok := f.contents[f.bindSource(c.Name, p)]
	if !ok {
		return nil, notFound("copy from " + container + ":" + p)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path.Base(p), Mode: 0o666, Size: int64(len(data))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write([]byte(data)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(&buf), nil
}

// bindSource is the host path the container name bind-mounts at dest, ""
// for none. Caller holds f.mu.
func (f *fakeRuntime) bindSource(name, dest string) string {
	spec := f.specs[name]
	if spec == nil {
		return ""
	}
	for _, m := range spec.Mounts {
		if m.Type == "bind" && m.Destination == dest {
			return m.Source
		}
	}
	return ""
}

// writeMounted writes data to the host file that container name
// bind-mounts at dest, as the container's process would.
func (f *fakeRuntime) writeMounted(name, dest, data string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	src := f.bindSource(name, dest)
	if _, ok := f.contents[src]; !ok {
		panic("writeMounted: " + name + " has no file mounted at " + dest)
	}
	f.contents[src] = data
}

// MountVolume records the mount and answers the "mount-volume" faults.
func (f *fakeRuntime) MountVolume(_ context.Context, v hostvolume.Volume) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("mount-volume %s %s", v.Image, v.Dir)
	return f.fault("mount-volume")
}

func (f *fakeRuntime) Chmod(_ context.Context, p string, mode uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("chmod %o %s", mode, p)
	return nil
}

// EmptyDirs records the directories emptied.
func (f *fakeRuntime) EmptyDirs(_ context.Context, dirs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fault("empty-dirs"); err != nil {
		return err
	}
	f.record("empty-dirs %s", strings.Join(dirs, " "))
	return nil
}

// DiskUsage answers f.du for the paths it has.
func (f *fakeRuntime) DiskUsage(_ context.Context, paths []string) (map[string]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("du %s", strings.Join(paths, " "))
	out := map[string]int64{}
	for _, p := range paths {
		if n, ok := f.du[p]; ok {
			out[p] = n
		}
	}
	return out, nil
}

// FileTail reads a file of the fake host (f.contents), as the containers
// that bind-mount it wrote it.
func (f *fakeRuntime) FileTail(_ context.Context, p string, n int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("file-tail %s", p)
	data, ok := f.contents[p]
	if !ok {
		return nil, notFound("file " + p)
	}
	return []byte(data[max(len(data)-n, 0):]), nil
}

// ReadFile reads a file of the fake host (f.contents).
func (f *fakeRuntime) ReadFile(_ context.Context, p string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("read-file %s", p)
	data, ok := f.contents[p]
	if !ok {
		return io.NopCloser(iotest.ErrReader(notFound("file " + p))), nil
	}
	return io.NopCloser(strings.NewReader(data)), nil
}

func (f *fakeRuntime) EmptyFile(_ context.Context, p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("empty-file %s", p)
	if f.files == nil {
		f.files = map[string]string{}
	}
	if f.contents == nil {
		f.contents = map[string]string{}
	}
	f.files[p], f.contents[p] = "regular empty file", ""
	return nil
}

func (f *fakeRuntime) Events(ctx context.Context, _ map[string]string) (<-chan podman.Event, error) {
	ch := make(chan podman.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

// RealPaths follows the symlinks that CopyInto wrote; other paths are
// taken as real.
func (f *fakeRuntime) RealPaths(_ context.Context, paths []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = f.resolve(p)
	}
	return out, nil
}

// CanonicalPaths follows the fake host's links (f.links: a path prefix to
// its target), as realpath -m would.
func (f *fakeRuntime) CanonicalPaths(_ context.Context, paths []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = p
		for from, to := range f.links {
			if p == from || strings.HasPrefix(p, from+"/") {
				out[i] = to + strings.TrimPrefix(p, from)
			}
		}
	}
	return out, nil
}

func (f *fakeRuntime) FileType(_ context.Context, p string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stat %s", p)
	if kind, ok := f.files[p]; ok {
		return kind, nil
	}
	return "", fmt.Errorf("stat: cannot statx '%s': No such file or directory", p)
}

func (f *fakeRuntime) MakePath(_ context.Context, p string, dir bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("make-path %s dir=%t", p, dir)
	if f.files == nil {
		f.files = map[string]string{}
	}
	switch {
	case dir && f.files[p] != "" && f.files[p] != "directory":
		return fmt.Errorf("mkdir: cannot create directory '%s': File exists", p)
	case dir:
		f.files[p] = "directory"
	case f.files[p] == "":
		f.files[p] = "regular empty file"
	}
	return nil
}

func (f *fakeRuntime) ExecSync(ctx context.Context, container string, cmd []string, out io.Writer, timeout time.Duration) (int, error) {
	f.mu.Lock()
	f.record("exec-sync %s %s", container, strings.Join(cmd, " "))
	fn := f.execSync
	if f.execTimeout != nil {
		f.execTimeout(timeout)
	}
	f.mu.Unlock()
	if fn == nil {
		return 0, nil
	}
	return fn(ctx, container, cmd, out)
}

// Exec runs in a running container of the fake host: exit code 0, or
// f.execCode's; podman's refusal, before anything ran, for a container
// that is gone or not running. A terminal's session records the size it
// starts at; one refused in a container that stopped takes the client's
// first size before its start is refused, as podman.Client.Exec does.
func (f *fakeRuntime) Exec(ctx context.Context, container string, o podman.ExecOptions) (int, error) {
	size := o.Size
	if o.TTY && size == nil && o.Resize != nil {
		select {
		case sz, ok := <-o.Resize:
			if ok {
				size = &sz
			}
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	call := fmt.Sprintf("exec %s %s", container, strings.Join(o.Cmd, " "))
	if o.TTY && size != nil {
		call += fmt.Sprintf(" at %dx%d", size.Width, size.Height)
	}
	f.record("%s", call)
	c := f.byName(container)
	switch {
	case c == nil:
		return -1, &podman.ExecNotStartedError{Size: size, Err: &podman.APIError{Op: "exec create in " + container, Status: http.StatusNotFound, Err: errors.New("no such container")}}
	case !c.Running:
		return -1, &podman.ExecNotStartedError{Size: size, Err: &podman.APIError{Op: "exec start in " + container, Status: http.StatusConflict, Err: errors.New("container state improper")}}
	}
	return f.execCode, nil
}

func (f *fakeRuntime) Dial(_ context.Context, network, address string) (net.Conn, error) {
	return nil, fmt.Errorf("dial %s %s: the fake host has no network", network, address)
}

// ListenUnix gives the listener of f.listenUnix, when a test sets it.
func (f *fakeRuntime) ListenUnix(p string) (net.Listener, error) {
	f.mu.Lock()
	listen := f.listenUnix
	f.record("listen-unix %s", p)
	f.mu.Unlock()
	if listen == nil {
		return nil, errors.New("fake runtime: no listener for " + p)
	}
	return listen(p)
}

// lookCount is how many container lists and inspects were made.
func (f *fakeRuntime) lookCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.looks
}

// NodeContainers lists node's containers afresh: the fake host is one
// node's.
func (f *fakeRuntime) NodeContainers(ctx context.Context, node string, _ time.Duration) ([]podman.ContainerSummary, error) {
	return f.ListContainers(ctx, map[string]string{pod.LabelNode: node})
}

// NodeObjects lists afresh: the fake host is one node's.
func (f *fakeRuntime) NodeObjects(string, time.Duration) labelledObjects { return f }
