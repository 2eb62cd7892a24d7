package provider

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/svcrelay"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// A pod whose annotation rbn.dev/cluster-services names cluster Services
// (pod.ClusterService) reaches them through two pieces that rbn-kubelet
// keeps while the pod runs:
//   - rbn-forward, in a container of the pod's podman pod (its network
//     namespace), listening on each Service's loopback address and ports
//     (the pod's /etc/hosts gives the Services' names those addresses), and
//     connecting each connection it accepts to the pod's socket on the host;
//   - the SSH remote forward of that socket (sshd listens on it for
//     rbn-kubelet), whose connections svcrelay relays to the Services from
//     inside the cluster. It ends with the host's SSH connection and is
//     made again after each reconnection; meanwhile the forwarder resets
//     the pod's connections, as a Service without endpoints would.

// servicesRoot holds each such pod's socket directory on the host. It is
// short: a Unix socket's path has at most 107 bytes.
const servicesRoot = "/run/rbn/services"

// servicesDir is the pod's socket directory on the host.
func servicesDir(uid types.UID) string { return path.Join(servicesRoot, string(uid)) }

// servicesSocket is the pod's socket on the host, which the forwarder sees
// at pod.ForwarderSocket.
func servicesSocket(uid types.UID) string {
	return path.Join(servicesDir(uid), path.Base(pod.ForwarderSocket))
}

// NoForwarderError: rbn-kubelet has no rbn-forward for the build host's
// architecture (config clusterServices.forwarderDir).
type NoForwarderError struct {
	Arch, Path string
	Err        error
}

func (e *NoForwarderError) Error() string {
	return fmt.Sprintf("no rbn-forward for the build host's architecture %q (%s, clusterServices.forwarderDir): %v", e.Arch, e.Path, e.Err)
}

func (e *NoForwarderError) Unwrap() error { return e.Err }

// Forwarders reads the rbn-forward programs of dir
// (clusterServices.forwarderDir), once per architecture, as the tar a
// forwarder container receives. One serves every node of the process.
type Forwarders struct {
	dir  string
	mu   sync.Mutex
	tars map[string][]byte
}

// NewForwarders reads the programs in dir when first asked for.
func NewForwarders(dir string) *Forwarders { return &Forwarders{dir: dir} }

func (f *Forwarders) tar(arch string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.tars[arch]; ok {
		return b, nil
	}
	p := filepath.Join(f.dir, "rbn-forward-linux-"+arch)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, &NoForwarderError{Arch: arch, Path: p, Err: err}
	}
	b, err := tarFiles([]pod.File{{Path: path.Base(pod.ForwarderPath), Data: data, Mode: 0o755}}, nil, nil, time.Unix(0, 0), -1, 0o755)
	if err != nil {
		return nil, err
	}
	if f.tars == nil {
		f.tars = map[string][]byte{}
	}
	f.tars[arch] = b
	return b, nil
}

// podServices is a pod's relay to its cluster Services while it runs.
type podServices struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startServices sets up the pod's cluster Services once its infra
// container runs (image: the infra container's): the socket directory on
// the host, the relay of the socket, and the forwarder container. Each
// part that is there already is kept (a sync that failed part way, a pod
// adopted from another rbn-kubelet).
func (w *podWorker) startServices(ctx context.Context, image string) error {
	if len(w.plan.ClusterServices) == 0 {
		return nil
	}
	if w.p.cfg.ServiceRelay == nil || w.p.cfg.Forwarders == nil {
		return errors.New("cluster services: this rbn-kubelet has no relay for them")
	}
	// Made at every set-up: a host's reboot empties /run.
	if err := w.p.rt.MakePath(ctx, servicesDir(w.uid()), true); err != nil {
		return fmt.Errorf("cluster services: socket directory: %w", err)
	}
	if w.services == nil {
		w.services = w.p.relayServices(w.log, w.current(), w.plan)
	}
	return w.ensureForwarder(ctx, image)
}

// ensureForwarder runs the pod's forwarder container: kept when it runs,
// made anew (created, given the program, started) otherwise. One found
// stopped is not merely started again: podman restarts the forwarder when
// it ends, so a stopped one may be a container whose program was never
// copied in (rbn-kubelet stopped between the two).
func (w *podWorker) ensureForwarder(ctx context.Context, image string) error {
	name := pod.ForwarderName(w.uid())
	st, err := w.p.rt.InspectContainer(ctx, name)
	switch {
	case err == nil && st.Running:
		return nil
	case err == nil:
		if err := w.p.rt.RemoveContainer(ctx, name, true); err != nil && !errors.Is(err, podman.ErrNotFound) {
			return fmt.Errorf("cluster services: remove the stopped forwarder: %w", err)
		}
	case !errors.Is(err, podman.ErrNotFound):
		return fmt.Errorf("cluster services: forwarder: %w", err)
	}
	info := w.p.rt.Info()
	if info == nil {
		return errors.New("cluster services: the build host's architecture is not known yet")
	}
	program, err := w.p.cfg.Forwarders.tar(info.Arch)
	var missing *NoForwarderError
	if errors.As(err, &missing) {
		return &podFailure{reason: pod.ReasonInvalidClusterServices, msg: "cluster services: " + err.Error()}
	} else if err != nil {
		return fmt.Errorf("cluster services: %w", err)
	}
	if _, err := w.p.rt.CreateContainer(ctx, pod.ForwarderSpec(w.plan, w.uid(), image, servicesDir(w.uid()))); err != nil {
		return fmt.Errorf("cluster services: create the forwarder: %w", err)
	}
	if err := w.p.rt.CopyInto(ctx, name, "/", bytes.NewReader(program)); err != nil {
		return fmt.Errorf("cluster services: copy rbn-forward into the forwarder: %w", err)
	}
	if err := w.p.rt.StartContainer(ctx, name); err != nil {
		return fmt.Errorf("cluster services: start the forwarder: %w", err)
	}
	w.acts.add(name, actStarted)
	return nil
}

// stopServices ends the pod's relay (its open connections too); the
// forwarder goes with the podman pod, the socket directory with
// removeServicesDir.
func (w *podWorker) stopServices() {
	if w.services == nil {
		return
	}
	w.services.cancel()
	<-w.services.done
	w.services = nil
}

// relayServices listens on the pod's socket on the host whenever the host's
// SSH connection is up and relays what the forwarder sends to the pod's
// Services, until stopped: after the connection (and with it the listener)
// is lost, it listens again once the host changes, or after Retry.Create
// when listening failed with the host up.
func (p *Pods) relayServices(log *slog.Logger, pd *corev1.Pod, plan *pod.Plan) *podServices {
	routes := svcrelay.Routes{}
	for _, cs := range plan.ClusterServices {
		for i, l := range cs.Listen() {
			routes[l] = svcrelay.Route{Namespace: cs.Namespace, Service: cs.Name, Port: cs.Ports[i]}
		}
	}
	socket, name := servicesSocket(pd.UID), pd.Namespace+"/"+pd.Name
	// Run's context (workers sync under Run); Run waits for the relay as
	// for the workers.
	ctx, cancel := context.WithCancel(cmp.Or[context.Context](p.ctx, context.Background()))
	s := &podServices{cancel: cancel, done: make(chan struct{})}
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		defer close(s.done)
		last := ""
		for {
			changed := p.rt.Changed()
			listened, err := p.serveSocket(ctx, socket, name, routes)
			if ctx.Err() != nil {
				return
			}
			// Once per distinct failure since it last listened: a host
			// away for long fails every retry alike.
			if listened {
				last = ""
			}
			if msg := fmt.Sprint(err); msg != last {
				last = msg
				log.Info("cluster services: relay stopped, listening again once the host is back", "err", err)
			}
			t := p.cfg.Clock.NewTimer(p.cfg.Retry.Create)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-changed:
			case <-t.C():
			}
			t.Stop()
		}
	}()
	return s
}

// serveSocket listens on socket (removing one an earlier connection left:
// sshd does not replace it) and relays until the listener or ctx ends;
// listened tells whether it got as far as listening.
func (p *Pods) serveSocket(ctx context.Context, socket, pod string, routes svcrelay.Routes) (listened bool, _ error) {
	if !p.rt.Ready() {
		return false, errors.New("the build host is not ready")
	}
	if err := p.rt.RemovePaths(ctx, []string{socket}); err != nil {
		return false, err
	}
	ln, err := p.rt.ListenUnix(socket)
	if err != nil {
		return false, err
	}
	return true, p.cfg.ServiceRelay.Serve(ctx, ln, pod, routes)
}

// removeServicesDir removes the pod's socket directory from the host, for a
// pod that was planned with cluster Services or names them now (adopted
// for its deletion alone, it has no plan).
func (w *podWorker) removeServicesDir(ctx context.Context) error {
	if (w.plan == nil || len(w.plan.ClusterServices) == 0) && len(pod.ReferencedServices(w.current())) == 0 {
		return nil
	}
	return w.p.rt.RemovePaths(ctx, []string{servicesDir(w.uid())})
}
