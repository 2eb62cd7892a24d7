package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/remote-build-nodes/rbn/internal/config"
)

// fakePorts hands out ports as the kubelet API server does (its preferred
// port when free, else the lowest free one of [first, last]; the same port
// again for a node that holds one) without binding any, and records the calls.
type fakePorts struct {
	first, last int32
	err         error // Acquire fails with it when set

	mu     sync.Mutex
	byNode map[string]int32
	calls  []string
}

func newFakePorts(first, last int32) *fakePorts {
	return &fakePorts{first: first, last: last, byNode: map[string]int32{}}
}

func (p *fakePorts) Acquire(node string, preferred int32) (int32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprintf("acquire %s %d", node, preferred))
	if p.err != nil {
		return 0, p.err
	}
	if port, ok := p.byNode[node]; ok {
		return port, nil
	}
	taken := map[int32]bool{}
	for _, port := range p.byNode {
		taken[port] = true
	}
	candidates := []int32{preferred}
	for port := p.first; port <= p.last; port++ {
		candidates = append(candidates, port)
	}
	for _, port := range candidates {
		if port >= p.first && port <= p.last && !taken[port] {
			p.byNode[node] = port
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

func (p *fakePorts) Release(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "release "+node)
	delete(p.byNode, node)
}

func (p *fakePorts) EndSessions(node string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "end sessions "+node)
	return 0
}

func (p *fakePorts) ServeCertificate(node string, _ func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "serve certificate "+node)
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.calls = append(p.calls, "stop certificate "+node)
	}
}

func (p *fakePorts) takeCalls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls
	p.calls = nil
	return c
}

// advertising is a Node that advertises port as its kubelet endpoint.
func advertising(name string, port int32) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	return n
}

func TestAcquirePortWithoutNodePorts(t *testing.T) {
	client := fake.NewClientset(advertising("n1", 10300))
	d := runtimeDeps{client: client, cfg: &config.KubeletConfiguration{KubeletPort: 10250}}
	port, release, err := acquirePort(context.Background(), d, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if port != 10250 {
		t.Errorf("port = %d, want the shared cfg.KubeletPort 10250", port)
	}
	release()
	if a := client.Actions(); len(a) != 0 {
		t.Errorf("read the apiserver without per-node ports: %v", a)
	}
}

func TestAcquirePort(t *testing.T) {
	cfg := &config.KubeletConfiguration{KubeletPort: 10250}
	tests := []struct {
		name      string
		node      *corev1.Node // nil: no Node yet
		getErr    error        // get nodes fails with it
		held      map[string]int32
		wantPort  int32
		wantCalls []string
	}{{
		name:      "node keeps the port it advertises",
		node:      advertising("n1", 10255),
		wantPort:  10255,
		wantCalls: []string{"acquire n1 10255"},
	}, {
		name:      "no Node yet: lowest free port",
		held:      map[string]int32{"other": 10251},
		wantPort:  10252,
		wantCalls: []string{"acquire n1 0"},
	}, {
		name:      "Node advertises no port",
		node:      advertising("n1", 0),
		wantPort:  10251,
		wantCalls: []string{"acquire n1 0"},
	}, {
		name:      "advertised port taken by another node",
		node:      advertising("n1", 10255),
		held:      map[string]int32{"other": 10255},
		wantPort:  10251,
		wantCalls: []string{"acquire n1 10255"},
	}, {
		name:      "Node unreadable: no preference, still served",
		node:      advertising("n1", 10255),
		getErr:    apierrors.NewForbidden(nodesResource, "n1", nil),
		wantPort:  10251,
		wantCalls: []string{"acquire n1 0"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			if tt.node != nil {
				objs = append(objs, tt.node)
			}
			client := fake.NewClientset(objs...)
			if tt.getErr != nil {
				client.PrependReactor("get", "nodes", func(clienttesting.Action) (bool, runtime.Object, error) {
					return true, nil, tt.getErr
				})
			}
			ports := newFakePorts(10251, 10259)
			for n, p := range tt.held {
				ports.byNode[n] = p
			}
			port, release, err := acquirePort(context.Background(), runtimeDeps{client: client, cfg: cfg, ports: ports}, "n1")
			if err != nil {
				t.Fatalf("acquirePort: %v", err)
			}
			if port != tt.wantPort {
				t.Errorf("port = %d, want %d", port, tt.wantPort)
			}
			if got := ports.takeCalls(); !reflect.DeepEqual(got, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", got, tt.wantCalls)
			}
			release()
			if got, want := ports.takeCalls(), []string{"release n1"}; !reflect.DeepEqual(got, want) {
				t.Errorf("release: calls = %q, want %q", got, want)
			}
			if _, held := ports.byNode["n1"]; held {
				t.Error("n1 still holds its port after release")
			}
		})
	}
}

func TestAcquirePortError(t *testing.T) {
	ports := newFakePorts(10251, 10259)
	ports.err = errors.New("no free port")
	d := runtimeDeps{client: fake.NewClientset(), cfg: &config.KubeletConfiguration{}, ports: ports}
	_, release, err := acquirePort(context.Background(), d, "n1")
	if !errors.Is(err, ports.err) {
		t.Fatalf("err = %v, want the NodePorts error", err)
	}
	if release != nil {
		t.Error("a release function came with the error: the caller would free a port it does not hold")
	}
}

// A restarted rbn-kubelet gives every node back the port its Node advertises,
// whatever the order its RemoteBuildNodes come in.
func TestAcquirePortAcrossRestart(t *testing.T) {
	client := fake.NewClientset(advertising("a", 10255), advertising("b", 10253))
	cfg := &config.KubeletConfiguration{}
	ports := newFakePorts(10251, 10259)
	want := map[string]int32{"c": 10251, "a": 10255, "b": 10253} // c is new
	for _, n := range []string{"c", "a", "b"} {
		port, _, err := acquirePort(context.Background(), runtimeDeps{client: client, cfg: cfg, ports: ports}, n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if port != want[n] {
			t.Errorf("%s: port %d, want %d", n, port, want[n])
		}
	}
}
