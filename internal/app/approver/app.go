// Package approver is the rbn-approver program (the approver mode of the
// rbn-kubelet binary): it approves rbn-kubelet's requests for the client
// and serving certificates of the nodes it serves (internal/nodeidentity),
// under an account of its own.
package approver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/kubeclient"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/nodeidentity"
	"github.com/remote-build-nodes/rbn/internal/version"
)

// DefaultRequester is rbn-kubelet's service account as manifests/ install it.
const DefaultRequester = "system:serviceaccount:rbn-system:rbn-kubelet"

// EnvPodNamespace names the approver's namespace (the Deployment sets it
// from the downward API); DefaultNamespace stands in when it is not set.
const (
	EnvPodNamespace  = "POD_NAMESPACE"
	DefaultNamespace = "rbn-system"
)

// DefaultMaxLifetime bounds the certificates' lifetime: twice what
// rbn-kubelet asks (nodeidentity.DefaultLifetime).
const DefaultMaxLifetime = 2 * nodeidentity.DefaultLifetime

type options struct {
	kubeconfig, requester, namespace, logFormat, logLevel string
	maxLifetime                                           time.Duration
}

// defaultNamespace is the approver's own namespace, rbn's, else
// DefaultNamespace.
func defaultNamespace() string {
	if ns := os.Getenv(EnvPodNamespace); ns != "" {
		return ns
	}
	return DefaultNamespace
}

func parse(args []string, stderr io.Writer) (*options, bool, error) {
	fs := flag.NewFlagSet("rbn-approver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig path; empty: the in-cluster configuration")
	fs.StringVar(&o.requester, "requester", DefaultRequester, "the user whose node identity requests are approved: rbn-kubelet's service account")
	fs.StringVar(&o.namespace, "namespace", defaultNamespace(), "rbn's namespace, which holds the nodes' Services (their ClusterIPs are the addresses serving certificates are approved for); default $"+EnvPodNamespace+", else "+DefaultNamespace)
	fs.DurationVar(&o.maxLifetime, "max-lifetime", DefaultMaxLifetime, "the longest certificate lifetime a request may ask for")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, false, err
	}
	if *showVersion {
		return nil, true, nil
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if o.requester == "" {
		errs = append(errs, errors.New("--requester is required"))
	}
	if o.namespace == "" {
		errs = append(errs, errors.New("--namespace is required"))
	}
	if o.maxLifetime < 10*time.Minute {
		errs = append(errs, fmt.Errorf("--max-lifetime %s: at least 10m (the signer's minimum)", o.maxLifetime))
	}
	if agg := logging.ValidateOptions(o.logFormat, o.logLevel).ToAggregate(); agg != nil {
		errs = append(errs, agg)
	}
	return o, false, errors.Join(errs...)
}

// Run runs rbn-approver with args (without the program name) until ctx ends.
func Run(ctx context.Context, args []string, stderr io.Writer) error {
	o, showVersion, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if showVersion {
		_, err := fmt.Fprintln(stderr, "rbn-approver", version.Version)
		return err
	}
	log, err := logging.Setup(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	ctx = logging.IntoContext(ctx, log)
	restCfg, client, err := kubeclient.Clientset(o.kubeconfig, "rbn-approver/"+version.Version)
	if err != nil {
		return err
	}
	meta, err := metadata.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	rbns := metadatainformer.NewFilteredMetadataInformer(meta, schema.GroupVersionResource{
		Group: rbnv1.SchemeGroupVersion.Group, Version: rbnv1.SchemeGroupVersion.Version, Resource: "remotebuildnodes"}, "", 0, cache.Indexers{}, nil).Informer()
	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	nodeInformer := nodes.Informer()
	// The nodes' Services are in rbn's namespace only: the approver may
	// read no other's (a Role, not a ClusterRole).
	nsFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(o.namespace))
	services := nsFactory.Core().V1().Services()
	serviceInformer := services.Informer()
	a := nodeidentity.NewApprover(nodeidentity.ApproverConfig{
		Client: client, Log: log,
		Policy: nodeidentity.Policy{Requester: o.requester, MaxLifetime: o.maxLifetime},
		Nodes: nodeidentity.ListerNodes{RemoteBuildNodes: rbns.GetStore(), Nodes: nodes.Lister(),
			Services: services.Lister().Services(o.namespace)},
	})
	go rbns.RunWithContext(ctx)
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	nsFactory.Start(ctx.Done())
	defer nsFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), rbns.HasSynced, nodeInformer.HasSynced, serviceInformer.HasSynced) {
		return ctx.Err()
	}
	log.Info("rbn-approver starting", "version", version.Version, "requester", o.requester, "namespace", o.namespace, "maxLifetime", o.maxLifetime)
	return a.Run(ctx)
}
