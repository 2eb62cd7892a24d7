// Package kubelet is the rbn-kubelet program: flags, configuration, clients,
// and the controller and kubelet API listener that serve every RemoteBuildNode.
package kubelet

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/controller"
	"github.com/remote-build-nodes/rbn/internal/kubeclient"
	"github.com/remote-build-nodes/rbn/internal/kubeletapi"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/version"
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
	ctrl, err := controller.New(cfg, restCfg, client, events.CoreV1())
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
	})
	if err != nil {
		return err
	}
	ctrl.SetNodePorts(srv)
	log.Info("rbn-kubelet starting", "version", version.Version, "kubeletAPI", srv.Addr().String(), "nodeAddress", cfg.NodeAddress)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); defer cancel(); errs[0] = srv.Run(ctx) }()
	go func() { defer wg.Done(); defer cancel(); errs[1] = ctrl.Run(ctx, 4) }()
	wg.Wait()
	return errors.Join(errs...)
}
