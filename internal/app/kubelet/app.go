// Package kubelet is the rbn-kubelet program: flags, configuration, clients,
// and the controller and kubelet API listener that serve every RemoteBuildNode.
package kubelet

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	pvcontroller "sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/remote-build-nodes/rbn/internal/callstats"
	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/controller"
	"github.com/remote-build-nodes/rbn/internal/kubeclient"
	"github.com/remote-build-nodes/rbn/internal/kubeletapi"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/metrics"
	"github.com/remote-build-nodes/rbn/internal/podnet"
	"github.com/remote-build-nodes/rbn/internal/provisioner"
	"github.com/remote-build-nodes/rbn/internal/sharding"
	"github.com/remote-build-nodes/rbn/internal/svcrelay"
	"github.com/remote-build-nodes/rbn/internal/version"
	"github.com/remote-build-nodes/rbn/provider"
)

// Run runs rbn-kubelet with args (without the program name) until ctx ends.
func Run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("rbn-kubelet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the "+config.KubeletKind+" file (apiVersion "+config.APIVersion+")")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig path; overrides the configuration's kubeconfig")
	nodeAddress := fs.String("node-address", "", "IP address the apiserver reaches the kubelet API at; overrides the configuration's nodeAddress")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		_, err := fmt.Fprintln(stderr, "rbn-kubelet", version.Version)
		return err
	}
	if *configPath == "" {
		return errors.New("--config is required")
	}
	cfg := &config.KubeletConfiguration{}
	if err := config.Load(*configPath, cfg); err != nil {
		return err
	}
	if *kubeconfig != "" {
		cfg.Kubeconfig = *kubeconfig
	}
	if *nodeAddress != "" {
		cfg.NodeAddress = *nodeAddress
	}
	if err := config.ValidateAll(cfg); err != nil {
		return err
	}
	log, err := logging.Setup(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	ctx = logging.IntoContext(ctx, log)

	restCfg, err := kubeclient.RESTConfig(cfg.Kubeconfig, "rbn-kubelet/"+version.Version)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = cfg.KubeAPIQPS, int(cfg.KubeAPIBurst)
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// Events go through a client of their own, with their own budget.
	eventCfg := rest.CopyConfig(restCfg)
	eventCfg.QPS, eventCfg.Burst = cfg.EventRecordQPS, int(cfg.EventBurst)
	events, err := kubernetes.NewForConfig(eventCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client for events: %w", err)
	}
	var ctrl *controller.Controller
	elector, err := newElector(restCfg, cfg.Sharding, func(node string) { ctrl.Enqueue(node) })
	if err != nil {
		return err
	}
	ctrl, err = controller.New(cfg, restCfg, client, events.CoreV1(), elector, namespace())
	if err != nil {
		return err
	}
	var clientCA []byte
	if cfg.ClientCAFile != "" {
		if clientCA, err = os.ReadFile(cfg.ClientCAFile); err != nil {
			return fmt.Errorf("kubelet API client CA: %w", err)
		}
	}
	auth, err := kubeletapi.NewWebhookAuth(client, clientCA)
	if err != nil {
		return err
	}
	firstPort, lastPort, _ := cfg.NodePortRange() // validated above
	srv, err := kubeletapi.New(kubeletapi.Config{
		ListenAddress: cfg.ListenAddress,
		Port:          cfg.KubeletPort,
		NodePortFirst: firstPort,
		NodePortLast:  lastPort,
		CertFile:      cfg.TLSCertFile,
		KeyFile:       cfg.TLSKeyFile,
		ClientCAFile:  cfg.ClientCAFile,
		Pods:          ctrl.PodLister(),
		Handlers:      ctrl.Handlers,
		Auth:          auth,
		Ready:         ctrl.Ready,
	})
	if err != nil {
		return err
	}
	ctrl.SetNodePorts(srv)
	if cfg.PodNetwork.Enabled() {
		blocks, _ := cfg.PodNetwork.Blocks() // validated above
		ctrl.SetPodNetwork(&podnet.Blocks{ConfigMaps: client.CoreV1().ConfigMaps(namespace()), Config: blocks})
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(metrics.NewSSHCollector(metrics.PoolConnections(ctrl.SSHConnections())), metrics.NewTransferCollector(ctrl.Relay()),
		metrics.NewPodmanCollector(hostCalls(ctrl, (*provider.Host).PodmanCallStats)),
		metrics.NewHostCommandCollector(hostCalls(ctrl, (*provider.Host).CommandStats)), metrics.NewHostWorkCollector(hostWorks(ctrl)),
		metrics.NewVolumeRootCollector(volumeRoots(ctrl)),
		metrics.NewImageCollectionCollector(imageCollections(ctrl)), metrics.NewPodTimesCollector(podTimes(ctrl)))
	serviceRelay, err := svcrelay.New(svcrelay.Config{Resolver: svcrelay.NewServiceResolver(ctrl.ServiceLister()), Metrics: svcrelay.NewMetrics(reg)})
	if err != nil {
		return err
	}
	ctrl.SetClusterServices(serviceRelay, provider.NewForwarders(cfg.ClusterServices.ForwarderDir))
	metricsLn, err := metrics.Listen(cfg.MetricsBindAddress)
	if err != nil {
		return err
	}
	log.Info("rbn-kubelet starting", "version", version.Version, "kubeletAPI", srv.Addr().String(), "nodeAddress", cfg.NodeAddress)

	volumes := newVolumeProvisioner(ctx, client, ctrl, log)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The elector outlives the controller: after ctx ends, the controller
	// stops every node and then releases their Leases, which needs it.
	electorCtx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElector()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	wg.Add(5)
	go func() { defer wg.Done(); defer cancel(); volumes.Run(ctx) }()
	go func() {
		defer wg.Done()
		defer cancel()
		errs[3] = metrics.Serve(ctx, metricsLn, reg, cfg.EnableProfiling)
	}()
	go func() { defer wg.Done(); defer cancel(); errs[0] = srv.Run(ctx) }()
	go func() { defer wg.Done(); defer cancel(); defer stopElector(); errs[1] = ctrl.Run(ctx, 4) }()
	go func() { defer wg.Done(); defer cancel(); errs[2] = elector.Run(electorCtx) }()
	wg.Wait()
	return errors.Join(errs...)
}

// newVolumeProvisioner is the rbn.dev/host-local provisioner of the nodes
// ctrl serves (see internal/provisioner). A claim or volume whose host
// work fails is tried again without end, backing off up to two minutes: a
// host comes back, and a volume's data must go from it then. Its own
// metrics are not served (rbn-kubelet's registry has rbn's).
func newVolumeProvisioner(ctx context.Context, client kubernetes.Interface, ctrl *controller.Controller, log *slog.Logger) *pvcontroller.ProvisionController {
	return pvcontroller.NewProvisionController(ctx, client, provisioner.Name, provisioner.New(ctrl, log.With("part", "provisioner")),
		pvcontroller.LeaderElection(false),
		pvcontroller.MetricsPort(0),
		pvcontroller.AddFinalizer(true),
		pvcontroller.ResyncPeriod(time.Minute),
		pvcontroller.FailedProvisionThreshold(0),
		pvcontroller.FailedDeleteThreshold(0),
		pvcontroller.RateLimiter(workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 2*time.Minute)),
		pvcontroller.ProvisionTimeout(5*time.Minute),
		pvcontroller.DeletionTimeout(5*time.Minute),
	)
}

// hostCalls lists what calls of ctrl's build hosts says at each scrape
// (their podman calls, their SSH commands), named by their SSH address.
func hostCalls(ctrl *controller.Controller, calls func(*provider.Host) map[string]callstats.Op) metrics.HostCallLists {
	return func() []metrics.HostCalls {
		hosts := ctrl.BuildHosts()
		out := make([]metrics.HostCalls, 0, len(hosts))
		for _, h := range hosts {
			out = append(out, metrics.HostCalls{Host: h.SSH().Addr(), Calls: calls(h)})
		}
		return out
	}
}

// hostWorks lists the build hosts' totals of orphan sweeps and relayed
// pulls for the metrics.
func hostWorks(ctrl *controller.Controller) metrics.HostWorks {
	return func() []metrics.HostWork {
		hosts := ctrl.BuildHosts()
		out := make([]metrics.HostWork, 0, len(hosts))
		for _, h := range hosts {
			sw, rl := h.SweepStats(), h.RelayStats()
			out = append(out, metrics.HostWork{Host: h.SSH().Addr(),
				Sweeps: sw.Sweeps, SweepsFailed: sw.Failed, Pods: sw.Removed.Pods, Containers: sw.Removed.Containers, Volumes: sw.Removed.Volumes,
				RelayPulls: rl.Pulls, RelayFailed: rl.Failed, RelayBlobs: rl.Blobs, RelayBytes: rl.Bytes})
		}
		return out
	}
}

// volumeRoots lists the served nodes' volume roots, as last read, for the
// metrics, sorted by node.
func volumeRoots(ctrl *controller.Controller) metrics.VolumeRoots {
	return func() []metrics.VolumeRoot {
		watches := ctrl.HostVolumes()
		out := make([]metrics.VolumeRoot, 0, len(watches))
		for node, w := range watches {
			sp, known := w.Space()
			out = append(out, metrics.VolumeRoot{Node: node, Known: known,
				Size: sp.Total, Available: sp.Available, Volumes: sp.Volumes, VolumesSize: sp.Size, VolumesUsed: sp.Used,
				OrphansRemoved: w.Swept()})
		}
		slices.SortFunc(out, func(a, b metrics.VolumeRoot) int { return strings.Compare(a.Node, b.Node) })
		return out
	}
}

// imageCollections lists the served nodes' image garbage collections'
// totals, and their evictions for disk pressure, for the metrics, sorted
// by node.
func imageCollections(ctrl *controller.Controller) metrics.ImageCollections {
	return func() []metrics.ImageCollection {
		gcs, pressures := ctrl.ImageGCs(), ctrl.DiskPressures()
		out := make([]metrics.ImageCollection, 0, len(gcs))
		for node, gc := range gcs {
			st := gc.Stats()
			c := metrics.ImageCollection{Node: node, Removed: st.Removed, Bytes: st.Bytes, Failures: st.Failures}
			if dp := pressures[node]; dp != nil {
				c.Evictions = dp.Evictions()
			}
			out = append(out, c)
		}
		slices.SortFunc(out, func(a, b metrics.ImageCollection) int { return strings.Compare(a.Node, b.Node) })
		return out
	}
}

// podTimes lists the served nodes' pod start stages and status latencies
// for the metrics, sorted by node.
func podTimes(ctrl *controller.Controller) metrics.PodTimesList {
	return func() []metrics.PodTimes {
		sets := ctrl.PodSets()
		out := make([]metrics.PodTimes, 0, len(sets))
		for node, pods := range sets {
			out = append(out, metrics.PodTimes{Node: node, Stages: pods.StartStages(), StatusLatency: pods.StatusLatency()})
		}
		slices.SortFunc(out, func(a, b metrics.PodTimes) int { return strings.Compare(a.Node, b.Node) })
		return out
	}
}

// Environment of the replica's identity (the Deployment sets both from the
// downward API).
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	// DefaultNamespace holds the node Leases when POD_NAMESPACE is not set.
	DefaultNamespace = "rbn-system"
)

// namespace is rbn's: the replica's own, else DefaultNamespace. It holds the
// nodes' ownership Leases and the pod network's blocks.
func namespace() string {
	if ns := os.Getenv(EnvPodNamespace); ns != "" {
		return ns
	}
	return DefaultNamespace
}

// newElector builds the per-node Lease elector of this replica, with a
// client of its own: renewals must never queue behind status updates.
func newElector(restCfg *rest.Config, cfg config.ShardingConfiguration, onChange func(node string)) (*sharding.Elector, error) {
	identity, namespace := os.Getenv(EnvPodName), namespace()
	if identity == "" {
		// Unique per machine only: two processes on one machine need POD_NAME.
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("replica identity: %s not set and no hostname: %w", EnvPodName, err)
		}
		identity = h
	}
	leaseCfg := rest.CopyConfig(restCfg)
	leaseCfg.QPS, leaseCfg.Burst = cfg.KubeAPIQPS, int(cfg.KubeAPIBurst)
	leases, err := kubernetes.NewForConfig(leaseCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for node leases: %w", err)
	}
	return sharding.New(sharding.Config{
		Leases: leases.CoordinationV1(), Namespace: namespace, Identity: identity,
		LeaseDuration: cfg.LeaseDuration.Duration, RenewDeadline: cfg.RenewDeadline.Duration,
		RenewInterval: cfg.RenewInterval.Duration, RetryPeriod: cfg.RetryPeriod.Duration,
		OnChange: onChange,
	})
}
