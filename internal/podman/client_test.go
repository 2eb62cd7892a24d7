package podman

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCloseCutsForwardsInFlight: a forward whose remote end never closes
// (a followed log, an attach) is cut by Close, which returns once every
// goroutine of the forward has.
func TestCloseCutsForwardsInFlight(t *testing.T) {
	remotes := make(chan net.Conn, 1)
	c, err := New(Config{Name: "h", SocketDir: t.TempDir(), Dial: func(context.Context) (net.Conn, error) {
		local, remote := net.Pipe()
		remotes <- remote
		return local, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", strings.TrimPrefix(c.uri, "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	remote := <-remotes
	defer remote.Close()
	// The forward is up: bytes reach the remote end.
	go func() { _, _ = conn.Write([]byte("GET")) }()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(remote, buf); err != nil {
		t.Fatal(err)
	}

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return while a forward was in flight")
	}
	// The local end was cut.
	if _, err := conn.Read(buf); err == nil {
		t.Error("the forward's local end still reads after Close")
	}
}
