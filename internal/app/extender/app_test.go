package extender

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/testcert"
	"github.com/remote-build-nodes/rbn/internal/testwait"
	"github.com/remote-build-nodes/rbn/scheduler"
)

func TestRequireClientCert(t *testing.T) {
	h := requireClientCert(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
	for _, tc := range []struct {
		method, path string
		tls          *tls.ConnectionState
		want         int
	}{
		{http.MethodGet, "/healthz", nil, http.StatusTeapot},
		{http.MethodGet, "/readyz", &tls.ConnectionState{}, http.StatusTeapot},
		{http.MethodPost, "/filter", &tls.ConnectionState{}, http.StatusUnauthorized},
		{http.MethodPost, "/prioritize", nil, http.StatusUnauthorized},
		{http.MethodGet, "/debug/nodes/a", &tls.ConnectionState{}, http.StatusUnauthorized},
		{http.MethodPost, "/filter", verified, http.StatusTeapot},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		r.TLS = tc.tls
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("%s %s (tls %v): %d, want %d", tc.method, tc.path, tc.tls != nil, rec.Code, tc.want)
		}
	}
}

func TestPolicy(t *testing.T) {
	cfg := &config.ExtenderConfiguration{}
	config.SetDefaults(cfg)
	if p := policy(cfg); p != (scheduler.Policy{MaxFactsAge: 2 * time.Minute, DefaultImageSizeBytes: 0, LoadTolerance: 2, RecentFailuresLimit: 0}) {
		t.Errorf("defaults: %+v", p)
	}
	cfg = &config.ExtenderConfiguration{}
	if err := config.Decode([]byte("loadTolerance: 0\ndefaultImageSize: 2Gi\nrecentFailuresLimit: 3\nfactsMaxAge: 30s\n"), cfg); err != nil {
		t.Fatal(err)
	}
	if p := policy(cfg); p != (scheduler.Policy{MaxFactsAge: 30 * time.Second, DefaultImageSizeBytes: 2 << 30, LoadTolerance: 0, RecentFailuresLimit: 3}) {
		t.Errorf("configured: %+v", p)
	}
}

func TestRunRejectsBadInvocations(t *testing.T) {
	var out strings.Builder
	if err := Run(t.Context(), []string{"--version"}, &out); err != nil || !strings.Contains(out.String(), "rbn-extender") {
		t.Errorf("--version: %v %q", err, out.String())
	}
	if err := Run(t.Context(), []string{"--config=/does/not/exist"}, &out); err == nil {
		t.Error("missing config accepted")
	}
	if err := Run(t.Context(), []string{"stray"}, &out); err == nil {
		t.Error("stray argument accepted")
	}
}

// The serving certificate is read again when its files change (a renewed
// certificate, an updated Secret volume): new connections get the new one
// without a restart.
func TestServingCertificateReloads(t *testing.T) {
	certFile, keyFile, _ := testcert.SelfSigned(t)
	cfg := &config.ExtenderConfiguration{ListenAddress: "127.0.0.1", TLSCertFile: certFile, TLSKeyFile: keyFile}
	srv, ln, cert, err := listen(cfg, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	go cert.Run(t.Context())
	served := func() []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	first := served()
	want := testcert.Replace(t, certFile, keyFile)
	if bytes.Equal(first, want) {
		t.Fatal("the new certificate is the old one")
	}
	testwait.Eventually(t, "the new certificate served", func() bool { return bytes.Equal(served(), want) })
}
