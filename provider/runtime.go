package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/egress"
	"github.com/remote-build-nodes/rbn/internal/hostvolume"
	"github.com/remote-build-nodes/rbn/internal/imagerelay"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// hostAnswers tells whether rt's host answers now: its health as last
// polled is Ready and its podman service answers a ping. An operation that
// failed while the host did not answer failed because of the host (a
// stream cut short, a closed connection), whatever its error says; the
// image pull and the S3 transfers then wait for the host instead of
// counting a failure.
func hostAnswers(ctx context.Context, rt podRuntime) bool {
	return rt.Ready() && rt.Ping(ctx) == nil
}

// podRuntime is what a node's pods need of their build host: whether it
// is usable, and the podman operations their workers take. In production
// hostRuntime (the host's podman client, SSH connection and image relay)
// is one; unit tests give a fake, so that a pod's state machine runs
// without a host.
type podRuntime interface {
	// Ready reports the host usable for pod work; Changed is closed at
	// the next change of its health or facts.
	Ready() bool
	Changed() <-chan struct{}
	// Info is the host's facts, nil before the first contact.
	Info() *podman.HostInfo
	// Ping asks the host's podman service whether it answers, now (Ready
	// is the health as last polled).
	Ping(ctx context.Context) error

	// Sandbox: the podman pod and its infra container.
	CreatePod(ctx context.Context, spec *specgen.PodSpecGenerator) (string, error)
	InspectPod(ctx context.Context, name string) (*podman.PodSummary, error)
	ListPods(ctx context.Context, labels map[string]string) ([]podman.PodSummary, error)
	RemovePod(ctx context.Context, name string, timeout time.Duration) error

	// Containers.
	CreateContainer(ctx context.Context, spec *specgen.SpecGenerator) (string, error)
	StartContainer(ctx context.Context, name string) error
	StopContainer(ctx context.Context, name string, timeout time.Duration) error
	RemoveContainer(ctx context.Context, name string, force bool) error
	InspectContainer(ctx context.Context, name string) (*podman.ContainerState, error)
	ListContainers(ctx context.Context, labels map[string]string) ([]podman.ContainerSummary, error)
	// NodeContainers lists node's containers from a list of all the
	// host's asked for less than maxAge ago, shared by its nodes.
	NodeContainers(ctx context.Context, node string, maxAge time.Duration) ([]podman.ContainerSummary, error)
	// NodeObjects lists node's podman pods, containers and volumes from
	// lists of all the host's asked for less than maxAge ago, shared by its
	// nodes, and removes through podman.
	NodeObjects(node string, maxAge time.Duration) labelledObjects
	Logs(ctx context.Context, name string, o podman.LogOptions) (io.ReadCloser, error)

	// Images. Images is the host's image list as last read, which
	// RefreshImages reads again.
	Images() []string
	RefreshImages(ctx context.Context)
	ImageExists(ctx context.Context, ref string) (bool, error)
	// PullImage brings ref onto the host, and returns what the Pulled
	// event adds about how it came.
	PullImage(ctx context.Context, ref string, creds *podman.Credentials, log *slog.Logger) (how string, err error)

	// Volumes.
	EnsureVolume(ctx context.Context, name string, labels, options map[string]string) (*podman.Volume, error)
	ListVolumes(ctx context.Context, labels map[string]string) ([]podman.Volume, error)
	RemoveVolume(ctx context.Context, name string) error

	// Networks: the node's block of rbn's pod network.
	networkRuntime

	// DiskUsage is the disk space each path on the host takes, in bytes;
	// paths gone are absent.
	DiskUsage(ctx context.Context, paths []string) (map[string]int64, error)
	// EmptyDirs removes the content of each directory, keeping it.
	EmptyDirs(ctx context.Context, dirs []string) error

	// Archive copy into and out of a (created) container's file system.
	CopyInto(ctx context.Context, container, path string, tar io.Reader) error
	CopyFrom(ctx context.Context, container, path string) (io.ReadCloser, error)

	// Events streams container events of the labels until ctx ends or
	// the stream breaks.
	Events(ctx context.Context, labels map[string]string) (<-chan podman.Event, error)

	// RealPaths resolves paths on the host (every one must exist); a path
	// the host cannot resolve is ErrSubPathUnresolvable.
	RealPaths(ctx context.Context, paths []string) ([]string, error)
	// CanonicalPaths resolves paths on the host as realpath -m does: every
	// symlink in the part of a path that exists is followed, the rest kept
	// as it is.
	CanonicalPaths(ctx context.Context, paths []string) ([]string, error)
	// FileType is the type of the file at path on the host, following
	// symlinks, as GNU stat's %F names it ("directory", "regular file",
	// "socket", ...); an error when the host cannot stat it (missing
	// included).
	FileType(ctx context.Context, path string) (string, error)
	// MakePath creates path on the host as a directory (with its parents)
	// or as an empty file (in a directory created with its parents).
	MakePath(ctx context.Context, path string, dir bool) error
	// EmptyFile creates path on the host (its directory exists) as an
	// empty file anyone may write (mode 0666), emptying it if it exists.
	EmptyFile(ctx context.Context, path string) error
	// FileTail is the last n bytes of the regular file path on the host;
	// podman.ErrNotFound when there is no such file.
	FileTail(ctx context.Context, path string, n int) ([]byte, error)
	// ReadFile streams the regular file path on the host from its start;
	// a file that cannot be read ends the stream with the host's error.
	ReadFile(ctx context.Context, path string) (io.ReadCloser, error)
	// ExtractTar writes archive into the directory dir on the host, with
	// the owners (numeric) and modes its entries have, as podman's archive
	// API writes them with chown off. It follows what dir holds: only for
	// a directory nothing but rbn-kubelet has written.
	ExtractTar(ctx context.Context, dir string, archive io.Reader) error
	// Chmod sets the mode (permission, setuid, setgid and sticky bits) of
	// path on the host, not following a symlink it ends in.
	Chmod(ctx context.Context, path string, mode uint32) error
	// ListDirs lists the entries right inside each of dirs on the host,
	// with each symlink's target (see atomicwrite.go).
	ListDirs(ctx context.Context, dirs []string) ([]DirEntry, error)
	// Rename renames from to to on the host with rename(2): a symlink at
	// to is replaced atomically, never followed.
	Rename(ctx context.Context, from, to string) error
	// RemovePaths removes paths on the host, directories with their
	// content; a missing path is no error.
	RemovePaths(ctx context.Context, paths []string) error
	// ListenUnix listens on the Unix socket path on the host (which must
	// not exist) over its SSH connection, a remote forward: the listener
	// ends with the connection.
	ListenUnix(path string) (net.Listener, error)
	// MountVolume mounts a provisioned volume's file system where it is
	// not mounted (hostvolume.EnsureMounted).
	MountVolume(ctx context.Context, v hostvolume.Volume) error

	// ExecSync runs cmd in a running container, its stdout and stderr
	// to out, and returns its exit code; the process is killed when ctx
	// ends first (probes and hooks, as a CRI ExecSync with a timeout), or
	// timeout after it started when timeout is positive (then the error
	// is context.DeadlineExceeded).
	ExecSync(ctx context.Context, container string, cmd []string, out io.Writer, timeout time.Duration) (int, error)
	// Exec runs a process in a running container with its streams
	// (kubectl exec); a failure before the process started is a
	// *podman.ExecNotStartedError.
	Exec(ctx context.Context, container string, o podman.ExecOptions) (int, error)
	// Dial connects from the host, on whose bridge network the pods' IPs
	// are (network probes and hooks).
	Dial(ctx context.Context, network, address string) (net.Conn, error)
}

// hostRuntime is the podRuntime of a Host, pulling images the way the
// node's spec.imagePull says.
type hostRuntime struct {
	*podman.Client
	host      *Host
	imagePull rbnv1.ImagePullMode
	egress    *egress.Policy
}

var _ podRuntime = hostRuntime{}

func newHostRuntime(h *Host, spec *rbnv1.RemoteBuildNodeSpec, policy *egress.Policy) hostRuntime {
	rt := hostRuntime{Client: h.Podman(), host: h, egress: policy}
	if spec != nil {
		rt.imagePull = spec.ImagePull
	}
	return rt
}

func (r hostRuntime) NodeContainers(ctx context.Context, node string, maxAge time.Duration) ([]podman.ContainerSummary, error) {
	return r.host.nodeContainers(ctx, node, maxAge)
}

func (r hostRuntime) NodeObjects(node string, maxAge time.Duration) labelledObjects {
	return nodeObjectLists{podRuntime: r, host: r.host, node: node, maxAge: maxAge}
}

func (r hostRuntime) Ready() bool                       { return r.host.ready() }
func (r hostRuntime) Changed() <-chan struct{}          { return r.host.Changed() }
func (r hostRuntime) Images() []string                  { return r.host.Images() }
func (r hostRuntime) RefreshImages(ctx context.Context) { r.host.RefreshImages(ctx) }

func (r hostRuntime) Info() *podman.HostInfo {
	info, _ := r.host.Snapshot()
	return info
}

// PullImage pulls with podman, or through rbn-kubelet's image relay when
// the node's images are pulled through the kubelet.
func (r hostRuntime) PullImage(ctx context.Context, image string, creds *podman.Credentials, log *slog.Logger) (string, error) {
	if r.imagePull != rbnv1.ImagePullThroughKubelet {
		_, err := r.Client.PullImage(ctx, image, creds)
		return "", err
	}
	req := imagerelay.Request{Image: image, Host: r.host.SSH(), Podman: r.Client, Egress: r.egress, Logger: log,
		ProgressDeadline: r.host.cfg.ImagePullProgressDeadline, Clock: r.host.cfg.Clock}
	if creds != nil {
		req.Credentials = &imagerelay.Credentials{Username: creds.Username, Password: creds.Password}
	}
	res, err := imagerelay.Pull(ctx, req)
	r.host.recordRelay(res.Blobs, res.Bytes, err)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(" through rbn-kubelet (%d blobs, %d bytes sent to the host)", res.Blobs, res.Bytes), nil
}

// RealPaths runs GNU realpath -e once for every path.
func (r hostRuntime) RealPaths(ctx context.Context, paths []string) ([]string, error) {
	out, err := r.realpath(ctx, "-e", paths)
	if err != nil {
		var exit *sshconn.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("%w: %s", ErrSubPathUnresolvable, strings.TrimSpace(exit.Stderr))
		}
		return nil, fmt.Errorf("resolving subPaths: %w", err)
	}
	return out, nil
}

// CanonicalPaths runs GNU realpath -m once for every path.
func (r hostRuntime) CanonicalPaths(ctx context.Context, paths []string) ([]string, error) {
	out, err := r.realpath(ctx, "-m", paths)
	if err != nil {
		return nil, hostCommandError(err)
	}
	return out, nil
}

// realpath runs GNU realpath with mode (-e, -m) on the host, one command
// for all paths (-z: NUL-separated, any byte in a name is safe).
func (r hostRuntime) realpath(ctx context.Context, mode string, paths []string) ([]string, error) {
	out, err := r.host.SSH().Output(ctx, append([]string{"realpath", mode, "-z", "--"}, paths...)...)
	if err != nil {
		return nil, err
	}
	return strings.Split(string(bytes.TrimSuffix(out, []byte{0})), "\x00"), nil
}

// FileType runs GNU stat on the host.
func (r hostRuntime) FileType(ctx context.Context, p string) (string, error) {
	out, err := r.host.SSH().Output(ctx, "stat", "-L", "-c", "%F", "--", p)
	if err != nil {
		return "", hostCommandError(err)
	}
	return strings.TrimSpace(string(out)), nil
}

// MakePath runs mkdir -p (and touch for a file) on the host. touch only
// runs for a path FileType found missing, so it does not change an
// existing file's times but in a race with whoever created it meanwhile.
func (r hostRuntime) MakePath(ctx context.Context, p string, dir bool) error {
	d := p
	if !dir {
		d = path.Dir(p)
	}
	if _, err := r.host.SSH().Output(ctx, "mkdir", "-p", "--", d); err != nil {
		return hostCommandError(err)
	}
	if dir {
		return nil
	}
	if _, err := r.host.SSH().Output(ctx, "touch", "--", p); err != nil {
		return hostCommandError(err)
	}
	return nil
}

// EmptyFile runs GNU install on the host: it copies /dev/null (nothing)
// to path and sets the mode whatever the umask, in one command.
func (r hostRuntime) EmptyFile(ctx context.Context, p string) error {
	if _, err := r.host.SSH().Output(ctx, "install", "-m", "0666", "--", "/dev/null", p); err != nil {
		return hostCommandError(err)
	}
	return nil
}

// FileTail runs GNU tail on the host: it seeks to the end of a regular
// file, so only n bytes cross the connection whatever the file's size.
func (r hostRuntime) FileTail(ctx context.Context, p string, n int) ([]byte, error) {
	out, err := r.host.SSH().Output(ctx, "tail", "-c", strconv.Itoa(n), "--", p)
	var exit *sshconn.ExitError
	if errors.As(err, &exit) && strings.Contains(exit.Stderr, "No such file or directory") {
		return nil, fmt.Errorf("%s on the host: %w", p, podman.ErrNotFound)
	}
	if err != nil {
		return nil, hostCommandError(err)
	}
	return out, nil
}

// ReadFile runs cat on the host: the file's bytes as they are, at the
// speed of the connection.
func (r hostRuntime) ReadFile(ctx context.Context, p string) (io.ReadCloser, error) {
	return r.host.SSH().StreamChecked(ctx, "cat", "--", p)
}

// ExtractTar runs GNU tar on the host, the archive on its standard input.
func (r hostRuntime) ExtractTar(ctx context.Context, dir string, archive io.Reader) error {
	if err := r.host.SSH().Input(ctx, archive, "tar", "-x", "--numeric-owner", "--same-owner", "--same-permissions", "-f", "-", "-C", dir); err != nil {
		return hostCommandError(err)
	}
	return nil
}

// Chmod runs chmod on the host; given a symlink, GNU chmod would change
// its target, so path must be one that no container can replace (a
// volume's root).
func (r hostRuntime) Chmod(ctx context.Context, p string, mode uint32) error {
	if _, err := r.host.SSH().Output(ctx, "chmod", strconv.FormatUint(uint64(mode), 8), "--", p); err != nil {
		return hostCommandError(err)
	}
	return nil
}

// DirEntry is an entry of a directory on the host: Dir/Name, and Link its
// target when it is a symlink.
type DirEntry struct {
	Dir, Name, Link string
}

// ListDirs runs GNU find once for all dirs; -printf with NUL separators
// (names are any bytes but NUL and /): the starting point, the name, the
// symlink target (empty for anything else).
func (r hostRuntime) ListDirs(ctx context.Context, dirs []string) ([]DirEntry, error) {
	if len(dirs) == 0 {
		return nil, nil
	}
	argv := append([]string{"find"}, dirs...)
	argv = append(argv, "-mindepth", "1", "-maxdepth", "1", "-printf", `%H\0%f\0%l\0`)
	out, err := r.host.SSH().Output(ctx, argv...)
	if err != nil {
		return nil, hostCommandError(err)
	}
	return parseDirEntries(out)
}

func parseDirEntries(out []byte) ([]DirEntry, error) {
	fields := strings.Split(string(out), "\x00")
	fields = fields[:len(fields)-1] // after the last NUL
	if len(fields)%3 != 0 {
		return nil, fmt.Errorf("listing directories: %d fields, not triples", len(fields))
	}
	entries := make([]DirEntry, 0, len(fields)/3)
	for i := 0; i < len(fields); i += 3 {
		entries = append(entries, DirEntry{Dir: fields[i], Name: fields[i+1], Link: fields[i+2]})
	}
	return entries, nil
}

// Rename runs GNU mv -T (no-target-directory: to is replaced, not entered
// when it is a symlink to a directory), which is rename(2) on one file system.
func (r hostRuntime) Rename(ctx context.Context, from, to string) error {
	if _, err := r.host.SSH().Output(ctx, "mv", "-T", "--", from, to); err != nil {
		return hostCommandError(err)
	}
	return nil
}

// DiskUsage runs GNU du once for all paths: the disk space each takes
// (blocks, not apparent size, as the kubelet's figures), staying on its
// file system. A path that is gone is left out of the answer.
func (r hostRuntime) DiskUsage(ctx context.Context, paths []string) (map[string]int64, error) {
	if len(paths) == 0 {
		return map[string]int64{}, nil
	}
	out, err := r.host.SSH().Output(ctx, append([]string{"du", "-s", "-x", "-B1", "-0", "--"}, paths...)...)
	var exit *sshconn.ExitError
	if err != nil && !(errors.As(err, &exit) && len(out) > 0) {
		// du exits 1 for a path gone meanwhile, and says the others.
		return nil, hostCommandError(err)
	}
	return parseDiskUsage(out)
}

// parseDiskUsage reads du -0's "<bytes>\t<path>\0" records.
func parseDiskUsage(out []byte) (map[string]int64, error) {
	sizes := map[string]int64{}
	for rec := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if rec == "" {
			continue
		}
		n, p, ok := strings.Cut(rec, "\t")
		size, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("du: unexpected record %q", rec)
		}
		sizes[p] = size
	}
	return sizes, nil
}

// RemovePaths runs rm -rf once for all paths.
func (r hostRuntime) ListenUnix(path string) (net.Listener, error) {
	return r.host.SSH().ListenUnix(path)
}

func (r hostRuntime) RemovePaths(ctx context.Context, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if _, err := r.host.SSH().Output(ctx, append([]string{"rm", "-rf", "--"}, paths...)...); err != nil {
		return hostCommandError(err)
	}
	return nil
}

// EmptyDirs removes what is inside each of dirs, keeping the directories:
// one GNU find, which neither follows symlinks nor leaves the directory's
// file system, removing each entry below it with rm -rf.
func (r hostRuntime) EmptyDirs(ctx context.Context, dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	argv := append([]string{"find"}, dirs...)
	argv = append(argv, "-xdev", "-mindepth", "1", "-maxdepth", "1", "-exec", "rm", "-rf", "--", "{}", "+")
	if _, err := r.host.SSH().Output(ctx, argv...); err != nil {
		return hostCommandError(err)
	}
	return nil
}

func (r hostRuntime) MountVolume(ctx context.Context, v hostvolume.Volume) error {
	return hostvolume.EnsureMounted(ctx, r.host.SSH(), v)
}

func (r hostRuntime) ExecSync(ctx context.Context, container string, cmd []string, out io.Writer, timeout time.Duration) (int, error) {
	return r.Client.Exec(ctx, container, podman.ExecOptions{Cmd: cmd, Stdout: out, Stderr: out, KillOnCancel: true, Timeout: timeout})
}

func (r hostRuntime) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return r.host.SSH().Dial(ctx, network, address)
}

// hostCommandError is a failed host command's error, saying what the
// command said when it ran and failed.
func hostCommandError(err error) error {
	var exit *sshconn.ExitError
	if errors.As(err, &exit) && strings.TrimSpace(exit.Stderr) != "" {
		return errors.New(strings.TrimSpace(exit.Stderr))
	}
	return err
}
