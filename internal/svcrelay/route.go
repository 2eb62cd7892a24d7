package svcrelay

import (
	"context"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corev1listers "k8s.io/client-go/listers/core/v1"
)

// Route is the Service port a forwarder's listen address stands for. The
// port is the Service's port number (not a target port, not a name): the
// pod dials it as it would dial the Service in the cluster.
type Route struct {
	Namespace, Service string
	Port               int32
}

func (r Route) String() string {
	return r.Namespace + "/" + r.Service + ":" + strconv.Itoa(int(r.Port))
}

// Routes maps a forwarder's listen address ("127.0.100.1:80", the header's
// address) to its Service port.
type Routes map[string]Route

// Resolver finds the address to dial for a route. It is asked per
// connection, so that a Service created, changed or deleted after the pod
// started is seen by the next connection.
type Resolver interface {
	Resolve(ctx context.Context, r Route) (addr string, err error)
}

// Reasons a route did not resolve (RouteError.Reason, and the result label
// of the connections counter).
const (
	// ReasonServiceNotFound: no Service of that name in the namespace.
	ReasonServiceNotFound = "ServiceNotFound"
	// ReasonHeadless: the Service has no cluster IP (clusterIP None, or an
	// ExternalName Service): there is no one address to relay to.
	ReasonHeadless = "Headless"
	// ReasonPortNotFound: the Service has no port of that number.
	ReasonPortNotFound = "PortNotFound"
	// ReasonNotTCP: the Service's port of that number is not TCP; the
	// forwarder relays TCP only.
	ReasonNotTCP = "NotTCP"
)

// RouteError says why a route's Service cannot take connections: a fault
// of the pod's configuration or of the Service, not of rbn.
type RouteError struct {
	Route  Route
	Reason string // ReasonServiceNotFound, ReasonHeadless, ...
	Detail string
}

func (e *RouteError) Error() string {
	return fmt.Sprintf("service %s/%s port %d: %s", e.Route.Namespace, e.Route.Service, e.Route.Port, e.Detail)
}

// ServiceResolver resolves routes to Services' cluster IPs from an
// informer's cache: the cluster IP, not the endpoints, so that kube-proxy
// (or whatever implements Services in the cluster) balances and fails over
// as it does for any in-cluster client.
type ServiceResolver struct {
	services corev1listers.ServiceLister
}

// NewServiceResolver resolves from services.
func NewServiceResolver(services corev1listers.ServiceLister) *ServiceResolver {
	return &ServiceResolver{services: services}
}

// Resolve returns the route's ClusterIP:port, or a *RouteError when the
// Service cannot take the connection.
func (s *ServiceResolver) Resolve(_ context.Context, r Route) (string, error) {
	svc, err := s.services.Services(r.Namespace).Get(r.Service)
	if apierrors.IsNotFound(err) {
		return "", &RouteError{Route: r, Reason: ReasonServiceNotFound, Detail: "no such Service"}
	}
	if err != nil {
		return "", fmt.Errorf("service %s: %w", r, err)
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return "", &RouteError{Route: r, Reason: ReasonHeadless, Detail: fmt.Sprintf("no cluster IP (type %s, clusterIP %q)", svc.Spec.Type, ip)}
	}
	var other corev1.Protocol
	for _, p := range svc.Spec.Ports {
		if p.Port != r.Port {
			continue
		}
		// A Service may carry one number twice, TCP and UDP (DNS's 53):
		// only a TCP one will do, whichever comes first.
		if p.Protocol == corev1.ProtocolTCP || p.Protocol == "" {
			return net.JoinHostPort(ip, strconv.Itoa(int(r.Port))), nil
		}
		other = p.Protocol
	}
	if other != "" {
		return "", &RouteError{Route: r, Reason: ReasonNotTCP, Detail: fmt.Sprintf("port is %s, only TCP is relayed", other)}
	}
	return "", &RouteError{Route: r, Reason: ReasonPortNotFound, Detail: "no such port"}
}
