package provider

import (
	"net"
	"slices"
	"testing"

	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// closedPort returns a loopback port nothing listens on: the pool's hosts
// try to connect in the background and are refused at once.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func TestHostPoolSharesOneHostPerHostAndSocket(t *testing.T) {
	ssh := sshconn.NewPool()
	p := NewHostPool(ssh)
	cfg := testHostConfig(t, "127.0.0.1", closedPort(t))

	a, releaseA, err := p.Acquire(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A second node naming the same host, its key material read anew.
	same := cfg
	same.Name = "node-2"
	same.SSH.PrivateKey = append([]byte(nil), cfg.SSH.PrivateKey...)
	b, releaseB, err := p.Acquire(same)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("two nodes on one host got two Hosts: each would poll the host's podman")
	}
	// Another podman socket on the same host: a Host of its own on the same connection.
	other := cfg
	other.PodmanSocket = "/run/user/1000/podman/podman.sock"
	c, releaseC, err := p.Acquire(other)
	if err != nil {
		t.Fatal(err)
	}
	if c == a {
		t.Fatal("two podman sockets share a Host")
	}
	if c.SSH() != a.SSH() || ssh.Len() != 1 {
		t.Fatalf("two sockets on one host: %d SSH connections, want 1", ssh.Len())
	}
	if p.Len() != 2 {
		t.Fatalf("Len = %d, want 2", p.Len())
	}
	if hosts := p.Hosts(); len(hosts) != 2 || !slices.Contains(hosts, a) || !slices.Contains(hosts, c) {
		t.Fatalf("Hosts() = %v, want the two running ones", hosts)
	}

	releaseA()
	if p.Len() != 2 {
		t.Fatal("the host stopped while another node still holds it")
	}
	releaseB()
	releaseC()
	if p.Len() != 0 || ssh.Len() != 0 {
		t.Fatalf("after every release: %d hosts and %d SSH connections, want none", p.Len(), ssh.Len())
	}
	if hosts := p.Hosts(); len(hosts) != 0 {
		t.Fatalf("after every release: Hosts() = %v, want none", hosts)
	}

	// A Host given a connection is refused: the pool provides it.
	withClient := cfg
	withClient.SSHClient = a.SSH()
	if _, _, err := p.Acquire(withClient); err == nil {
		t.Fatal("Acquire with an SSHClient succeeded")
	}
}
