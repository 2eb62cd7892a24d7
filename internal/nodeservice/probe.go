package nodeservice

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Why a node's address is probed before it is advertised: a new Service's
// ClusterIP leads nowhere until kube-proxy has programmed it, and a
// rewritten EndpointSlice (a takeover) still leads to the old replica until
// then. kube-proxy does that a second or so later when idle, several when
// busy. A Node advertising the address at once sends the apiserver's first
// exec, logs or port-forward into whatever the address reaches without the
// rules: nothing (a time-out), or, on a machine whose default route leads
// to a transparent proxy, some other TLS server (seen in CI: "x509: cannot
// validate certificate for <ClusterIP> because it doesn't contain any IP
// SANs"). A real kubelet is reachable at its address when it says it is
// Ready; so is a build node once Presents says so.

// ErrNotPresented: the node's address answers, but not with the node's
// certificate as this replica serves it.
var ErrNotPresented = errors.New("the node's address does not present its serving certificate from this replica")

// probeTimeout bounds one probe: the dial and the TLS handshake.
const probeTimeout = 2 * time.Second

// Presents dials addr and says whether the TLS server there presents want
// (DER), the node's serving certificate as this replica presents it: nil
// when it does; an error wrapping ErrNotPresented that names what was
// presented instead; or the dial's or handshake's error. Byte equality, not
// chain verification, is the test: another replica's certificate for the
// same node (a takeover) must not count.
func Presents(ctx context.Context, addr netip.AddrPort, want []byte) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		// Nothing is sent over the connection and nothing it says is
		// trusted: the presented certificate is compared with want below.
		InsecureSkipVerify: true, //nolint:gosec // compared byte for byte
	}}
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	peers := conn.(*tls.Conn).ConnectionState().PeerCertificates
	_ = conn.Close()
	if len(peers) == 0 {
		return fmt.Errorf("%s: %w: it presented none", addr, ErrNotPresented)
	}
	presented := peers[0]
	if !bytes.Equal(presented.Raw, want) {
		return fmt.Errorf("%s: %w: it presented %s", addr, ErrNotPresented, describe(presented))
	}
	return nil
}

// describe names a certificate for a message: its subject and addresses.
func describe(c *x509.Certificate) string {
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	s := fmt.Sprintf("%q", c.Subject.String())
	if len(names) > 0 {
		s += " for " + strings.Join(names, ", ")
	}
	return s
}
