package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// NodeName is the node this handler serves.
func (p *Pods) NodeName() string { return p.cfg.NodeName }

// runningContainer finds the running instance of a pod's container.
func (p *Pods) runningContainer(ctx context.Context, namespace, name, container string) (*corev1.Container, *podman.ContainerState, error) {
	w, err := p.worker(ctx, namespace, name)
	if err != nil {
		return nil, nil, err
	}
	return w.runningContainer(ctx, container)
}

// runningContainer asks the host for the running instance of the pod's
// container.
func (w *podWorker) runningContainer(ctx context.Context, container string) (*corev1.Container, *podman.ContainerState, error) {
	pd := w.current()
	spec := findContainer(pd, container)
	if spec == nil {
		return nil, nil, errdefs.NotFoundf("container %q is not in pod %s/%s", container, pd.Namespace, pd.Name)
	}
	obs, err := w.observe(ctx)
	if err != nil {
		return nil, nil, err
	}
	o := obs[container]
	if o == nil || o.current == nil || !o.current.Running {
		return nil, nil, errdefs.InvalidInputf("container %q in pod %s/%s is not running", container, pd.Namespace, pd.Name)
	}
	return spec, o.current, nil
}

// Exec runs cmd in a running container of a pod (kubectl exec). A non-zero
// exit comes back as a utilexec.ExitError, unwrapped: the kubelet API tells
// the client the exit code from it.
//
// The container is the one the pod's status last reported running, as
// kubelet execs into the container its cache knows, without asking the
// host first (a container list and inspection, about 10 ms of a 100 ms
// exec here). When podman refuses that one (it ended, or was replaced,
// since), the host is asked, and the command runs in the container
// running now, or fails saying it is not running: nothing had started,
// so nothing runs twice.
func (p *Pods) Exec(ctx context.Context, namespace, name, container string, cmd []string, attach vkapi.AttachIO) error {
	w, err := p.worker(ctx, namespace, name)
	if err != nil {
		return err
	}
	o := podman.ExecOptions{Cmd: cmd, Stdin: attach.Stdin(), TTY: attach.TTY(), Resize: termSizes(ctx, attach.Resize())}
	if out := attach.Stdout(); out != nil {
		o.Stdout = out
	}
	if errw := attach.Stderr(); errw != nil {
		o.Stderr = errw
	}
	var code int
	var notStarted *podman.ExecNotStartedError
	id := w.runningContainerID(container)
	if id != "" {
		code, err = p.rt.Exec(ctx, id, o)
	}
	if id == "" || errors.As(err, &notStarted) && ctx.Err() == nil {
		_, st, lerr := w.runningContainer(ctx, container)
		switch {
		case lerr != nil:
			return lerr
		case st.ID == id:
			// Running as the status said: podman refused it for
			// another reason, which stands.
		default:
			if notStarted != nil && notStarted.Size != nil {
				o.Size = notStarted.Size // taken from the client by the refused Exec
			}
			code, err = p.rt.Exec(ctx, st.ID, o)
		}
	}
	if err != nil {
		return fmt.Errorf("exec in container %q of pod %s/%s: %w", container, namespace, name, err)
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// Attach connects to the main process of a running container (kubectl attach).
func (p *Pods) Attach(ctx context.Context, namespace, name, container string, attach vkapi.AttachIO) error {
	spec, st, err := p.runningContainer(ctx, namespace, name, container)
	if err != nil {
		return err
	}
	o := podman.AttachOptions{TTY: spec.TTY, Resize: termSizes(ctx, attach.Resize())}
	if in := attach.Stdin(); in != nil {
		if !spec.Stdin {
			return errdefs.InvalidInputf("container %q in pod %s/%s was not created with stdin: true, so its input cannot be attached", container, namespace, name)
		}
		o.Stdin = in
	}
	if out := attach.Stdout(); out != nil {
		o.Stdout = out
	}
	if errw := attach.Stderr(); errw != nil {
		o.Stderr = errw
	}
	if err := p.cfg.Host.Podman().Attach(ctx, st.ID, o); err != nil {
		return fmt.Errorf("attach to container %q of pod %s/%s: %w", container, namespace, name, err)
	}
	return nil
}

// termSizes relays terminal sizes until ctx ends.
func termSizes(ctx context.Context, in <-chan vkapi.TermSize) <-chan podman.TermSize {
	if in == nil {
		return nil
	}
	out := make(chan podman.TermSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case sz, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- podman.TermSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// portForwardDrain is how long a forward keeps sending to the pod after
// the pod's side closed, as containerd does.
const portForwardDrain = time.Second

// PortForward connects stream to a TCP port of the pod (kubectl
// port-forward): an SSH direct-tcpip channel from the host to the pod's IP,
// which is on a bridge network the host routes to.
//
// stream is read to its end whatever happens here: virtual-kubelet's SPDY
// connection hands a stream's data frames to a frame worker that it shares
// with other streams and that waits until the data is read, so one stream
// left unread (a forward that failed, or whose pod side broke, while the
// client still sent) stops the streams of its worker from being answered,
// and the connection from ever closing. Seen: after a build host's SSH
// connection was cut, the forwards that failed during the cut left every
// later stream of that connection without a reply (docs/services.md).
func (p *Pods) PortForward(ctx context.Context, namespace, name string, port int32, stream io.ReadWriteCloser) error {
	conn, err := p.DialPod(ctx, namespace, name, port)
	if err != nil {
		go drain(stream)
		return err
	}
	defer conn.Close()
	return splice(stream, conn, portForwardDrain)
}

// DialPod connects to a TCP port of the pod from its host (rbn-portal's raw
// port-forward; PortForward's connection).
func (p *Pods) DialPod(ctx context.Context, namespace, name string, port int32) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, errdefs.InvalidInputf("invalid port %d", port)
	}
	w, err := p.worker(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	pd := w.current()
	if pd.Status.PodIP == "" {
		return nil, errdefs.InvalidInputf("pod %s/%s has no IP address yet", namespace, name)
	}
	if pod.Ended(pd.Status.Phase) {
		return nil, errdefs.InvalidInputf("pod %s/%s has ended (%s): nothing listens", namespace, name, pd.Status.Phase)
	}
	addr := net.JoinHostPort(pd.Status.PodIP, strconv.Itoa(int(port)))
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := p.cfg.Host.SSH().Dial(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to port %d of pod %s/%s (%s) from the host: %w", port, namespace, name, addr, err)
	}
	return conn, nil
}

// drain reads the client's stream to its end (the client finishing or
// resetting it, or its connection closing), discarding what it reads.
func drain(client io.Reader) {
	_, _ = io.Copy(io.Discard, client)
}

// discardAfterError writes to w until a write fails, then discards: the
// client's stream is still read to its end (see PortForward).
type discardAfterError struct {
	w   io.Writer
	err error
}

func (d *discardAfterError) Write(b []byte) (int, error) {
	if d.err == nil {
		if _, err := d.w.Write(b); err != nil {
			d.err = err
		}
	}
	return len(b), nil
}

// splice copies both ways between a client stream and a connection to the
// pod. The client's EOF half-closes the connection and the pod's answer
// still flows back; the pod's EOF ends the forward once the client's data
// drained (at most grace later); a broken client stream ends it at once.
// The client is read to its end even after splice returned.
func splice(client io.ReadWriter, pod net.Conn, grace time.Duration) error {
	up := make(chan error, 1)
	down := make(chan error, 1)
	go func() {
		// The client is read to its end even after the pod's side broke
		// (see PortForward); up reports the first failure, of either side.
		toPod := &discardAfterError{w: pod}
		_, err := io.Copy(toPod, client)
		if err == nil && toPod.err == nil {
			if cw, ok := pod.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}
		switch {
		case err != nil:
			up <- fmt.Errorf("client stream: %w", err)
		case toPod.err != nil:
			up <- fmt.Errorf("to the pod: %w", toPod.err)
		default:
			up <- nil
		}
	}()
	go func() {
		_, err := io.Copy(client, pod)
		down <- err
	}()
	select {
	case err := <-up:
		if err != nil {
			return err
		}
		if err := <-down; err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	case err := <-down:
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-up:
		case <-t.C:
		}
		return err
	}
}
