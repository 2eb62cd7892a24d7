package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/nodeservice"
	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// fakeServing issues each node's serving certificate at once, or never
// (err), and records the address it was asked for.
type fakeServing struct {
	err      error
	ip       map[string]net.IP
	released []string
}

func (f *fakeServing) Serving(node string, ip func() net.IP) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), func(), error) {
	if f.ip == nil {
		f.ip = map[string]net.IP{}
	}
	f.ip[node] = ip()
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &tls.Certificate{Certificate: [][]byte{[]byte("certificate of " + node)}}, nil
		},
		func() { f.released = append(f.released, node) }, nil
}

func (f *fakeServing) ServingReady(context.Context, string) error { return f.err }

// allocatingClient gives created Services a ClusterIP, as the apiserver.
func allocatingClient(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	c.PrependReactor("create", "services", func(a clienttesting.Action) (bool, runtime.Object, error) {
		a.(clienttesting.CreateAction).GetObject().(*corev1.Service).Spec.ClusterIP = "10.96.0.42"
		return false, nil, nil
	})
	return c
}

// fakeAddress is a node address that leads here after misses probes.
type fakeAddress struct {
	misses int
	probed []string
}

func (f *fakeAddress) presents(_ context.Context, addr netip.AddrPort, want []byte) error {
	f.probed = append(f.probed, fmt.Sprintf("%s %s", addr, want))
	if len(f.probed) <= f.misses {
		return fmt.Errorf("%s: %w: it presented \"CN=sandboxing-tproxy-egress\"", addr, nodeservice.ErrNotPresented)
	}
	return nil
}

func (f *fakeAddress) probe(timeout time.Duration) *addressProbe {
	return &addressProbe{presents: f.presents, interval: time.Millisecond, timeout: timeout}
}

func nodeServicesDeps(client *fake.Clientset, ports *fakePorts, serving *fakeServing) runtimeDeps {
	return runtimeDeps{
		client: client, ports: ports, serving: serving, namespace: "rbn-system", owner: "uid-1",
		cfg:          &config.KubeletConfiguration{NodeAddress: "10.244.0.5", NodeServices: true},
		addressProbe: (&fakeAddress{}).probe(time.Minute),
	}
}

// With nodeServices a node advertises its Service's ClusterIP and port
// 10250, once its own certificate for that IP is served on its port; its
// EndpointSlice leads to this replica's node port, which the node takes
// again when its runtime restarts.
func TestNodeEndpointIsItsService(t *testing.T) {
	ctx := context.Background()
	client, ports, serving := allocatingClient(), newFakePorts(10251, 10260), &fakeServing{}
	d := nodeServicesDeps(client, ports, serving)
	// kube-proxy leads the new ClusterIP here after two probes.
	address := &fakeAddress{misses: 2}
	d.addressProbe = address.probe(time.Minute)
	port, releasePort, err := acquirePort(ctx, d, "n1")
	if err != nil {
		t.Fatal(err)
	}
	ep, release, err := nodeEndpointFor(ctx, d, "n1", port)
	if err != nil {
		t.Fatal(err)
	}
	if ep != (nodeEndpoint{address: "10.96.0.42", port: 10250}) {
		t.Errorf("endpoint = %+v, want 10.96.0.42:10250", ep)
	}
	if want := slices.Repeat([]string{"10.96.0.42:10250 certificate of n1"}, 3); !reflect.DeepEqual(address.probed, want) {
		t.Errorf("probed %q before advertising, want %q", address.probed, want)
	}
	if got := serving.ip["n1"].String(); got != "10.96.0.42" {
		t.Errorf("serving certificate asked for %s, want the ClusterIP", got)
	}
	slice, err := client.DiscoveryV1().EndpointSlices("rbn-system").Get(ctx, "rbn-node-n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a, p := slice.Endpoints[0].Addresses[0], *slice.Ports[0].Port; a != "10.244.0.5" || p != port {
		t.Errorf("slice leads to %s:%d, want 10.244.0.5:%d", a, p, port)
	}
	release()
	releasePort()
	if got, want := ports.takeCalls(), []string{"acquire n1 0", "serve certificate n1", "stop certificate n1", "release n1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if !reflect.DeepEqual(serving.released, []string{"n1"}) {
		t.Errorf("certificates released: %q", serving.released)
	}

	// Another node holds the port meanwhile; n1 asks for its old one.
	if _, err := ports.Acquire("n2", 0); err != nil {
		t.Fatal(err)
	}
	ports.takeCalls()
	if _, _, err := acquirePort(ctx, d, "n1"); err != nil {
		t.Fatal(err)
	}
	if got := ports.takeCalls(); len(got) != 1 || got[0] != "acquire n1 10251" {
		t.Errorf("restart asked %q, want its slice's port 10251", got)
	}
}

// A certificate not issued in time leaves the node unserved and pending
// with the reason, and nothing kept.
func TestNodeEndpointWaitsForItsCertificate(t *testing.T) {
	client, ports, serving := allocatingClient(), newFakePorts(10251, 10260), &fakeServing{err: errors.New("no certificate issued yet (is rbn's approver running?)")}
	_, _, err := nodeEndpointFor(context.Background(), nodeServicesDeps(client, ports, serving), "n1", 10251)
	if reason, transient := classifyStart(err); reason != ReasonServingCertificatePending || !transient {
		t.Errorf("err = %v (%s, transient %v), want a transient %s", err, reason, transient, ReasonServingCertificatePending)
	}
	if got := ports.takeCalls(); !reflect.DeepEqual(got, []string{"serve certificate n1", "stop certificate n1"}) {
		t.Errorf("calls = %q", got)
	}
	if len(serving.released) != 1 {
		t.Errorf("certificate kept: released %q", serving.released)
	}
}

// An address that does not lead here in time is advertised anyway (the
// apiserver may reach what rbn-kubelet cannot), with a warning on the
// RemoteBuildNode that says what the address presented instead.
func TestNodeEndpointAdvertisedWhenItsAddressIsNotReached(t *testing.T) {
	client, ports, serving := allocatingClient(), newFakePorts(10251, 10260), &fakeServing{}
	d := nodeServicesDeps(client, ports, serving)
	address := &fakeAddress{misses: math.MaxInt}
	d.addressProbe = address.probe(20 * time.Millisecond)
	events := record.NewFakeRecorder(10)
	d.recorder = func(string) record.EventRecorder { return events }
	ep, release, err := nodeEndpointFor(context.Background(), d, "n1", 10251)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if ep != (nodeEndpoint{address: "10.96.0.42", port: 10250}) {
		t.Errorf("endpoint = %+v, want 10.96.0.42:10250", ep)
	}
	if len(address.probed) < 2 {
		t.Errorf("probed %d times, want it tried again until the bound", len(address.probed))
	}
	select {
	case e := <-events.Events:
		for _, want := range []string{"Warning " + ReasonNodeAddressUnverified, "10.96.0.42:10250", "sandboxing-tproxy-egress", "advertised anyway"} {
			if !strings.Contains(e, want) {
				t.Errorf("event %q does not say %q", e, want)
			}
		}
	default:
		t.Error("no warning event")
	}
}

// Without nodeServices the node advertises this replica and its own port.
func TestNodeEndpointWithoutNodeServices(t *testing.T) {
	d := runtimeDeps{cfg: &config.KubeletConfiguration{NodeAddress: "10.244.0.5"}}
	ep, release, err := nodeEndpointFor(context.Background(), d, "n1", 10251)
	if err != nil || ep != (nodeEndpoint{address: "10.244.0.5", port: 10251}) {
		t.Fatalf("endpoint = %+v, %v", ep, err)
	}
	release()
}

// A node's Service deleted, or given another ClusterIP, ends the watch
// with the reason (the node is then served again, its Service made anew);
// other Services and an unchanged update do not.
func TestWatchNodeServiceEndsWhenTheAddressGoes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(ctx context.Context, c *fake.Clientset) error
		want   string
		// before: the change is made before the watch starts.
		before bool
	}{
		{"deleted", func(ctx context.Context, c *fake.Clientset) error {
			return c.CoreV1().Services("rbn-system").Delete(ctx, "rbn-node-n1", metav1.DeleteOptions{})
		}, "it was deleted", false},
		{"readdressed", func(ctx context.Context, c *fake.Clientset) error {
			svc, err := c.CoreV1().Services("rbn-system").Get(ctx, "rbn-node-n1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			svc.Spec.ClusterIP = "10.96.0.99"
			_, err = c.CoreV1().Services("rbn-system").Update(ctx, svc, metav1.UpdateOptions{})
			return err
		}, `its ClusterIP is now "10.96.0.99"`, false},
		// Gone before the watch's handler was added: no event tells it.
		{"deleted before the watch", func(ctx context.Context, c *fake.Clientset) error {
			return c.CoreV1().Services("rbn-system").Delete(ctx, "rbn-node-n1", metav1.DeleteOptions{})
		}, "it was deleted", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			svc := func(name, ip string) *corev1.Service {
				return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "rbn-system", Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip}}
			}
			c := fake.NewClientset(svc("rbn-node-n1", "10.96.0.42"), svc("rbn-node-n2", "10.96.0.43"))
			// The fake's watch does not resume from its list: changes made
			// before it is open would be lost.
			watching := make(chan struct{})
			c.PrependWatchReactor("services", func(a clienttesting.Action) (bool, watch.Interface, error) {
				w, err := c.Tracker().Watch(a.GetResource(), a.GetNamespace())
				close(watching)
				return true, w, err
			})
			factory := informers.NewSharedInformerFactory(c, 0)
			inf := factory.Core().V1().Services().Informer()
			factory.Start(ctx.Done())
			factory.WaitForCacheSync(ctx.Done())
			<-watching
			if tc.before {
				if err := tc.change(ctx, c); err != nil {
					t.Fatal(err)
				}
				testwait.Eventually(t, "the informer without the Service", func() bool {
					_, exists, _ := inf.GetStore().GetByKey("rbn-system/rbn-node-n1")
					return !exists
				})
			}
			done := make(chan error, 1)
			go func() { done <- watchNodeService(ctx, inf, "rbn-system", "n1", "10.96.0.42") }()
			if !tc.before {
				// Unrelated changes: another node's Service goes, n1's is
				// updated without a new address.
				if err := c.CoreV1().Services("rbn-system").Delete(ctx, "rbn-node-n2", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				same := svc("rbn-node-n1", "10.96.0.42")
				same.Labels = map[string]string{"x": "y"}
				if _, err := c.CoreV1().Services("rbn-system").Update(ctx, same, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				if err := tc.change(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			err := <-done
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("watch ended with %v, want %q", err, tc.want)
			}
		})
	}
}
