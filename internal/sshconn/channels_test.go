package sshconn

import (
	"context"
	"io"
	"net"
	"testing"
)

// The channels a client opens for its callers are counted while open, and
// only once closed however often they are closed.
func TestChannelsCounted(t *testing.T) {
	f := newFixture(t)
	f.srv.exec = func(string) (string, string, uint32) { return "out", "", 0 }
	c, _ := run(t, f.cfg)
	awaitState(t, c, "connected", connected)
	ctx := context.Background()
	open := func(want int64, when string) {
		t.Helper()
		if got := c.State().Channels; got != want {
			t.Fatalf("%s: %d channels open, want %d", when, got, want)
		}
	}
	open(0, "connected")

	addr := tcpEcho(t)
	a, err := c.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	open(2, "two dials")
	// The half-close of an SSH channel goes through the count: the test
	// server ends the forward when it reads the channel's EOF, so reading
	// reaches EOF too, instead of blocking.
	echo(t, a, "before the half-close")
	cw, ok := a.(interface{ CloseWrite() error })
	if !ok {
		_ = a.Close()
		_ = b.Close()
		t.Fatal("a dialed channel has no CloseWrite: exec's stdin and port-forwards could not half-close")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(a); err != nil || len(got) != 0 {
		t.Fatalf("after CloseWrite read %q, %v; want EOF", got, err)
	}
	_ = a.Close()
	_ = a.Close()
	open(1, "one dial closed twice")
	_ = b.Close()
	open(0, "both dials closed")

	if _, err := c.Output(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	open(0, "after Output")

	s, err := c.Stream(ctx, "cat", "/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	open(1, "a stream open")
	_, _ = io.Copy(io.Discard, s)
	_ = s.Close()
	_ = s.Close()
	open(0, "the stream closed twice")

	// A stream whose context ends is closed twice, by the context and by
	// its reader: counted closed once.
	sctx, cancel := context.WithCancel(ctx)
	s, err = c.Stream(sctx, "sleep", "1")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	_ = s.Close()
	open(0, "a cancelled stream closed")
}

func TestCountedListener(t *testing.T) {
	var count channelCount
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := countedListener{Listener: inner, count: &count}
	defer ln.Close()
	go func() {
		if nc, err := net.Dial("tcp", inner.Addr().String()); err == nil {
			defer nc.Close()
			_, _ = io.Copy(io.Discard, nc)
		}
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := count.n.Load(); got != 1 {
		t.Fatalf("accepted: %d open, want 1", got)
	}
	_ = nc.Close()
	_ = nc.Close()
	if got := count.n.Load(); got != 0 {
		t.Fatalf("closed twice: %d open, want 0", got)
	}
}
