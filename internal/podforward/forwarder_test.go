package podforward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// guard bounds every wait; a passing test needs a tiny fraction of it.
const guard = 10 * time.Second

// started is a running Forwarder.
type started struct {
	f      *Forwarder
	cancel context.CancelFunc
	done   chan error // receives Run's result
}

// start runs a Forwarder for cfg and waits for Ready; the test's cleanup
// stops it.
func start(t *testing.T, cfg Config) *started {
	t.Helper()
	s := startNoWait(t, cfg)
	select {
	case <-s.f.Ready():
	case err := <-s.done:
		t.Fatalf("Run returned before Ready: %v", err)
	case <-time.After(guard):
		t.Fatal("timed out waiting for the forwarder's listeners")
	}
	return s
}

func startNoWait(t *testing.T, cfg Config) *started {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{f: f, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(guard):
			t.Error("Run did not return after its context ended")
		}
	})
	return s
}

// socketPath is a path for a Unix socket in a fresh directory, as the
// bind-mounted directory of a pod would be.
func socketPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "s")
}

// listenUnix plays rbn-kubelet's end of the SSH remote forward.
func listenUnix(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatalf("listen on %s: %v", path, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// upstream is a relayed connection as the socket's server sees it.
type upstream struct {
	*net.UnixConn
	r      *bufio.Reader
	listen string // from the header
}

// accept takes the next relayed connection and reads its header.
func accept(t *testing.T, ln *net.UnixListener) *upstream {
	t.Helper()
	ln.SetDeadline(time.Now().Add(guard))
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatalf("accept on the socket: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(guard))
	r := bufio.NewReader(c)
	listen, err := ReadHeader(r)
	if err != nil {
		t.Fatalf("ReadHeader: %v", err)
	}
	return &upstream{UnixConn: c, r: r, listen: listen}
}

// dial connects a client to addr, as a process in the pod would.
func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr, guard)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(guard))
	return c.(*net.TCPConn)
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read to EOF: %v", err)
	}
	return string(b)
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // each in the error
	}{
		{name: "empty", cfg: Config{}, want: []string{"socket: required", "at least one address"}},
		{name: "not loopback", cfg: Config{Socket: "s", Listen: []string{"10.0.0.1:80"}}, want: []string{`"10.0.0.1:80": not a loopback address`}},
		{name: "wildcard", cfg: Config{Socket: "s", Listen: []string{"0.0.0.0:80"}}, want: []string{"not a loopback address"}},
		{name: "IPv6", cfg: Config{Socket: "s", Listen: []string{"[::1]:80"}}, want: []string{"not an IPv4 address"}},
		{name: "host name", cfg: Config{Socket: "s", Listen: []string{"localhost:80"}}, want: []string{"not an IPv4 address:port"}},
		{name: "not canonical", cfg: Config{Socket: "s", Listen: []string{"127.0.0.1:080"}}, want: []string{"canonical"}},
		{name: "negative timeout", cfg: Config{Socket: "s", Listen: []string{"127.0.0.1:80"}, DialTimeout: -1}, want: []string{"negative"}},
		{
			name: "every problem at once",
			cfg:  Config{Listen: []string{"127.0.0.1:80", "10.0.0.1:80", "x"}},
			want: []string{"socket: required", `"10.0.0.1:80"`, `"x"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil {
				t.Fatal("New accepted the configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestRelayEchoesBothWays(t *testing.T) {
	path := socketPath(t)
	ul := listenUnix(t, path)
	s := start(t, Config{Socket: path, Listen: []string{"127.0.0.1:0"}})
	addr := s.f.Addrs()[0]
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addrs()[0] = %q, want 127.0.0.1 with the port picked", addr)
	}

	client := dial(t, addr)
	up := accept(t, ul)
	if up.listen != addr {
		t.Fatalf("header names %q, want the address accepted on, %q", up.listen, addr)
	}
	write(t, client, "ping")
	if got := readN(t, up.r, 4); got != "ping" {
		t.Fatalf("socket side read %q, want ping", got)
	}
	write(t, up, "pong")
	if got := readN(t, client, 4); got != "pong" {
		t.Fatalf("client read %q, want pong", got)
	}
	if n := s.f.Relayed(); n != 1 {
		t.Fatalf("Relayed() = %d, want 1", n)
	}
}

func TestHalfCloseFromClient(t *testing.T) {
	// A client that sends its request and shuts down writing still gets
	// the answer, which the server sends only after seeing EOF.
	path := socketPath(t)
	ul := listenUnix(t, path)
	s := start(t, Config{Socket: path, Listen: []string{"127.0.0.1:0"}})

	client := dial(t, s.f.Addrs()[0])
	up := accept(t, ul)
	write(t, client, "request")
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, up.r); got != "request" {
		t.Fatalf("socket side read %q to EOF, want request", got)
	}
	write(t, up, "response")
	if err := up.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, client); got != "response" {
		t.Fatalf("client read %q to EOF, want response", got)
	}
}

func TestHalfCloseFromSocket(t *testing.T) {
	// The server ends its direction first; the client still sends after
	// reading EOF.
	path := socketPath(t)
	ul := listenUnix(t, path)
	s := start(t, Config{Socket: path, Listen: []string{"127.0.0.1:0"}})

	client := dial(t, s.f.Addrs()[0])
	up := accept(t, ul)
	write(t, up, "greeting")
	if err := up.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, client); got != "greeting" {
		t.Fatalf("client read %q to EOF, want greeting", got)
	}
	write(t, client, "bye")
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, up.r); got != "bye" {
		t.Fatalf("socket side read %q to EOF, want bye", got)
	}
}

func TestClientResetClosesBoth(t *testing.T) {
	// An error on one side closes the other entirely, not just its
	// sending direction: the socket side's write fails once it saw EOF.
	path := socketPath(t)
	ul := listenUnix(t, path)
	s := start(t, Config{Socket: path, Listen: []string{"127.0.0.1:0"}})

	client := dial(t, s.f.Addrs()[0])
	up := accept(t, ul)
	reset(client)
	if got := readAll(t, up.r); got != "" {
		t.Fatalf("socket side read %q, want EOF", got)
	}
	if _, err := up.Write([]byte("late")); !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write after the client's reset: %v, want a broken pipe", err)
	}
}

// syncBuffer is a bytes.Buffer for a logger written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestSocketAbsentResetsThenRecovers(t *testing.T) {
	path := socketPath(t)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	s := start(t, Config{Socket: path, Listen: []string{"127.0.0.1:0"}, Logger: log})
	addr := s.f.Addrs()[0]

	// The reset can come before the client's connect returns: the kernel
	// completes the handshake, the forwarder accepts and resets at once.
	if c, err := net.DialTimeout("tcp4", addr, guard); !errors.Is(err, syscall.ECONNRESET) {
		if err != nil {
			t.Fatalf("dial %s: %v, want success or a connection reset", addr, err)
		}
		c.SetDeadline(time.Now().Add(guard))
		n, err := c.Read(make([]byte, 1))
		c.Close()
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client read %d bytes, %v; want a connection reset", n, err)
		}
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"socket unreachable; connection reset"`) {
		t.Fatalf("no warning logged; logs:\n%s", logs.String())
	}
	if n := s.f.Relayed(); n != 0 {
		t.Fatalf("Relayed() = %d after a failed dial, want 0", n)
	}

	// rbn-kubelet's forward is back: the same forwarder relays again.
	ul := listenUnix(t, path)
	client := dial(t, addr)
	up := accept(t, ul)
	write(t, client, "again")
	if got := readN(t, up.r, 5); got != "again" {
		t.Fatalf("socket side read %q, want again", got)
	}
	if n := s.f.Relayed(); n != 1 {
		t.Fatalf("Relayed() = %d, want 1", n)
	}
}

func TestEachListenAddressHasItsHeader(t *testing.T) {
	path := socketPath(t)
	ul := listenUnix(t, path)
	s := start(t, Config{Socket: path, Listen: []string{"127.0.0.1:0", "127.0.0.2:0"}})
	addrs := s.f.Addrs()
	if len(addrs) != 2 || !strings.HasPrefix(addrs[0], "127.0.0.1:") || !strings.HasPrefix(addrs[1], "127.0.0.2:") {
		t.Fatalf("Addrs() = %q, want 127.0.0.1:port then 127.0.0.2:port", addrs)
	}
	// The second first: headers follow the address, not the order.
	for _, addr := range []string{addrs[1], addrs[0]} {
		client := dial(t, addr)
		up := accept(t, ul)
		if up.listen != addr {
			t.Fatalf("connection to %s has header %q", addr, up.listen)
		}
		write(t, client, addr)
		if got := readN(t, up.r, len(addr)); got != addr {
			t.Fatalf("socket side read %q, want %q", got, addr)
		}
	}
}

func TestListenFailureNamesAddress(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	// An address that is free: the forwarder opens it before failing on
	// the taken one, and must release it.
	probe, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	free := probe.Addr().String()
	probe.Close()

	s := startNoWait(t, Config{Socket: socketPath(t), Listen: []string{free, taken.Addr().String()}})
	select {
	case err := <-s.done:
		if err == nil {
			t.Fatal("Run returned nil with its address in use")
		}
		if !strings.Contains(err.Error(), taken.Addr().String()) || !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("Run error %q, want address in use naming %s", err, taken.Addr())
		}
		s.done <- err // for the cleanup
	case <-time.After(guard):
		t.Fatal("Run did not fail on an address in use")
	}
	select {
	case <-s.f.Ready():
		t.Fatal("Ready closed though a listener failed")
	default:
	}
	again, err := net.Listen("tcp4", free)
	if err != nil {
		t.Fatalf("the listener on %s was not closed: %v", free, err)
	}
	again.Close()
}

func TestRunReturnsOnCancel(t *testing.T) {
	path := socketPath(t)
	ul := listenUnix(t, path)
	s := start(t, Config{Socket: path, Listen: []string{"127.0.0.1:0"}})
	addr := s.f.Addrs()[0]

	// An active relay does not hold Run up: it is closed.
	client := dial(t, addr)
	up := accept(t, ul)
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
		s.done <- err // for the cleanup
	case <-time.After(guard):
		t.Fatal("Run did not return after cancel")
	}
	if got := readAll(t, up.r); got != "" {
		t.Fatalf("socket side read %q, want EOF", got)
	}
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("client connection still open after Run returned")
	}
	if c, err := net.Dial("tcp4", addr); err == nil {
		c.Close()
		t.Fatalf("%s still accepts after Run returned", addr)
	}
}

func TestRunTwice(t *testing.T) {
	s := start(t, Config{Socket: socketPath(t), Listen: []string{"127.0.0.1:0"}})
	if err := s.f.Run(context.Background()); err == nil {
		t.Fatal("a second Run returned nil")
	}
}
