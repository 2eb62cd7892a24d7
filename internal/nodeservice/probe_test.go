package nodeservice

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/remote-build-nodes/rbn/internal/testcert"
)

// serveTLS accepts TLS connections on a loopback port, presenting the
// certificate of certFile, and completes their handshakes.
func serveTLS(t *testing.T, certFile, keyFile string) netip.AddrPort {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func der(t *testing.T, certFile, keyFile string) []byte {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Certificate[0]
}

// The address counts as served only when it presents the very
// certificate: another one, however valid for the name (another
// replica's for the same node), is named in the error; a closed port is
// the dial's error.
func TestPresents(t *testing.T) {
	ctx := context.Background()
	ourCert, ourKey, _ := testcert.SelfSigned(t)
	otherCert, otherKey, _ := testcert.SelfSigned(t)
	addr := serveTLS(t, ourCert, ourKey)

	if err := Presents(ctx, addr, der(t, ourCert, ourKey)); err != nil {
		t.Errorf("our certificate: %v", err)
	}
	err := Presents(ctx, addr, der(t, otherCert, otherKey))
	if !errors.Is(err, ErrNotPresented) || !strings.Contains(err.Error(), `"CN=rbn-test" for 127.0.0.1`) {
		t.Errorf("another certificate: %v, want ErrNotPresented naming CN=rbn-test for 127.0.0.1", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).AddrPort()
	_ = ln.Close()
	err = Presents(ctx, closed, der(t, ourCert, ourKey))
	if err == nil || errors.Is(err, ErrNotPresented) || !strings.Contains(err.Error(), closed.String()) {
		t.Errorf("closed port: %v, want the dial's error for %s", err, closed)
	}
}
