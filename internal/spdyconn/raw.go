package spdyconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
)

// RawPortForward is the Upgrade protocol of rbn's own port-forward on a
// node's kubelet API: the same path and right as kubelet's port-forward
// (/portForward/{namespace}/{pod}, create pods/portforward), the port in
// the query (port=N), and the upgraded connection carries one TCP
// connection to the pod's port as it is, without SPDY's streams and
// frames. rbn-portal relays a Service's connections to remote pods over
// it: one TLS connection per relayed connection, whose bytes cross no
// frame decoder and no stream goroutine on either side.
//
// The server answers 101 only once the pod's port accepted; a refusal
// (no such pod, nothing listens) is an HTTP error, and carries the header
// RawPortForwardHeader, which tells it from the answer of a server that
// does not know the protocol (an older rbn-kubelet during an upgrade).
const RawPortForward = "rbn-portforward/1"

// RawPortForwardHeader marks a server's answers to a RawPortForward
// request (its value: the protocol).
const RawPortForwardHeader = "X-Rbn-Port-Forward"

// ErrRawUnsupported: the server answered a RawPortForward request as one it
// does not know (no RawPortForwardHeader).
var ErrRawUnsupported = errors.New("the server does not serve " + RawPortForward)

// IsRawPortForward says whether r asks for a RawPortForward upgrade.
func IsRawPortForward(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get(httpstream.HeaderUpgrade), RawPortForward) &&
		httpstream.IsUpgradeRequest(r)
}

// RefuseRaw answers a RawPortForward request with an error.
func RefuseRaw(w http.ResponseWriter, status int, msg string) {
	w.Header().Set(RawPortForwardHeader, RawPortForward)
	http.Error(w, msg, status)
}

// AcceptRaw upgrades a RawPortForward request's connection: it hijacks it
// and answers 101. It returns the connection and the reader of what the
// client sent after its request (read before the connection's own bytes).
func AcceptRaw(w http.ResponseWriter) (net.Conn, io.Reader, error) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	_, err = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\n"+
		httpstream.HeaderConnection+": "+httpstream.HeaderUpgrade+"\r\n"+
		httpstream.HeaderUpgrade+": "+RawPortForward+"\r\n"+
		RawPortForwardHeader+": "+RawPortForward+"\r\n\r\n")
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, rw.Reader, nil
}

// DialRaw opens a RawPortForward connection to port through the
// port-forward URL u (a node's kubelet API), with cfg's TLS settings and
// credentials, as Dial does. It returns the connection (which half-closes:
// CloseWrite) and the reader of what the server sent after its answer. A
// refusal is an UpgradeError, wrapping ErrRawUnsupported when the server
// does not know the protocol.
func DialRaw(ctx context.Context, cfg *rest.Config, u *url.URL, port int32) (net.Conn, io.Reader, error) {
	if u.Scheme != "https" {
		return nil, nil, fmt.Errorf("raw port-forward to %s: not over TLS", u.Redacted())
	}
	up, rt, err := newUpgrader(cfg, u, RawPortForward)
	if err != nil {
		return nil, nil, err
	}
	target := *u
	q := target.Query()
	q.Set("port", fmt.Sprint(port))
	target.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		up.close()
		return nil, nil, err
	}
	conn, br, err := up.upgraded(resp)
	var ue *UpgradeError
	if errors.As(err, &ue) && ue.Header.Get(RawPortForwardHeader) == "" {
		return nil, nil, fmt.Errorf("%w: %w", ErrRawUnsupported, err)
	}
	return conn, br, err
}
