package spdyconn

import (
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/rest"

	"github.com/remote-build-nodes/rbn/internal/testcert"
)

// nameServer upgrades to SPDY and answers each stream with name, after
// checking the bearer token.
func nameServer(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			http.Error(w, "forbidden: no token", http.StatusForbidden)
			return
		}
		spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
			go func() {
				_, _ = io.WriteString(s, name)
				_ = s.Close()
			}()
			return nil
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func configFor(srv *httptest.Server, token string) *rest.Config {
	return &rest.Config{BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: pemOf(srv)}}
}

// Concurrent upgrades each get their own connection: client-go's SPDY round
// tripper, shared, can hand one upgrade the other's.
func TestDialsAtOnceKeepTheirConnections(t *testing.T) {
	servers := map[string]*httptest.Server{"a": nameServer(t, "a"), "b": nameServer(t, "b")}
	var wg sync.WaitGroup
	for i := range 40 {
		name := []string{"a", "b"}[i%2]
		srv := servers[name]
		wg.Go(func() {
			u, _ := url.Parse(srv.URL + "/upgrade")
			conn, err := Dial(configFor(srv, "t"), http.MethodPost, u, "test.protocol")
			if err != nil {
				t.Errorf("dial %s: %v", name, err)
				return
			}
			defer conn.Close()
			s, err := conn.CreateStream(http.Header{})
			if err != nil {
				t.Errorf("stream to %s: %v", name, err)
				return
			}
			got, err := io.ReadAll(s)
			if err != nil || string(got) != name {
				t.Errorf("server %s answered %q, %v", name, got, err)
			}
		})
	}
	wg.Wait()
}

func TestDialReportsARefusal(t *testing.T) {
	srv := nameServer(t, "a")
	u, _ := url.Parse(srv.URL + "/upgrade")
	_, err := Dial(configFor(srv, "wrong"), http.MethodPost, u, "test.protocol")
	var ue *UpgradeError
	if !errors.As(err, &ue) || ue.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "forbidden: no token") {
		t.Errorf("Dial with a refused token: %v, want an UpgradeError with the server's answer", err)
	}
	otherCA, _, _ := testcert.SelfSigned(t)
	_, err = Dial(&rest.Config{BearerToken: "t", TLSClientConfig: rest.TLSClientConfig{CAFile: otherCA}}, http.MethodPost, u, "test.protocol")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Dial trusting another authority only: %v, want a certificate error", err)
	}
}

func pemOf(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// A server that accepts the connection but never answers is given up on.
func TestDialGivesUpOnASilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			t.Cleanup(func() { _ = c.Close() }) // held open, never answered
		}
	}()
	defer func(d time.Duration) { dialTimeout = d }(dialTimeout)
	dialTimeout = 200 * time.Millisecond
	u, _ := url.Parse("http://" + ln.Addr().String() + "/upgrade")
	_, err = Dial(&rest.Config{}, http.MethodPost, u, "test.protocol")
	// client-go's dialer reports the round trip's error as text (%v).
	if err == nil || !strings.Contains(err.Error(), "i/o timeout") {
		t.Errorf("Dial of a silent server: %v, want a timeout", err)
	}
}
