package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/nodeservice"
)

// ServingCertificates keeps each node's own serving certificate, naming
// the address its Node advertises (config nodeServices;
// nodeidentity.Issuer).
type ServingCertificates interface {
	// Serving starts keeping node's certificate for ip; get returns the
	// current one (an error before the first is issued: the node's port
	// then refuses handshakes rather than present a certificate for
	// another address); release stops keeping it.
	Serving(node string, ip func() net.IP) (get func(*tls.ClientHelloInfo) (*tls.Certificate, error), release func(), err error)
	// ServingReady waits for node's first certificate.
	ServingReady(ctx context.Context, node string) error
}

// servingCertificateTimeout bounds the wait for a node's first serving
// certificate.
const servingCertificateTimeout = 30 * time.Second

// nodeEndpoint is where a node's Node says its kubelet API is.
type nodeEndpoint struct {
	address string
	port    int32
}

// nodeEndpointFor returns where node is reached: without nodeServices,
// this replica's address and the node's own port here; with them, the
// ClusterIP of the node's Service, led to that port, and port 10250, once
// the node's serving certificate names that ClusterIP and its port
// presents it. release gives the certificate up.
func nodeEndpointFor(ctx context.Context, d runtimeDeps, node string, port int32) (_ nodeEndpoint, release func(), err error) {
	if !d.cfg.NodeServices {
		return nodeEndpoint{address: d.cfg.NodeAddress, port: port}, func() {}, nil
	}
	if d.ports == nil || d.serving == nil {
		return nodeEndpoint{}, nil, transientError(ReasonStartFailed, fmt.Errorf("nodeServices without per-node ports or serving certificates"))
	}
	self, err := netip.ParseAddr(d.cfg.NodeAddress)
	if err != nil {
		return nodeEndpoint{}, nil, specError(ReasonStartFailed, fmt.Errorf("nodeAddress %q: %w", d.cfg.NodeAddress, err))
	}
	ip, err := nodeservice.Ensure(ctx, d.client, d.namespace, nodeservice.Owner{Name: node, UID: d.owner}, nodeservice.Target{IP: self, Port: port})
	if err != nil {
		return nodeEndpoint{}, nil, transientError(ReasonAPIServerUnavailable, err)
	}
	get, releaseCert, err := d.serving.Serving(node, func() net.IP { return ip.AsSlice() })
	if err != nil {
		return nodeEndpoint{}, nil, transientError(ReasonStartFailed, err)
	}
	stopServing := d.ports.ServeCertificate(node, get)
	release = func() {
		stopServing()
		releaseCert()
	}
	wctx, cancel := context.WithTimeout(ctx, servingCertificateTimeout)
	defer cancel()
	if err := d.serving.ServingReady(wctx, node); err != nil {
		release()
		return nodeEndpoint{}, nil, transientError(ReasonServingCertificatePending, err)
	}
	probe := d.probe()
	if err := probe.wait(ctx, netip.AddrPortFrom(ip, nodeservice.Port), get); err != nil {
		if ctx.Err() != nil {
			release()
			return nodeEndpoint{}, nil, transientError(ReasonStartFailed, ctx.Err())
		}
		// The apiserver may still reach what rbn-kubelet cannot (a
		// NetworkPolicy on rbn's namespace, no hairpin on the node's
		// bridge): the node is advertised anyway, and the operator told.
		msg := fmt.Sprintf("the node's address %s:%d did not lead here within %s (%v): kube-proxy has not programmed its Service yet, or rbn-kubelet cannot reach its own Services (a NetworkPolicy, no hairpin traffic on the node's pod bridge); advertised anyway: exec, logs and port-forward may fail until it does",
			ip, nodeservice.Port, probe.timeout, err)
		logging.FromContext(ctx).Warn("node address unverified", "node", node, "err", msg)
		if d.recorder != nil {
			d.recorder(node).Event(&corev1.ObjectReference{APIVersion: rbnv1.SchemeGroupVersion.String(), Kind: "RemoteBuildNode", Name: node},
				corev1.EventTypeWarning, ReasonNodeAddressUnverified, msg)
		}
	}
	return nodeEndpoint{address: ip.String(), port: nodeservice.Port}, release, nil
}

// ReasonNodeAddressUnverified: the event of a node advertised at an
// address that did not lead to this replica in time.
const ReasonNodeAddressUnverified = "NodeAddressUnverified"

// addressProbe checks that a node's address, its Service's ClusterIP, leads
// to this replica (kube-proxy has programmed the Service and its
// EndpointSlice) before the node advertises it: see nodeservice.Presents.
type addressProbe struct {
	presents          func(ctx context.Context, addr netip.AddrPort, want []byte) error
	interval, timeout time.Duration
}

// defaultAddressProbe: kube-proxy programs a change within a second or so
// when idle; the bound leaves it a busy machine's several seconds.
var defaultAddressProbe = &addressProbe{presents: nodeservice.Presents, interval: 250 * time.Millisecond, timeout: 30 * time.Second}

func (d runtimeDeps) probe() *addressProbe {
	if d.addressProbe == nil {
		return defaultAddressProbe
	}
	return d.addressProbe
}

// wait probes addr until it presents the certificate get gives (read
// anew each time: it may be renewed meanwhile), p.timeout passes (the last
// probe's error) or ctx ends.
func (p *addressProbe) wait(ctx context.Context, addr netip.AddrPort, get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, p.interval, p.timeout, true, func(ctx context.Context) (bool, error) {
		c, err := get(nil)
		switch {
		case err != nil:
			last = err
		case c == nil || len(c.Certificate) == 0:
			last = errors.New("no serving certificate to compare")
		default:
			last = p.presents(ctx, addr, c.Certificate[0])
		}
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// preferredPort is the port node had here before, to take again: the one
// its EndpointSlice leads to on this replica (nodeServices; its Node then
// advertises 10250), else the one its Node advertises.
func preferredPort(ctx context.Context, d runtimeDeps, node string) int32 {
	if !d.cfg.NodeServices {
		if n, err := d.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err == nil {
			return n.Status.DaemonEndpoints.KubeletEndpoint.Port
		}
		return 0
	}
	self, err := netip.ParseAddr(d.cfg.NodeAddress)
	if err != nil {
		return 0
	}
	if p, ok := nodeservice.CurrentPort(ctx, d.client, d.namespace, node, self); ok {
		return p
	}
	return 0
}

// watchNodeService ends (with an error, so that the node is served again)
// when node's Service is deleted or its ClusterIP is no longer address,
// the address the Node advertises and its certificate names: serving the
// node again makes the Service anew. Only the Service is watched: its
// EndpointSlice is rewritten by whichever replica takes the node over, and
// correcting it here would fight that replica until this one lets go.
func watchNodeService(ctx context.Context, services cache.SharedIndexInformer, namespace, node, address string) error {
	name := nodeservice.Name(node)
	gone := make(chan string, 1)
	report := func(why string) {
		select {
		case gone <- why:
		default:
		}
	}
	check := func(obj any) {
		svc, ok := obj.(*corev1.Service)
		if !ok || svc.Namespace != namespace || svc.Name != name {
			return
		}
		if svc.Spec.ClusterIP != address {
			report(fmt.Sprintf("its ClusterIP is now %q", svc.Spec.ClusterIP))
		}
	}
	reg, err := services.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    check,
		UpdateFunc: func(_, obj any) { check(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if svc, ok := obj.(*corev1.Service); ok && svc.Namespace == namespace && svc.Name == name {
				report("it was deleted")
			}
		},
	})
	if err != nil {
		return err
	}
	defer func() { _ = services.RemoveEventHandler(reg) }()
	// The handler is told of the Services the informer holds, not of one
	// deleted before it was added: a Service missing now is gone.
	if _, exists, err := services.GetStore().GetByKey(namespace + "/" + name); err == nil && !exists {
		report("it was deleted")
	}
	select {
	case <-ctx.Done():
		return nil
	case why := <-gone:
		return fmt.Errorf("node Service %s/%s, whose ClusterIP %s the Node advertises: %s", namespace, name, address, why)
	}
}
