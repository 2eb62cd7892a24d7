package spdyconn

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/rest"
	clientspdy "k8s.io/client-go/transport/spdy"
)

// pingPeriod is how often an idle connection is pinged (client-go's).
const pingPeriod = 5 * time.Second

// dialTimeout bounds the TCP connect and TLS handshake, and then the
// request and its response (a variable for the tests).
var dialTimeout = 30 * time.Second

// Dial upgrades a request to u (method, with protocols offered) to a SPDY
// connection whose frames leave whole (Frames), with cfg's TLS settings and
// credentials (its bearer token file is read again as client-go does). It
// goes straight to u's host, whatever proxy the environment names: it is
// for connections inside the cluster (a node's kubelet API).
//
// client-go's SPDY round tripper keeps the connection it dialed in the
// round tripper itself, so two upgrades through one round tripper at once
// can swap their connections; each Dial here has its own.
func Dial(cfg *rest.Config, method string, u *url.URL, protocols ...string) (httpstream.Connection, error) {
	up, rt, err := newUpgrader(cfg, u, spdy.HeaderSpdy31)
	if err != nil {
		return nil, err
	}
	conn, _, err := clientspdy.NewDialer(up, &http.Client{Transport: rt}, method, u).Dial(protocols...)
	if err != nil {
		up.close()
		return nil, err
	}
	return conn, nil
}

// newUpgrader is the upgrader of one upgrade of a request to u to protocol,
// with cfg's TLS settings, and the round tripper that sends the request
// through it with cfg's credentials.
func newUpgrader(cfg *rest.Config, u *url.URL, protocol string) (*upgrader, http.RoundTripper, error) {
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	if tlsConfig == nil && u.Scheme == "https" {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	up := &upgrader{tls: tlsConfig, protocol: protocol}
	rt, err := rest.HTTPWrappersForConfig(cfg, up)
	if err != nil {
		return nil, nil, err
	}
	return up, rt, nil
}

// upgrader is the round tripper and upgrader of one upgrade to protocol:
// RoundTrip dials and sends the request, NewConnection makes the SPDY
// connection of its response.
type upgrader struct {
	tls      *tls.Config
	protocol string // the Upgrade header's

	mu   sync.Mutex
	conn net.Conn
	br   *bufio.Reader
}

func (u *upgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Add(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Add(httpstream.HeaderUpgrade, u.protocol)
	host := req.URL.Host
	if req.URL.Port() == "" {
		port := "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(req.URL.Hostname(), port)
	}
	nd := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	var conn net.Conn
	var err error
	if req.URL.Scheme == "https" {
		cfg := u.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = req.URL.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"} // an upgrade is HTTP/1.1's
		conn, err = (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(req.Context(), "tcp", host)
	} else {
		conn, err = nd.DialContext(req.Context(), "tcp", host)
	}
	if err != nil {
		return nil, err
	}
	// A server that accepted but does not answer is not waited for forever.
	_ = conn.SetDeadline(time.Now().Add(dialTimeout))
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	u.mu.Lock()
	u.conn, u.br = conn, br
	u.mu.Unlock()
	return resp, nil
}

// NewConnection makes the SPDY connection of an upgraded response; any
// other response is an error with its body, and closes the connection.
func (u *upgrader) NewConnection(resp *http.Response) (httpstream.Connection, error) {
	conn, br, err := u.upgraded(resp)
	if err != nil {
		return nil, err
	}
	return spdy.NewClientConnectionWithPings(Frames(&bufferedConn{Conn: conn, r: br}), pingPeriod)
}

// upgraded returns the connection of a response that upgraded it to
// u.protocol, with the reader of what the server sent after the response;
// any other response is an UpgradeError with its body, and closes the
// connection.
func (u *upgrader) upgraded(resp *http.Response) (net.Conn, *bufio.Reader, error) {
	u.mu.Lock()
	conn, br := u.conn, u.br
	u.mu.Unlock()
	if conn == nil {
		return nil, nil, errors.New("unable to upgrade connection: no connection")
	}
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		!strings.EqualFold(resp.Header.Get(httpstream.HeaderConnection), httpstream.HeaderUpgrade) ||
		!strings.EqualFold(resp.Header.Get(httpstream.HeaderUpgrade), u.protocol) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		u.close()
		msg := strings.TrimSpace(string(body))
		if msg == "" {
			msg = resp.Status
		}
		return nil, nil, &UpgradeError{StatusCode: resp.StatusCode, Message: msg, Header: resp.Header}
	}
	return conn, br, nil
}

func (u *upgrader) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil {
		_ = u.conn.Close()
	}
}

// UpgradeError is a server's answer other than the upgrade.
type UpgradeError struct {
	StatusCode int
	Message    string // the body, else the status
	Header     http.Header
}

func (e *UpgradeError) Error() string {
	return fmt.Sprintf("unable to upgrade connection: %s (%d)", e.Message, e.StatusCode)
}

// bufferedConn reads what the response's reader holds first: frames the
// server sent right after its response.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
