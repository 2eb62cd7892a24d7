package probe

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// netTarget dials for real from this process, as the build host would, and
// runs exec probes through a function standing in for the container.
type netTarget struct {
	exec func(ctx context.Context, cmd []string, out io.Writer) (int, error)

	mu    sync.Mutex
	dials []string
}

func (n *netTarget) Exec(ctx context.Context, _ string, cmd []string, out io.Writer) (int, error) {
	return n.exec(ctx, cmd, out)
}

func (n *netTarget) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	n.mu.Lock()
	n.dials = append(n.dials, address)
	n.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func (n *netTarget) dialed() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.dials...)
}

// closedPort returns a port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// splitHostPort returns the host and numeric port of a listener's address.
func splitHostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}
