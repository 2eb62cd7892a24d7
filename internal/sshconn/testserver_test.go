package sshconn

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"k8s.io/apimachinery/pkg/util/wait"
	testingclock "k8s.io/utils/clock/testing"
)

// waitTimeout bounds every wait on a condition. It is generous because the
// race detector slows handshakes down; a passing test never waits this long.
const waitTimeout = 20 * time.Second

// testServer is an in-process SSH server on 127.0.0.1: real protocol over
// real TCP, with just what the client needs (public key auth, keepalive
// replies, direct-tcpip, direct-streamlocal and PTY sessions), plus knobs to
// misbehave.
type testServer struct {
	t    *testing.T
	ln   net.Listener
	port int
	cfg  *ssh.ServerConfig
	done chan struct{}
	wg   sync.WaitGroup

	// ignoreKeepalive makes the server swallow keepalive@openssh.com requests
	// without an answer, as a peer that vanished would.
	ignoreKeepalive atomic.Bool
	// exec answers "exec" requests: the command line as the client sent it
	// in, what the command writes and its exit status out.
	exec func(cmd string) (stdout, stderr string, status uint32)
	// stdin, when set, is told what each exec'd command read on its
	// standard input, all of it (the exec answers once it ended).
	stdin func(cmd string, data []byte)
	// forwardPort, when set, is the port "tcpip-forward" requests are
	// granted (nothing listens: the reply is all the client sees of it).
	forwardPort uint32

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every recorded event
	gate    chan struct{} // handshakes wait until it is closed
	conns   map[*ssh.ServerConn]struct{}
	stats   serverStats
}

// serverStats counts what the server saw.
type serverStats struct {
	Accepted   int // TCP connections accepted
	Handshakes int // SSH connections established: host key accepted, client authenticated
	Keepalives int // keepalive@openssh.com requests received (answered or not)
	// Sessions holds, per session channel, its request types in order.
	Sessions     [][]string
	OpenSessions int
	// Forwards holds the address of every tcpip-forward request, and
	// Cancels of every cancel-tcpip-forward.
	Forwards, Cancels []string
}

type serverOptions struct {
	hostKeys   []ssh.Signer // default: one new ed25519 key
	authorized ssh.PublicKey
}

func newTestServer(t *testing.T, opts serverOptions) *testServer {
	t.Helper()
	if len(opts.hostKeys) == 0 {
		opts.hostKeys = []ssh.Signer{newEd25519Signer(t)}
	}
	s := &testServer{
		t:       t,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		gate:    make(chan struct{}),
		conns:   map[*ssh.ServerConn]struct{}{},
	}
	close(s.gate)
	s.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if opts.authorized != nil && bytes.Equal(key.Marshal(), opts.authorized.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	for _, k := range opts.hostKeys {
		s.cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s.ln = ln
	s.port = ln.Addr().(*net.TCPAddr).Port
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *testServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// knownHosts returns a known_hosts line for this server's address and key.
func (s *testServer) knownHosts(key ssh.PublicKey) []byte {
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(s.addr())}, key) + "\n")
}

func (s *testServer) close() {
	close(s.done)
	_ = s.ln.Close()
	s.closeConnections()
	s.wg.Wait()
}

// closeConnections drops every established connection, as a restarting sshd would.
func (s *testServer) closeConnections() {
	s.mu.Lock()
	conns := make([]*ssh.ServerConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// pauseHandshakes holds new connections before the SSH handshake until
// resumeHandshakes, so a test can look at the client while it redials.
func (s *testServer) pauseHandshakes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *testServer) resumeHandshakes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
	default:
		close(s.gate)
	}
}

func (s *testServer) record(f func(*serverStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *testServer) snapshot() (serverStats, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Sessions = make([][]string, len(s.stats.Sessions))
	for i, reqs := range s.stats.Sessions {
		st.Sessions[i] = slices.Clone(reqs)
	}
	return st, s.changed
}

// await waits until cond holds for the server's counters.
func (s *testServer) await(t *testing.T, what string, cond func(serverStats) bool) serverStats {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		st, changed := s.snapshot()
		if cond(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for server: %s; last seen %+v", waitTimeout, what, st)
		}
	}
}

func (s *testServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.record(func(st *serverStats) { st.Accepted++ })
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *testServer) handle(c net.Conn) {
	defer s.wg.Done()
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	select {
	case <-gate:
	case <-s.done:
		_ = c.Close()
		return
	}
	sconn, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		_ = c.Close()
		return
	}
	s.mu.Lock()
	s.conns[sconn] = struct{}{}
	s.mu.Unlock()
	s.record(func(st *serverStats) { st.Handshakes++ })
	defer func() {
		s.mu.Lock()
		delete(s.conns, sconn)
		s.mu.Unlock()
		_ = sconn.Close()
	}()
	select {
	case <-s.done:
		// close() may have run before this connection was registered.
		return
	default:
	}

	s.wg.Add(1)
	go s.globalRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "direct-tcpip":
			var m struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			s.forward(nc, "tcp", net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port))))
		case "direct-streamlocal@openssh.com":
			var m struct {
				SocketPath string
				Reserved0  string
				Reserved1  uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			s.forward(nc, "unix", m.SocketPath)
		case "session":
			s.session(nc)
		default:
			_ = nc.Reject(ssh.UnknownChannelType, nc.ChannelType())
		}
	}
}

func (s *testServer) globalRequests(reqs <-chan *ssh.Request) {
	defer s.wg.Done()
	for r := range reqs {
		if r.Type == "keepalive@openssh.com" {
			ignore := s.ignoreKeepalive.Load()
			s.record(func(st *serverStats) { st.Keepalives++ })
			if ignore {
				continue
			}
		}
		if (r.Type == "tcpip-forward" || r.Type == "cancel-tcpip-forward") && s.forwardPort != 0 {
			var m struct {
				Addr string
				Port uint32
			}
			if err := ssh.Unmarshal(r.Payload, &m); err != nil {
				_ = r.Reply(false, nil)
				continue
			}
			addr := net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port)))
			if r.Type == "tcpip-forward" {
				s.record(func(st *serverStats) { st.Forwards = append(st.Forwards, addr) })
				_ = r.Reply(true, ssh.Marshal(struct{ Port uint32 }{s.forwardPort}))
			} else {
				s.record(func(st *serverStats) { st.Cancels = append(st.Cancels, addr) })
				_ = r.Reply(true, nil)
			}
			continue
		}
		// OpenSSH answers keepalives, like any request it does not know, with a failure.
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// forward connects a channel to a local address, as sshd's port and socket
// forwarding does.
func (s *testServer) forward(nc ssh.NewChannel, network, addr string) {
	target, err := net.Dial(network, addr)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		_ = target.Close()
		return
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs)
	}()
	var once sync.Once
	closeBoth := func() { _ = ch.Close(); _ = target.Close() }
	go func() {
		defer s.wg.Done()
		_, _ = io.Copy(target, ch)
		once.Do(closeBoth)
	}()
	go func() {
		defer s.wg.Done()
		_, _ = io.Copy(ch, target)
		once.Do(closeBoth)
	}()
}

// session accepts a session channel, grants a PTY and a shell, and keeps it
// open (reading and discarding stdin) until the client or the connection
// closes it.
func (s *testServer) session(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	var idx int
	s.record(func(st *serverStats) {
		idx = len(st.Sessions)
		st.Sessions = append(st.Sessions, nil)
		st.OpenSessions++
	})
	s.wg.Add(2)
	var in bytes.Buffer
	inDone := make(chan struct{})
	go func() {
		defer s.wg.Done()
		defer close(inDone)
		_, _ = io.Copy(&in, ch)
	}()
	go func() {
		defer s.wg.Done()
		defer func() {
			_ = ch.Close()
			s.record(func(st *serverStats) { st.OpenSessions-- })
		}()
		for r := range reqs {
			s.record(func(st *serverStats) { st.Sessions[idx] = append(st.Sessions[idx], r.Type) })
			if r.Type == "exec" && s.exec != nil {
				var cmd struct{ Command string }
				if err := ssh.Unmarshal(r.Payload, &cmd); err != nil {
					_ = r.Reply(false, nil)
					continue
				}
				_ = r.Reply(true, nil)
				if s.stdin != nil {
					<-inDone
					s.stdin(cmd.Command, in.Bytes())
				}
				stdout, stderr, status := s.exec(cmd.Command)
				_, _ = io.WriteString(ch, stdout)
				_, _ = io.WriteString(ch.Stderr(), stderr)
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
				return
			}
			ok := r.Type == "pty-req" || r.Type == "shell"
			if r.WantReply {
				_ = r.Reply(ok, nil)
			}
		}
	}()
}

// echoServer accepts connections on ln and writes back what it reads.
func echoServer(t *testing.T, ln net.Listener) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
}

func tcpEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	echoServer(t, ln)
	return ln.Addr().String()
}

func unixEcho(t *testing.T) string {
	t.Helper()
	// Not t.TempDir: socket paths are limited to ~108 bytes and test names are long.
	dir, err := os.MkdirTemp("", "rbn-sshconn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "echo.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	echoServer(t, ln)
	return path
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// notSSHServer accepts connections and closes them at once.
func notSSHServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newEd25519Signer(t *testing.T) ssh.Signer {
	t.Helper()
	signer, _ := newEd25519Key(t)
	return signer
}

// newEd25519Key returns a new key as a signer and as the PEM a Secret holds.
func newEd25519Key(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return signer, pem.EncodeToMemory(block)
}

// rsaHostKey is generated once: RSA generation is slow under the race detector.
var rsaHostKey = sync.OnceValues(func() (ssh.Signer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(k)
})

func newRSASigner(t *testing.T) ssh.Signer {
	t.Helper()
	s, err := rsaHostKey()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fixture is a server, a client configured for it, and the client's fake clock.
type fixture struct {
	srv       *testServer
	hostKey   ssh.Signer
	clientKey []byte
	cfg       Config
	clk       *testingclock.FakeClock
}

// newFixture starts a server that trusts a new client key and returns a
// client Config that trusts the server's ed25519 host key.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	hostKey := newEd25519Signer(t)
	clientSigner, clientPEM := newEd25519Key(t)
	srv := newTestServer(t, serverOptions{hostKeys: []ssh.Signer{hostKey}, authorized: clientSigner.PublicKey()})
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	return &fixture{
		srv:       srv,
		hostKey:   hostKey,
		clientKey: clientPEM,
		clk:       clk,
		cfg: Config{
			Host:              "127.0.0.1",
			Port:              srv.port,
			User:              "rbn",
			PrivateKey:        clientPEM,
			KnownHosts:        srv.knownHosts(hostKey.PublicKey()),
			KeepaliveInterval: 10 * time.Second,
			KeepaliveTimeout:  15 * time.Second,
			MinBackoff:        time.Second,
			MaxBackoff:        8 * time.Second,
			Clock:             clk,
		},
	}
}

// run starts Run for a client built from cfg. The returned stop ends Run's
// context and fails the test unless Run returns promptly; it also runs at the
// end of the test.
func run(t *testing.T, cfg Config) (c *Client, stop func()) {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	stop = func() {
		t.Helper()
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %s of its context ending", waitTimeout)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// awaitState waits, through Changed, until cond holds for the client's state.
func awaitState(t *testing.T, c *Client, what string, cond func(State) bool) State {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		changed := c.Changed()
		st := c.State()
		if cond(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for client state: %s; last state %+v", waitTimeout, what, st)
		}
	}
}

func connected(st State) bool { return st.Connected }

// awaitWaiters waits until the fake clock has n timers and tickers. The clock
// offers no notification, so this polls (in real time) with a deadline.
func awaitWaiters(t *testing.T, clk *testingclock.FakeClock, what string, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, waitTimeout, true,
		func(context.Context) (bool, error) { return clk.Waiters() == n, nil })
	if err != nil {
		t.Fatalf("waiting for %d clock waiters (%s): have %d: %v", n, what, clk.Waiters(), err)
	}
}

// echo writes msg through conn and expects it back. SSH channels have no
// deadlines, so a stuck exchange is cut short by closing conn.
func echo(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	type result struct {
		got []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		if _, err := io.WriteString(conn, msg); err != nil {
			res <- result{err: fmt.Errorf("write: %w", err)}
			return
		}
		got := make([]byte, len(msg))
		_, err := io.ReadFull(conn, got)
		res <- result{got: got, err: err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("echo %q: %v", msg, r.err)
		}
		if string(r.got) != msg {
			t.Fatalf("echo: got %q, want %q", r.got, msg)
		}
	case <-time.After(waitTimeout):
		_ = conn.Close()
		<-res
		t.Fatalf("echo %q: no answer within %s", msg, waitTimeout)
	}
}

func describe(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%v (reason %q)", err, ReasonOf(err))
}
