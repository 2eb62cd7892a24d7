package kubeletapi

import (
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

func TestRequestAttributes(t *testing.T) {
	u := &user.DefaultInfo{Name: "kube-apiserver-kubelet-client"}
	for _, tc := range []struct {
		method, path string
		verb         string
		subresources []string
	}{
		{"GET", "/stats/summary", "get", []string{"stats"}},
		{"GET", "/stats/summary/", "get", []string{"stats"}},
		{"GET", "/stats", "get", []string{"stats"}},
		{"GET", "/statsfoo", "get", []string{"proxy"}},
		{"GET", "/metrics/resource", "get", []string{"metrics"}},
		{"GET", "/metrics", "get", []string{"metrics"}},
		{"GET", "/metrics/cadvisor", "get", []string{"metrics"}},
		{"GET", "/metrics/probes", "get", []string{"metrics"}},
		{"GET", "/containerLogs/ns/p/c", "get", []string{"proxy"}},
		{"POST", "/exec/ns/p/c", "create", []string{"proxy"}},
		// A WebSocket upgrade is a GET: what runs code or opens a stream
		// needs create whatever the method.
		{"GET", "/exec/ns/p/c", "create", []string{"proxy"}},
		{"POST", "/attach/ns/p/c", "create", []string{"proxy"}},
		{"GET", "/attach/ns/p/c", "create", []string{"proxy"}},
		// A port-forward is also allowed by the right the apiserver checks
		// for it: create pods/portforward on the pod (rbn-portal's).
		{"POST", "/portForward/ns/p", "create", []string{"proxy", "pods/portforward"}},
		{"GET", "/portForward/ns/p", "create", []string{"proxy", "pods/portforward"}},
		{"GET", "/portForward/ns/p/uid-1", "create", []string{"proxy", "pods/portforward"}},
		{"GET", "/portForward/ns", "create", []string{"proxy"}},
		{"GET", "/portForward/ns/p/uid-1/more", "create", []string{"proxy"}},
		{"GET", "/portForward//p", "create", []string{"proxy"}},
		{"GET", "/run/ns/p/c", "create", []string{"proxy"}},
		{"GET", "/executor", "get", []string{"proxy"}},
		{"GET", "/logs/messages", "get", []string{"log"}},
		{"GET", "/pods", "get", []string{"pods", "proxy"}},
		{"GET", "/runningpods/", "get", []string{"pods", "proxy"}},
		{"GET", "/runningpods", "get", []string{"pods", "proxy"}},
		{"GET", "/healthz", "get", []string{"healthz", "proxy"}},
		{"GET", "/configz", "get", []string{"configz", "proxy"}},
		{"POST", "/checkpoint/ns/p/c", "create", []string{"checkpoint"}},
		{"PUT", "/whatever", "update", []string{"proxy"}},
		{"DELETE", "/whatever", "delete", []string{"proxy"}},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			attrs := requestAttributes(u, httptest.NewRequest(tc.method, tc.path, nil), "node-1")
			var subs []string
			for _, a := range attrs {
				want := authorizer.AttributesRecord{User: u, Verb: tc.verb, APIVersion: "v1", Resource: "nodes",
					Subresource: a.GetSubresource(), Name: "node-1", ResourceRequest: true, Path: tc.path}
				if a.GetResource() == "pods" {
					subs = append(subs, "pods/"+a.GetSubresource())
					want.Resource, want.Namespace, want.Name = "pods", "ns", "p"
				} else {
					subs = append(subs, a.GetSubresource())
				}
				if got := a.(authorizer.AttributesRecord); !reflect.DeepEqual(got, want) {
					t.Errorf("attributes %+v, want %+v", got, want)
				}
			}
			if !slices.Equal(subs, tc.subresources) {
				t.Errorf("subresources %v, want %v", subs, tc.subresources)
			}
		})
	}
}
