package svcrelay

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func TestServiceResolver(t *testing.T) {
	svc := func(name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name},
			Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, Ports: ports},
		}
	}
	port := func(n int32, proto corev1.Protocol) corev1.ServicePort {
		return corev1.ServicePort{Port: n, Protocol: proto}
	}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, s := range []*corev1.Service{
		svc("db", "10.96.0.10", port(8080, corev1.ProtocolTCP), port(5432, corev1.ProtocolTCP)),
		svc("defaulted", "10.96.0.11", port(80, "")),
		svc("dns", "10.96.0.12", port(53, corev1.ProtocolUDP), port(53, corev1.ProtocolTCP)),
		svc("syslog", "10.96.0.13", port(514, corev1.ProtocolUDP)),
		svc("headless", corev1.ClusterIPNone, port(80, corev1.ProtocolTCP)),
		svc("external", "", port(80, corev1.ProtocolTCP)),
		svc("v6", "fd00::a", port(80, corev1.ProtocolTCP)),
	} {
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	res := NewServiceResolver(corev1listers.NewServiceLister(idx))

	for _, tc := range []struct {
		name   string
		route  Route
		addr   string
		reason string // "" for success
	}{
		{"found", Route{"app", "db", 5432}, "10.96.0.10:5432", ""},
		{"protocol defaulted to TCP", Route{"app", "defaulted", 80}, "10.96.0.11:80", ""},
		{"TCP beside UDP on one number", Route{"app", "dns", 53}, "10.96.0.12:53", ""},
		{"IPv6 cluster IP", Route{"app", "v6", 80}, "[fd00::a]:80", ""},
		{"not found", Route{"app", "nope", 80}, "", ReasonServiceNotFound},
		{"other namespace", Route{"other", "db", 5432}, "", ReasonServiceNotFound},
		{"headless", Route{"app", "headless", 80}, "", ReasonHeadless},
		{"no cluster IP", Route{"app", "external", 80}, "", ReasonHeadless},
		{"wrong port", Route{"app", "db", 5433}, "", ReasonPortNotFound},
		{"UDP port", Route{"app", "syslog", 514}, "", ReasonNotTCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, err := res.Resolve(context.Background(), tc.route)
			if tc.reason == "" {
				if err != nil || addr != tc.addr {
					t.Fatalf("Resolve(%v) = %q, %v; want %q", tc.route, addr, err, tc.addr)
				}
				return
			}
			var re *RouteError
			if !errors.As(err, &re) || re.Reason != tc.reason {
				t.Fatalf("Resolve(%v) = %q, %v; want a RouteError %s", tc.route, addr, err, tc.reason)
			}
			want := "service " + tc.route.Namespace + "/" + tc.route.Service + " port "
			if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, " port "+strconv.Itoa(int(tc.route.Port))+":") {
				t.Errorf("message %q does not name the Service and port", msg)
			}
		})
	}
}
