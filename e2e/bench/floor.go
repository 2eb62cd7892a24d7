package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// ---------------------------------------------------------------------------------------------
// Build hosts and the floor: the bindings over our own SSH connection.

// floorConn is what rbn-kubelet holds per host, built the same way
// (provider.NewHost): an sshconn client with its interactive session (no
// Nagle stall) and a podman client dialing the socket through it.
type floorConn struct {
	host   framework.BuildHost
	pm     *podman.Client
	ssh    *sshconn.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func dialFloor(ctx context.Context, h framework.BuildHost) (*floorConn, error) {
	key, err := os.ReadFile(h.Key)
	if err != nil {
		return nil, err
	}
	known, err := os.ReadFile(h.Known)
	if err != nil {
		return nil, err
	}
	sc, err := sshconn.New(sshconn.Config{
		Host: h.Address, Port: h.Port, User: h.User, PrivateKey: key, KnownHosts: known, Interactive: true,
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	f := &floorConn{host: h, ssh: sc, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(f.done); sc.Run(runCtx) }()
	for {
		changed := sc.Changed()
		st := sc.State()
		if st.Connected {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			f.close()
			return nil, fmt.Errorf("ssh %s: not connected (%v): %w", sc.Addr(), st.Err, ctx.Err())
		}
	}
	f.pm, err = podman.New(podman.Config{
		Name: "bench-" + h.Name,
		Dial: func(ctx context.Context) (net.Conn, error) { return sc.Dial(ctx, "unix", h.Socket) },
	})
	if err != nil {
		f.close()
		return nil, err
	}
	if err := f.pm.Connect(ctx); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

func (f *floorConn) close() {
	if f.pm != nil {
		_ = f.pm.Close()
	}
	f.cancel()
	<-f.done
}

func (b *bench) floorOf(node string) *floorConn {
	for _, f := range b.floors {
		if f.host.Name == node {
			return f
		}
	}
	return nil
}

// floorContainer is the bare container of the floor: the pod's image and
// command, nothing rbn adds.
func floorContainer(name, podID string, labels map[string]string, command []string) *specgen.SpecGenerator {
	s := specgen.NewSpecGenerator(benchImage, false)
	s.Name = name
	s.Pod = podID
	s.Labels = labels
	s.Command = command
	s.RestartPolicy = "no"
	return s
}

// floorStart creates and starts a container (in a podman pod of its own when
// inPod, as rbn runs every container: infra container, shared ipc/net/uts)
// and returns once an inspection says it runs. A failed start is tried
// again, twice at most, as rbn's pod workers do: many network setups at
// once on one host can fail in netavark ("iptables: Chain already exists").
// retries, when not nil, counts the starts tried again.
func floorStart(ctx context.Context, f *floorConn, name string, inPod bool, labels map[string]string, command []string, retries *atomic.Int32) error {
	start := func(op func(context.Context, string) error, what string) error {
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			if err = op(ctx, what); err == nil {
				return nil
			}
			if retries != nil {
				retries.Add(1)
			}
		}
		return err
	}
	podID := ""
	if inPod {
		ps := specgen.NewPodSpecGenerator()
		ps.Name = name + "-pod"
		ps.Labels = labels
		ps.NoInfra = false
		ps.SharedNamespaces = []string{"ipc", "net", "uts"}
		id, err := f.pm.CreatePod(ctx, ps)
		if err != nil {
			return err
		}
		if err := start(f.pm.StartPod, ps.Name); err != nil {
			return err
		}
		podID = id
	}
	if _, err := f.pm.CreateContainer(ctx, floorContainer(name, podID, labels, command)); err != nil {
		return err
	}
	if err := start(f.pm.StartContainer, name); err != nil {
		return err
	}
	st, err := f.pm.InspectContainer(ctx, name)
	if err != nil {
		return err
	}
	if !st.Running && !st.Exited() {
		return fmt.Errorf("container %s is %s after start", name, st.Status)
	}
	return nil
}

func floorRemove(f *floorConn, name string, inPod bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if inPod {
		_ = f.pm.RemovePod(ctx, name+"-pod", 0)
		return
	}
	_ = f.pm.RemoveContainer(ctx, name, true)
}
