// Package portal is the rbn-portal program (the portal mode of the
// rbn-kubelet binary): flags, clients, the Portal, its metrics and its
// health probes. One runs on every real node, host network, NET_ADMIN and
// SYS_ADMIN (its own network namespace).
package portal

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/remote-build-nodes/rbn/internal/kubeclient"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/metrics"
	"github.com/remote-build-nodes/rbn/internal/portal"
	"github.com/remote-build-nodes/rbn/internal/version"
)

// Default addresses of the portal's own servers (host network: node ports).
const (
	DefaultMetricsAddress = "0.0.0.0:10268"
	DefaultHealthAddress  = "0.0.0.0:10269"
)

// The relay's paths to pods (--port-forward-via).
const (
	viaKubelet = "kubelet"
	// viaKubeletSPDY is viaKubelet without rbn's raw port-forward: every
	// connection over the Kubernetes port-forward protocol (SPDY), as
	// before the raw one existed.
	viaKubeletSPDY = "kubelet-spdy"
	viaAPIServer   = "apiserver"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// options are the parsed flags.
type options struct {
	kubeconfig, metricsAddress, healthAddress, logFormat, logLevel string
	capture                                                        portal.Capture
	// portForwardVia is the relay's path to pods: viaKubelet or viaAPIServer;
	// kubeletCAFile verifies kubelet APIs (viaKubelet).
	portForwardVia, kubeletCAFile string
	// cleanup: remove the capture a portal installed with these flags,
	// and exit (kube-proxy's --cleanup).
	cleanup bool
}

func parse(args []string, stderr io.Writer) (*options, bool, error) {
	fs := flag.NewFlagSet("rbn-portal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	var podCIDR string
	var iifs stringList
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig path; empty: the in-cluster configuration")
	fs.StringVar(&podCIDR, "pod-cidr", "", "the rbn pod range (IPv4 CIDR) whose addresses the portal captures and relays (required)")
	c := &o.capture
	linkCIDR := fs.String("link-cidr", portal.DefaultLinkCIDR.String(), "IPv4 /30 of the veth pair between the node ("+portal.HostLink+
		", the first address) and the portal's network namespace (the second)")
	fs.IntVar(&c.Table, "route-table", portal.DefaultRouteTable, "routing table of the node's route of the pod range into the portal's namespace")
	fs.IntVar(&c.Priority, "route-priority", portal.DefaultRulePriority, "priority of the policy rules into the table")
	fs.Var(&iifs, "input-interface", "route into the portal only packets to the range arriving on this interface (repeatable); none: every packet to the range, locally generated ones included")
	fs.StringVar(&o.portForwardVia, "port-forward-via", viaKubelet, "how connections reach pods: "+viaKubelet+
		" (the port-forward endpoint of the pod's node's kubelet API, at the address and port its Node advertises: rbn's raw port-forward, "+
		"one TLS connection per connection, else the Kubernetes port-forward protocol (SPDY) where the node's rbn-kubelet does not serve it; "+
		"through the apiserver when that refuses the portal, as an rbn-kubelet older than the portal does), "+
		viaKubeletSPDY+" (the same, always over SPDY) or "+
		viaAPIServer+" (the pods/portforward subresource, which the apiserver proxies to the same endpoint: one more hop)")
	fs.StringVar(&o.kubeletCAFile, "kubelet-ca-file", "", "certificate authority that verifies kubelet APIs' serving certificates (--port-forward-via="+
		viaKubelet+" or "+viaKubeletSPDY+"); empty: the client configuration's (in a pod, the cluster's)")
	fs.StringVar(&o.metricsAddress, "metrics-address", DefaultMetricsAddress, `address (IP:port) of GET /metrics; "0" serves none`)
	fs.StringVar(&o.healthAddress, "health-address", DefaultHealthAddress, "address (IP:port) of GET /healthz and /readyz")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove the policy rules into --route-table, its routes and the "+portal.HostLink+" link a portal left, and exit (after its pod was killed: a stopping portal removes them itself)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, false, err
	}
	if *showVersion {
		return nil, true, nil
	}
	c.InputInterfaces = iifs
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if podCIDR == "" {
		if !o.cleanup {
			errs = append(errs, errors.New("--pod-cidr is required"))
		}
	} else if p, err := netip.ParsePrefix(podCIDR); err != nil || !p.Addr().Is4() || p != p.Masked() {
		errs = append(errs, fmt.Errorf("--pod-cidr %q: not an IPv4 network address with a prefix length", podCIDR))
	} else {
		c.CIDR = p
	}
	if p, err := netip.ParsePrefix(*linkCIDR); err != nil {
		errs = append(errs, fmt.Errorf("--link-cidr %q: %w", *linkCIDR, err))
	} else {
		c.LinkCIDR = p
	}
	// Validate reports the pod range again, which is checked above.
	if err := c.ValidateRouting(); err != nil {
		errs = append(errs, err)
	} else if c.CIDR.IsValid() && c.LinkCIDR.IsValid() {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	switch o.portForwardVia {
	case viaKubelet, viaKubeletSPDY:
	case viaAPIServer:
		if o.kubeletCAFile != "" {
			errs = append(errs, fmt.Errorf("--kubelet-ca-file is for --port-forward-via=%s or %s", viaKubelet, viaKubeletSPDY))
		}
	default:
		errs = append(errs, fmt.Errorf("--port-forward-via %q: %s, %s or %s", o.portForwardVia, viaKubelet, viaKubeletSPDY, viaAPIServer))
	}
	if agg := logging.ValidateOptions(o.logFormat, o.logLevel).ToAggregate(); agg != nil {
		errs = append(errs, agg)
	}
	return o, false, errors.Join(errs...)
}

// Run runs rbn-portal with args (without the program name) until ctx ends.
func Run(ctx context.Context, args []string, stderr io.Writer) error {
	o, showVersion, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if showVersion {
		_, err := fmt.Fprintln(stderr, "rbn-portal", version.Version)
		return err
	}
	log, err := logging.Setup(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	ctx = logging.IntoContext(ctx, log)
	if o.cleanup {
		if err := o.capture.Cleanup(); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		log.Info("rbn-portal's routing removed", "routeTable", o.capture.Table, "link", portal.HostLink)
		return nil
	}

	restCfg, client, err := kubeclient.Clientset(o.kubeconfig, "rbn-portal/"+version.Version)
	if err != nil {
		return err
	}
	m := portal.NewMetrics()
	var dialer portal.PortForwarder
	api, err := portal.NewAPIPortForwarder(restCfg, client.CoreV1().RESTClient())
	if err != nil {
		return err
	}
	dialer = api
	if o.portForwardVia == viaKubelet || o.portForwardVia == viaKubeletSPDY {
		kubelet, err := portal.NewKubeletPortForwarder(portal.KubeletClientConfig(restCfg, o.kubeletCAFile), client.CoreV1())
		if err != nil {
			return err
		}
		dialer = portal.NewFallbackPortForwarder(kubelet, api, m)
		if o.portForwardVia == viaKubeletSPDY {
			dialer = struct{ portal.PortForwarder }{dialer} // no DialRaw: the relay takes SPDY's path
		}
	}
	ns, err := portal.NewNamespace(o.capture)
	if err != nil {
		return err
	}
	p, err := portal.New(portal.Config{Client: client, PodCIDR: o.capture.CIDR, Capture: ns, Dialer: dialer, Metrics: m})
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	metricsLn, err := metrics.Listen(o.metricsAddress)
	if err != nil {
		return err
	}
	healthLn, err := net.Listen("tcp", o.healthAddress)
	if err != nil {
		if metricsLn != nil {
			_ = metricsLn.Close()
		}
		return fmt.Errorf("health: listen on %s: %w", o.healthAddress, err)
	}
	c := o.capture
	log.Info("rbn-portal starting", "version", version.Version, "podCIDR", c.CIDR.String(), "linkCIDR", c.LinkCIDR.String(),
		"routeTable", c.Table, "routePriority", c.Priority, "inputInterfaces", c.InputInterfaces, "portForwardVia", o.portForwardVia)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Go(func() { defer cancel(); errs[0] = p.Run(ctx) })
	wg.Go(func() { defer cancel(); errs[1] = metrics.Serve(ctx, metricsLn, reg, false) })
	wg.Go(func() { defer cancel(); errs[2] = serveHealth(ctx, healthLn, p.Ready) })
	wg.Wait()
	return errors.Join(errs...)
}

// serveHealth answers GET /healthz (the process serves) and GET /readyz
// (the EndpointSlices are synced and reconciled once) until ctx ends.
func serveHealth(ctx context.Context, ln net.Listener, ready func() bool) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready: EndpointSlices not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	if err := metrics.ServeHandler(ctx, ln, mux); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	return nil
}
