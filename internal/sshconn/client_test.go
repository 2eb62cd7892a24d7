package sshconn

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

var allSentinels = []error{
	ErrUnreachable, ErrHostKeyMismatch, ErrHostKeyUnknown, ErrAuthFailed,
	ErrHandshakeFailed, ErrConnectionLost, ErrNotConnected,
}

// assertClassified checks that err carries reason and matches want and no
// other sentinel.
func assertClassified(t *testing.T, err error, want error, reason Reason) {
	t.Helper()
	if got := ReasonOf(err); got != reason {
		t.Errorf("ReasonOf(%v) = %q, want %q", err, got, reason)
	}
	for _, s := range allSentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%v, %q) = %v, want %v", err, s, got, s == want)
		}
	}
}

func TestNew(t *testing.T) {
	_, keyPEM := newEd25519Key(t)
	hostKey := newEd25519Signer(t)
	line := knownhosts.Line([]string{"[build-01.example.com]:2222"}, hostKey.PublicKey())

	tests := []struct {
		name     string
		mutate   func(*Config)
		wantErr  string // substring; "" means New succeeds
		wantAddr string
	}{
		{name: "valid", wantAddr: "build-01.example.com:2222"},
		{name: "port defaults to 22", mutate: func(c *Config) { c.Port = 0 }, wantAddr: "build-01.example.com:22"},
		{name: "IPv6 host", mutate: func(c *Config) { c.Host = "fd00::1" }, wantAddr: "[fd00::1]:2222"},
		{
			name: "known_hosts with comments and blank lines",
			mutate: func(c *Config) {
				c.KnownHosts = []byte("# build-01, from ssh-keyscan\n\n" + line + "\n# rotated 2026-01\n\n")
			},
			wantAddr: "build-01.example.com:2222",
		},
		{name: "known_hosts with CRLF line ends", mutate: func(c *Config) { c.KnownHosts = []byte(line + "\r\n") }, wantAddr: "build-01.example.com:2222"},
		{name: "empty host", mutate: func(c *Config) { c.Host = "" }, wantErr: "host is empty"},
		{name: "empty user", mutate: func(c *Config) { c.User = "" }, wantErr: "user is empty"},
		{
			name: "garbage private key",
			mutate: func(c *Config) {
				c.PrivateKey = []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n")
			},
			wantErr: "parse private key",
		},
		{name: "no private key", mutate: func(c *Config) { c.PrivateKey = nil }, wantErr: "parse private key"},
		{name: "empty known_hosts", mutate: func(c *Config) { c.KnownHosts = nil }, wantErr: "known_hosts is empty"},
		{name: "blank known_hosts", mutate: func(c *Config) { c.KnownHosts = []byte(" \n\t\n") }, wantErr: "known_hosts is empty"},
		{name: "known_hosts with comments only", mutate: func(c *Config) { c.KnownHosts = []byte("# nothing here\n") }, wantErr: "no host keys"},
		{name: "malformed known_hosts line", mutate: func(c *Config) { c.KnownHosts = []byte("build-01.example.com ssh-ed25519\n") }, wantErr: "parse known_hosts"},
		{name: "known_hosts key not base64", mutate: func(c *Config) { c.KnownHosts = []byte("build-01.example.com ssh-ed25519 !!!\n") }, wantErr: "parse known_hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{
				Host:       "build-01.example.com",
				Port:       2222,
				User:       "root",
				PrivateKey: keyPEM,
				KnownHosts: []byte(line + "\n"),
			}
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			c, err := New(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := c.Addr(); got != tt.wantAddr {
				t.Errorf("Addr() = %q, want %q", got, tt.wantAddr)
			}
			// Before any attempt there is nothing to report: not connected, no error.
			if st := c.State(); st.Connected || st.Err != nil {
				t.Errorf("new client state = %+v, want not connected and no error", st)
			}
		})
	}
}

func TestDialNotConnected(t *testing.T) {
	f := newFixture(t)
	c, err := New(f.cfg) // never Run
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ network, addr string }{
		{"tcp", "127.0.0.1:8080"},
		{"unix", "/run/podman/podman.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.network, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			conn, err := c.Dial(ctx, tt.network, tt.addr)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded without a connection")
			}
			assertClassified(t, err, ErrNotConnected, ReasonNotConnected)
		})
	}
	if st := f.srv.await(t, "nothing", func(serverStats) bool { return true }); st.Accepted != 0 {
		t.Errorf("Dial without Run reached the server: %+v", st)
	}
}

func TestConnectAndDial(t *testing.T) {
	f := newFixture(t)
	c, _ := run(t, f.cfg)
	st := awaitState(t, c, "connected", connected)
	if st.Err != nil {
		t.Errorf("connected state carries an error: %v", st.Err)
	}
	if !st.Since.Equal(f.clk.Now()) {
		t.Errorf("Since = %v, want the clock's time %v", st.Since, f.clk.Now())
	}

	tests := []struct {
		name    string
		network string
		addr    func(*testing.T) string
	}{
		{"tcp", "tcp", tcpEcho},
		{"unix socket, as podman is reached", "unix", unixEcho},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr(t)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			// Two channels at once: each Dial is its own stream on the one connection.
			a, err := c.Dial(ctx, tt.network, addr)
			if err != nil {
				t.Fatalf("Dial(%s, %s): %v", tt.network, addr, err)
			}
			defer a.Close()
			b, err := c.Dial(ctx, tt.network, addr)
			if err != nil {
				t.Fatalf("second Dial(%s, %s): %v", tt.network, addr, err)
			}
			defer b.Close()
			echo(t, a, "ping from a")
			echo(t, b, "ping from b")
			echo(t, a, strings.Repeat("x", 256<<10)) // larger than the channel window
		})
	}

	t.Run("target refuses", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		addr := closedPort(t)
		conn, err := c.Dial(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			t.Fatalf("Dial to %s where nothing listens succeeded", addr)
		}
		var open *ssh.OpenChannelError
		if !errors.As(err, &open) || open.Reason != ssh.ConnectionFailed {
			t.Errorf("Dial error %v, want an ssh.OpenChannelError with ConnectionFailed", err)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("Dial error %q does not name the target %s", err, addr)
		}
		// A refused channel says nothing about the connection.
		if st := c.State(); !st.Connected {
			t.Errorf("a refused channel ended the connection: %+v", st)
		}
	})

	if got := f.srv.await(t, "one connection", func(serverStats) bool { return true }).Handshakes; got != 1 {
		t.Errorf("server saw %d SSH connections, want all channels on 1", got)
	}
}

func TestConnectFailures(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*testing.T, *fixture)
		want   error
		reason Reason
	}{
		{
			name: "host key mismatch",
			mutate: func(t *testing.T, f *fixture) {
				f.cfg.KnownHosts = f.srv.knownHosts(newEd25519Signer(t).PublicKey())
			},
			want:   ErrHostKeyMismatch,
			reason: ReasonHostKeyMismatch,
		},
		{
			name: "known_hosts lists only another host",
			mutate: func(t *testing.T, f *fixture) {
				f.cfg.KnownHosts = []byte(knownhosts.Line([]string{"build-02.example.com"}, f.hostKey.PublicKey()) + "\n")
			},
			want:   ErrHostKeyUnknown,
			reason: ReasonHostKeyUnknown,
		},
		{
			name: "known_hosts lists the host on another port",
			mutate: func(t *testing.T, f *fixture) {
				f.cfg.KnownHosts = []byte(knownhosts.Line([]string{"127.0.0.1"}, f.hostKey.PublicKey()) + "\n")
			},
			want:   ErrHostKeyUnknown,
			reason: ReasonHostKeyUnknown,
		},
		{
			name: "client key not authorized",
			mutate: func(t *testing.T, f *fixture) {
				_, f.cfg.PrivateKey = newEd25519Key(t)
			},
			want:   ErrAuthFailed,
			reason: ReasonAuthFailed,
		},
		{
			name: "nothing listening",
			mutate: func(t *testing.T, f *fixture) {
				f.cfg.Port = mustPort(t, closedPort(t))
			},
			want:   ErrUnreachable,
			reason: ReasonUnreachable,
		},
		{
			name: "not an ssh server",
			mutate: func(t *testing.T, f *fixture) {
				f.cfg.Port = mustPort(t, notSSHServer(t))
			},
			want:   ErrHandshakeFailed,
			reason: ReasonHandshakeFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tt.mutate(t, f)
			c, _ := run(t, f.cfg)
			st := awaitState(t, c, "a failed attempt", func(st State) bool {
				return st.Connected || st.Err != nil
			})
			if st.Connected {
				t.Fatalf("connected, want %v", tt.want)
			}
			assertClassified(t, st.Err, tt.want, tt.reason)
			if st.Failures[tt.reason] != 1 || len(st.Failures) != 1 || st.Connects != 0 {
				t.Errorf("counters: failures %v, %d connects; want one %s", st.Failures, st.Connects, tt.reason)
			}
			if !strings.Contains(st.Err.Error(), c.Addr()) {
				t.Errorf("error %q does not name the address %s", st.Err, c.Addr())
			}

			// The client now waits out its backoff on the fake clock, which
			// never moves: it cannot have connected in between.
			awaitWaiters(t, f.clk, "backoff timer", 1)
			if st := c.State(); st.Connected || !errors.Is(st.Err, tt.want) {
				t.Errorf("state while backing off = %+v, want not connected with %v", st, tt.want)
			}
			if got := f.srv.await(t, "nothing", func(serverStats) bool { return true }).Handshakes; got != 0 {
				t.Errorf("server completed %d SSH handshakes, want 0", got)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if conn, err := c.Dial(ctx, "tcp", "127.0.0.1:1"); !errors.Is(err, ErrNotConnected) {
				if conn != nil {
					conn.Close()
				}
				t.Errorf("Dial after failure: %s, want ErrNotConnected", describe(err))
			}
		})
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRedialBackoff checks the delays between failed attempts: doubling from
// MinBackoff, capped at MaxBackoff.
func TestRedialBackoff(t *testing.T) {
	f := newFixture(t)
	_, f.cfg.PrivateKey = newEd25519Key(t) // every attempt fails authentication
	f.cfg.MinBackoff, f.cfg.MaxBackoff = time.Second, 4*time.Second
	run(t, f.cfg)

	const tick = time.Millisecond
	for i, delay := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		attempt := i + 1
		f.srv.await(t, "attempt "+strconv.Itoa(attempt), func(st serverStats) bool { return st.Accepted == attempt })
		awaitWaiters(t, f.clk, "backoff timer after attempt "+strconv.Itoa(attempt), 1)
		f.clk.Step(delay - tick)
		// Timers fire inside Step: one still pending means no redial yet.
		if n := f.clk.Waiters(); n != 1 {
			t.Fatalf("after attempt %d, the backoff ended before %s", attempt, delay)
		}
		f.clk.Step(tick)
	}
	f.srv.await(t, "attempt 5", func(st serverStats) bool { return st.Accepted == 5 })
}

// TestHostKeyAlgorithms: a host with several host keys, of which known_hosts
// lists one. The client must ask for that key's type, not its own favourite.
func TestHostKeyAlgorithms(t *testing.T) {
	ed := newEd25519Signer(t)
	rsaKey := newRSASigner(t)
	tests := []struct {
		name  string
		known ssh.Signer
	}{
		{"only ed25519 known", ed},
		{"only rsa known", rsaKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientSigner, clientPEM := newEd25519Key(t)
			srv := newTestServer(t, serverOptions{hostKeys: []ssh.Signer{rsaKey, ed}, authorized: clientSigner.PublicKey()})
			f := newFixture(t)
			f.cfg.Port, f.cfg.PrivateKey, f.cfg.KnownHosts = srv.port, clientPEM, srv.knownHosts(tt.known.PublicKey())
			c, _ := run(t, f.cfg)
			st := awaitState(t, c, "connected or failed", func(st State) bool {
				return st.Connected || st.Err != nil
			})
			if !st.Connected {
				t.Fatalf("not connected: %s", describe(st.Err))
			}
		})
	}
}

func TestKeepalive(t *testing.T) {
	f := newFixture(t)
	c, _ := run(t, f.cfg)
	awaitState(t, c, "connected", connected)
	awaitWaiters(t, f.clk, "keepalive ticker", 1)

	// An answered keepalive keeps the connection.
	f.clk.Step(f.cfg.KeepaliveInterval)
	f.srv.await(t, "keepalive 1", func(st serverStats) bool { return st.Keepalives == 1 })

	// The peer goes silent: the next keepalive gets no answer.
	f.srv.ignoreKeepalive.Store(true)
	f.srv.pauseHandshakes() // hold the redial so the lost state can be seen
	f.clk.Step(f.cfg.KeepaliveInterval)
	f.srv.await(t, "keepalive 2", func(st serverStats) bool { return st.Keepalives == 2 })
	// Keepalive 1 is done (2 was sent), so the waiters are the ticker and keepalive 2's timeout.
	awaitWaiters(t, f.clk, "ticker and keepalive timeout", 2)
	if st := c.State(); !st.Connected {
		t.Fatalf("lost the connection before the keepalive timed out: %+v", st)
	}
	f.clk.Step(f.cfg.KeepaliveTimeout)
	st := awaitState(t, c, "connection lost", func(st State) bool { return !st.Connected })
	assertClassified(t, st.Err, ErrConnectionLost, ReasonConnectionLost)
	if !strings.Contains(st.Err.Error(), "keepalive") {
		t.Errorf("error %q does not say a keepalive went unanswered", st.Err)
	}
	if want := f.clk.Now(); !st.Since.Equal(want) {
		t.Errorf("Since = %v, want the time of the loss %v", st.Since, want)
	}

	// The peer is back: the client redials at once.
	f.srv.ignoreKeepalive.Store(false)
	f.srv.resumeHandshakes()
	st = awaitState(t, c, "reconnected", connected)
	if got := f.srv.await(t, "second connection", func(st serverStats) bool { return st.Handshakes >= 2 }).Handshakes; got != 2 {
		t.Errorf("server saw %d connections, want 2", got)
	}
	if st.Connects != 2 || st.Losses != 1 || len(st.Failures) != 0 {
		t.Errorf("counters: %d connects, %d losses, failures %v; want 2, 1 and none", st.Connects, st.Losses, st.Failures)
	}
}

func TestReconnectAfterServerCloses(t *testing.T) {
	f := newFixture(t)
	c, _ := run(t, f.cfg)
	awaitState(t, c, "connected", connected)
	addr := tcpEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	// The client may see the handshake finish before the server has recorded the connection.
	f.srv.await(t, "connection recorded", func(st serverStats) bool { return st.Handshakes == 1 })
	f.srv.pauseHandshakes()
	f.srv.closeConnections()
	st := awaitState(t, c, "connection lost", func(st State) bool { return !st.Connected })
	assertClassified(t, st.Err, ErrConnectionLost, ReasonConnectionLost)
	if conn, err := c.Dial(ctx, "tcp", addr); !errors.Is(err, ErrNotConnected) {
		if conn != nil {
			conn.Close()
		}
		t.Errorf("Dial while reconnecting: %s, want ErrNotConnected", describe(err))
	}

	f.srv.resumeHandshakes()
	awaitState(t, c, "reconnected", connected)
	conn, err := c.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("Dial after reconnecting: %v", err)
	}
	defer conn.Close()
	echo(t, conn, "ping")
}

func TestInteractive(t *testing.T) {
	tests := []struct {
		interactive  bool
		wantSessions [][]string
	}{
		{interactive: false, wantSessions: [][]string{}},
		{interactive: true, wantSessions: [][]string{{"pty-req", "shell"}}},
	}
	for _, tt := range tests {
		t.Run("interactive="+strconv.FormatBool(tt.interactive), func(t *testing.T) {
			f := newFixture(t)
			f.cfg.Interactive = tt.interactive
			c, _ := run(t, f.cfg)
			awaitState(t, c, "connected", connected)
			// The session is set up before the keepalive ticker starts, so
			// once the ticker exists the server has seen every request.
			awaitWaiters(t, f.clk, "keepalive ticker", 1)
			st, _ := f.srv.snapshot()
			if !slices.EqualFunc(st.Sessions, tt.wantSessions, slices.Equal) {
				t.Errorf("sessions = %q, want %q", st.Sessions, tt.wantSessions)
			}
			if st.OpenSessions != len(tt.wantSessions) {
				t.Errorf("%d sessions open, want %d", st.OpenSessions, len(tt.wantSessions))
			}
		})
	}
}

func TestRunStops(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(*testing.T, *fixture)
		await   func(*testing.T, *fixture, *Client)
	}{
		{
			name: "while connected",
			await: func(t *testing.T, f *fixture, c *Client) {
				awaitState(t, c, "connected", connected)
			},
		},
		{
			name:    "while backing off",
			prepare: func(t *testing.T, f *fixture) { _, f.cfg.PrivateKey = newEd25519Key(t) },
			await: func(t *testing.T, f *fixture, c *Client) {
				awaitState(t, c, "failed", func(st State) bool { return errors.Is(st.Err, ErrAuthFailed) })
			},
		},
		{
			name:    "while a keepalive is unanswered",
			prepare: func(t *testing.T, f *fixture) { f.srv.ignoreKeepalive.Store(true) },
			await: func(t *testing.T, f *fixture, c *Client) {
				awaitState(t, c, "connected", connected)
				awaitWaiters(t, f.clk, "keepalive ticker", 1)
				f.clk.Step(f.cfg.KeepaliveInterval)
				f.srv.await(t, "keepalive", func(st serverStats) bool { return st.Keepalives == 1 })
				awaitWaiters(t, f.clk, "ticker and keepalive timeout", 2)
			},
		},
		{
			name:    "during a handshake that hangs",
			prepare: func(t *testing.T, f *fixture) { f.srv.pauseHandshakes() },
			await: func(t *testing.T, f *fixture, c *Client) {
				f.srv.await(t, "connection accepted", func(st serverStats) bool { return st.Accepted == 1 })
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			// Far longer than run waits for Run to return: only ctx can end
			// a handshake or a keepalive in time.
			f.cfg.DialTimeout, f.cfg.KeepaliveTimeout = time.Hour, time.Hour
			if tt.prepare != nil {
				tt.prepare(t, f)
			}
			c, stop := run(t, f.cfg)
			tt.await(t, f, c)
			stop()
			st := c.State()
			if st.Connected {
				t.Fatalf("connected after Run returned: %+v", st)
			}
			assertClassified(t, st.Err, ErrNotConnected, ReasonNotConnected)
		})
	}
}
