package connrelay

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remote-build-nodes/rbn/internal/testnet"
)

type result struct {
	aToB, bToA int64
	err        error
}

func run(a, b Side) <-chan result {
	done := make(chan result, 1)
	go func() { x, y, err := Relay(a, b); done <- result{x, y, err} }()
	return done
}

func wait(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end")
		return result{}
	}
}

// A client that sends its request and shuts its writing side gets the
// whole answer; bytes buffered in a side's Reader come first; both ways
// are counted.
func TestRelayHalfCloseAndCounts(t *testing.T) {
	client, relayClient := testnet.TCPPair(t)
	relayServer, server := testnet.TCPPair(t)
	// The relay already read "hel" from the client with a header.
	buffered := bufio.NewReader(io.MultiReader(strings.NewReader("hel"), relayClient))
	var toClient, toServer atomic.Int64
	done := run(
		Side{Conn: relayClient, Reader: buffered, Written: func(n int) { toClient.Add(int64(n)) }},
		Side{Conn: relayServer, Written: func(n int) { toServer.Add(int64(n)) }})
	go func() {
		req, _ := io.ReadAll(server) // to the client's half-close
		_, _ = server.Write([]byte(strings.ToUpper(string(req))))
		server.CloseWrite()
	}()
	if _, err := client.Write([]byte("lo")); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "HELLO" {
		t.Fatalf("the client got %q (%v), want HELLO", got, err)
	}
	r := wait(t, done)
	if r.err != nil || r.aToB != 5 || r.bToA != 5 || toServer.Load() != 5 || toClient.Load() != 5 {
		t.Fatalf("relay: %+v, counted %d to the server, %d to the client; want 5 each way, no error", r, toServer.Load(), toClient.Load())
	}
}

// A side that cannot half-close (net.Pipe) is closed whole at the other's
// EOF: its peer learns that no more comes, and the relay ends without an
// error.
func TestRelayWithoutHalfCloseClosesBoth(t *testing.T) {
	client, relayClient := testnet.TCPPair(t)
	relayServer, server := net.Pipe()
	done := run(Side{Conn: relayClient}, Side{Conn: relayServer})
	go func() { _, _ = client.Write([]byte("x")); client.CloseWrite() }()
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "x" {
		t.Fatalf("the server read %q (%v), want x then EOF", got, err)
	}
	if r := wait(t, done); r.err != nil || r.aToB != 1 {
		t.Fatalf("relay: %+v, want 1 byte and no error", r)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client's connection is still open")
	}
}

// An error one way (the server's connection reset) ends both at once and
// is returned.
func TestRelayErrorClosesBoth(t *testing.T) {
	client, relayClient := testnet.TCPPair(t)
	relayServer, server := testnet.TCPPair(t)
	done := run(Side{Conn: relayClient}, Side{Conn: relayServer})
	server.SetLinger(0)
	server.Close() // a reset
	if r := wait(t, done); r.err == nil {
		t.Fatalf("relay: %+v, want the reset", r)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client's connection is still open")
	}
}
