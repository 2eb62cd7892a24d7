package servingcert

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"os"
	"testing"

	"github.com/remote-build-nodes/rbn/internal/testcert"
	"github.com/remote-build-nodes/rbn/internal/testwait"
)

func leaf(t *testing.T, c *Cert) []byte {
	t.Helper()
	got, err := c.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return got.Certificate[0]
}

// New files are served once they change; a broken pair keeps the last
// good one.
func TestCertReloadsAndKeepsTheLastGoodPair(t *testing.T) {
	certFile, keyFile, _ := testcert.SelfSigned(t)
	c, err := New("test serving certificate", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(certFile)
	first, _ := pem.Decode(b)
	if !bytes.Equal(leaf(t, c), first.Bytes) {
		t.Fatal("not serving the files' certificate")
	}
	go c.Run(t.Context())
	want := testcert.Replace(t, certFile, keyFile)
	testwait.Eventually(t, "the new certificate served", func() bool { return bytes.Equal(leaf(t, c), want) })

	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf(t, c), want) {
		t.Error("a broken pair replaced the last good one")
	}
}

func TestNewFailsOnABadPair(t *testing.T) {
	certFile, _, _ := testcert.SelfSigned(t)
	if _, err := New("test serving certificate", certFile, certFile); err == nil {
		t.Fatal("a certificate as its own key loaded")
	}
}
