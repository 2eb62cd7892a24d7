package sshconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"k8s.io/utils/clock"
)

// Config says where the host is and how to trust and authenticate to it.
type Config struct {
	Host       string
	Port       int
	User       string
	PrivateKey []byte // PEM, as in a kubernetes.io/ssh-auth Secret
	KnownHosts []byte // OpenSSH known_hosts lines for this host

	// DialTimeout bounds TCP connect plus SSH handshake. Default 10s.
	DialTimeout time.Duration
	// KeepaliveInterval is how often the peer is asked to answer. Default 10s.
	KeepaliveInterval time.Duration
	// KeepaliveTimeout is how long an answer may take before the connection
	// is declared dead. Default 15s.
	KeepaliveTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay between redials. Defaults 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Interactive holds one PTY session open per connection. sshd enables
	// TCP_NODELAY only on connections it considers interactive; without it
	// each small API request stalls ~40 ms on Nagle's algorithm.
	Interactive bool

	Clock  clock.WithTicker
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Port == 0 {
		c.Port = 22
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 10 * time.Second
	}
	if c.KeepaliveTimeout == 0 {
		c.KeepaliveTimeout = 15 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// State is the connection's health as last observed.
type State struct {
	Connected bool
	// Err is the failure that ended or prevented the last connection; nil
	// while connected and before the first attempt ended.
	Err error
	// Since is when Connected last changed.
	Since time.Time
	// RTT is the round trip of the last keepalive.
	RTT time.Duration
	// Connects counts the connections made; Failures the attempts that
	// failed, by reason (ReasonOf); Losses the connections lost once made.
	Connects uint64
	Failures map[Reason]uint64
	Losses   uint64
	// Channels counts the channels open now for callers (Dial, Output,
	// Stream, connections accepted on ListenLoopback's listeners), on this
	// connection and any earlier one whose channels were not closed yet.
	Channels int64
}

// Client holds one SSH connection to a host, redialing as needed once Run is called.
type Client struct {
	cfg       Config
	addr      string
	sshConfig *ssh.ClientConfig
	hostKeyMu sync.Mutex
	hostKey   error // last host key rejection, for classification

	mu      sync.Mutex
	conn    *ssh.Client
	state   State
	changed chan struct{}

	channels channelCount
}

// New validates cfg and parses its key material. It does not connect.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if cfg.Host == "" {
		return nil, errors.New("sshconn: host is empty")
	}
	if cfg.User == "" {
		return nil, errors.New("sshconn: user is empty")
	}
	signer, err := ssh.ParsePrivateKey(cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("sshconn: parse private key: %w", err)
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	hostKeyCB, algos, err := parseKnownHosts(cfg.KnownHosts)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, addr: addr, changed: make(chan struct{})}
	c.sshConfig = &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := hostKeyCB(hostname, remote, key)
			c.hostKeyMu.Lock()
			c.hostKey = err
			c.hostKeyMu.Unlock()
			return err
		},
		// Only offer the key types known_hosts has for this host; otherwise the
		// server may pick another type and fail a check that should pass.
		HostKeyAlgorithms: algos,
		Timeout:           cfg.DialTimeout,
		ClientVersion:     "SSH-2.0-rbn",
	}
	c.state.Since = cfg.Clock.Now()
	return c, nil
}

// Addr is host:port.
func (c *Client) Addr() string { return c.addr }

// parseKnownHosts builds a strict callback from known_hosts bytes. The
// knownhosts package reads files only, so the lines go through a private
// temporary file that is removed at once; they are public keys, not secrets.
func parseKnownHosts(data []byte) (ssh.HostKeyCallback, []string, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, errors.New("sshconn: known_hosts is empty: host keys are never trusted on first use")
	}
	var algos []string
	seen := map[string]bool{}
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		_, _, key, _, r, err := ssh.ParseKnownHosts(rest)
		if errors.Is(err, io.EOF) {
			break // only comments and blank lines were left
		}
		if err != nil {
			return nil, nil, fmt.Errorf("sshconn: parse known_hosts: %w", err)
		}
		rest = r
		for _, a := range algorithmsFor(key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	if len(algos) == 0 {
		return nil, nil, errors.New("sshconn: known_hosts has no host keys: host keys are never trusted on first use")
	}
	dir, err := os.MkdirTemp("", "rbn-known-hosts-")
	if err != nil {
		return nil, nil, fmt.Errorf("sshconn: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, nil, fmt.Errorf("sshconn: %w", err)
	}
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, nil, fmt.Errorf("sshconn: parse known_hosts: %w", err)
	}
	return cb, algos, nil
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// State returns the current connection state; its Failures is a copy.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state
	st.Failures = maps.Clone(c.state.Failures)
	st.Channels = c.channels.n.Load()
	return st
}

// User is the user the client logs in as.
func (c *Client) User() string { return c.cfg.User }

// Changed returns a channel that is closed at the next state change.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *Client) setState(conn *ssh.Client, connected bool, err error, rtt time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Connected != connected {
		c.state.Since = c.cfg.Clock.Now()
	}
	c.conn = conn
	c.state.Connected = connected
	c.state.Err = err
	c.state.RTT = rtt
	close(c.changed)
	c.changed = make(chan struct{})
}

// count updates the state's counters.
func (c *Client) count(f func(*State)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.state)
}

func (c *Client) setRTT(rtt time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.RTT = rtt
}

// connected returns the current connection, or ErrNotConnected (an *Error
// of ReasonNotConnected) while there is none.
func (c *Client) connected() (*ssh.Client, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return nil, &Error{Reason: ReasonNotConnected, Addr: c.addr, Err: errors.New("no ssh connection")}
	}
	return conn, nil
}

// Dial opens a channel to network ("unix" or "tcp") address on the host.
// It fails at once with ErrNotConnected while there is no connection.
func (c *Client) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := c.connected()
	if err != nil {
		return nil, err
	}
	ch, err := conn.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: open %s channel to %s: %w", c.addr, network, address, err)
	}
	return c.channels.conn(ch), nil
}

// Run keeps a connection up until ctx ends, redialing with backoff.
func (c *Client) Run(ctx context.Context) {
	log := c.cfg.Logger.With("addr", c.addr)
	backoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		conn, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Info("ssh connect failed", "reason", ReasonOf(err), "err", err, "retryIn", backoff)
			c.count(func(st *State) {
				if st.Failures == nil {
					st.Failures = map[Reason]uint64{}
				}
				st.Failures[ReasonOf(err)]++
			})
			c.setState(nil, false, err, 0)
			if !c.sleep(ctx, backoff) {
				break
			}
			backoff = min(2*backoff, c.cfg.MaxBackoff)
			continue
		}
		backoff = c.cfg.MinBackoff
		log.Info("ssh connected")
		c.count(func(st *State) { st.Connects++ })
		c.setState(conn, true, nil, 0)
		err = c.hold(ctx, conn)
		_ = conn.Close()
		if ctx.Err() != nil {
			break
		}
		log.Info("ssh connection lost", "err", err)
		c.count(func(st *State) { st.Losses++ })
		c.setState(nil, false, &Error{Reason: ReasonConnectionLost, Addr: c.addr, Err: err}, 0)
	}
	c.setState(nil, false, &Error{Reason: ReasonNotConnected, Addr: c.addr, Err: errors.New("client stopped")}, 0)
}

func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	t := c.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

func (c *Client) dial(ctx context.Context) (*ssh.Client, error) {
	c.hostKeyMu.Lock()
	c.hostKey = nil
	c.hostKeyMu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	tcp, err := (&net.Dialer{KeepAlive: c.cfg.KeepaliveInterval}).DialContext(dctx, "tcp", c.addr)
	if err != nil {
		return nil, classifyDial(c.addr, err, nil)
	}
	// The handshake has no context: bound it with a deadline on the socket,
	// and cut it short when ctx ends so that Run stops promptly.
	deadline, _ := dctx.Deadline()
	_ = tcp.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { _ = tcp.SetDeadline(time.Now()) })
	sconn, chans, reqs, err := ssh.NewClientConn(tcp, c.addr, c.sshConfig)
	if !stop() && err == nil {
		// ctx ended just as the handshake finished: the socket may carry a past deadline.
		_ = sconn.Close()
		return nil, classifyDial(c.addr, dctx.Err(), nil)
	}
	if err != nil {
		_ = tcp.Close()
		c.hostKeyMu.Lock()
		hk := c.hostKey
		c.hostKeyMu.Unlock()
		return nil, classifyDial(c.addr, err, hk)
	}
	_ = tcp.SetDeadline(time.Time{})
	return ssh.NewClient(sconn, chans, reqs), nil
}

// hold watches a live connection: it returns when the peer closes it, a
// keepalive goes unanswered, or ctx ends.
func (c *Client) hold(ctx context.Context, conn *ssh.Client) error {
	closed := make(chan error, 1)
	go func() { closed <- conn.Wait() }()

	if c.cfg.Interactive {
		if sess, err := openInteractive(conn); err != nil {
			c.cfg.Logger.Warn("no interactive session: requests may be slower (Nagle)", "addr", c.addr, "err", err)
		} else {
			defer sess.Close()
		}
	}

	ticker := c.cfg.Clock.NewTicker(c.cfg.KeepaliveInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-closed:
			if err == nil {
				err = errors.New("closed by peer")
			}
			return err
		case <-ticker.C():
			rtt, err := c.keepalive(ctx, conn)
			if err != nil {
				return err
			}
			c.setRTT(rtt)
		}
	}
}

func (c *Client) keepalive(ctx context.Context, conn *ssh.Client) (time.Duration, error) {
	start := c.cfg.Clock.Now()
	reply := make(chan error, 1)
	go func() {
		_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
		reply <- err
	}()
	t := c.cfg.Clock.NewTimer(c.cfg.KeepaliveTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case err := <-reply:
		if err != nil {
			return 0, fmt.Errorf("keepalive: %w", err)
		}
		return c.cfg.Clock.Since(start), nil
	case <-t.C():
		return 0, fmt.Errorf("keepalive unanswered after %s", c.cfg.KeepaliveTimeout)
	}
}

// openInteractive opens a session with a PTY and a login shell that reads a
// stdin we never write to; it lives as long as the connection.
func openInteractive(conn *ssh.Client) (*ssh.Session, error) {
	sess, err := conn.NewSession()
	if err != nil {
		return nil, err
	}
	if err := sess.RequestPty("dumb", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		sess.Close()
		return nil, err
	}
	if _, err := sess.StdinPipe(); err != nil {
		sess.Close()
		return nil, err
	}
	if err := sess.Shell(); err != nil {
		sess.Close()
		return nil, err
	}
	return sess, nil
}
