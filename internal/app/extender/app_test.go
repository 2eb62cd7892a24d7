package extender

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
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
