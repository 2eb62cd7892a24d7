package provider

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection (which, unlike
// net.Pipe, can be half-closed, as an SSH channel can).
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A request-then-EOF client (kubectl port-forward closes its side when
// the local client does) still gets the whole answer of the pod.
func TestSpliceClientHalfCloseGetsAnswer(t *testing.T) {
	client, clientSide := tcpPair(t) // client <-> rbn
	podSide, server := tcpPair(t)    // rbn <-> pod
	done := make(chan error, 1)
	go func() {
		done <- splice(clientSide, podSide, time.Second)
		clientSide.Close() // as the kubelet API closes the stream
	}()

	answer := bytes.Repeat([]byte("pong "), 100_000)
	go func() { // the pod: read the request to EOF, answer, close
		req, _ := io.ReadAll(server)
		if string(req) != "ping" {
			answer = []byte("bad request " + string(req))
		}
		_, _ = server.Write(answer)
		server.Close()
	}()
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	client.(*net.TCPConn).CloseWrite()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("splice: %v", err)
	}
	if !bytes.Equal(got, answer) {
		t.Errorf("client got %d bytes, want %d", len(got), len(answer))
	}
}

// The pod closing its end finishes the forward even while the client
// keeps its side open.
func TestSplicePodCloseEnds(t *testing.T) {
	_, clientSide := tcpPair(t)
	podSide, server := tcpPair(t)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- splice(clientSide, podSide, 100*time.Millisecond) }()
	server.Close()
	select {
	case <-done:
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("splice did not end when the pod closed")
	}
}
