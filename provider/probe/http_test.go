package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeServer answers the paths the HTTP cases probe.
func probeServer(t *testing.T, tlsServer bool) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = fmt.Fprint(w, "fine") })
	mux.HandleFunc("/query", func(w http.ResponseWriter, r *http.Request) { _, _ = fmt.Fprint(w, r.URL.RawQuery) })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "secret details", http.StatusInternalServerError)
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "host=%s ua=%s accept=%q accepts=%d x=%s",
			r.Host, r.UserAgent(), r.Header.Get("Accept"), len(r.Header.Values("Accept")), strings.Join(r.Header.Values("X-Probe"), ","))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, strings.Repeat("b", 64<<10))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/redirect-local", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok", http.StatusFound)
	})
	mux.HandleFunc("/redirect-away", func(w http.ResponseWriter, r *http.Request) {
		// Same server, another host name: kubelet does not follow it.
		_, port, _ := net.SplitHostPort(r.Host)
		http.Redirect(w, r, "http://"+net.JoinHostPort("localhost", port)+"/ok", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	var s *httptest.Server
	if tlsServer {
		s = httptest.NewTLSServer(mux)
	} else {
		s = httptest.NewServer(mux)
	}
	t.Cleanup(s.Close)
	return s
}

func TestRunHTTP(t *testing.T) {
	plain := probeServer(t, false)
	secure := probeServer(t, true)
	host, port := splitHostPort(t, plain.Listener.Addr().String())
	_, tlsPort := splitHostPort(t, secure.Listener.Addr().String())
	addr := fmt.Sprintf("%s:%d", host, port)
	c := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	get := func(path string) corev1.HTTPGetAction {
		return corev1.HTTPGetAction{Path: path, Port: intstr.FromInt(port)}
	}
	withHeaders := func(a corev1.HTTPGetAction, h ...corev1.HTTPHeader) corev1.HTTPGetAction {
		a.HTTPHeaders = h
		return a
	}
	tests := []struct {
		name    string
		action  corev1.HTTPGetAction
		timeout time.Duration
		want    outcome
		wantOut string // exact, or a substring when wantSub
		wantSub bool
		wantErr string
	}{
		{name: "2xx is a success with the body", action: get("/ok"), want: outcomeSuccess, wantOut: "fine"},
		{name: "named port", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("http")},
			want: outcomeSuccess, wantOut: "fine"},
		{name: "query string kept", action: get("/query?a=1&b=2"), want: outcomeSuccess, wantOut: "a=1&b=2"},
		{name: "5xx is a failure without the body", action: get("/fail"),
			want: outcomeFailure, wantOut: "HTTP probe failed with statuscode: 500"},
		{name: "404 is a failure", action: get("/missing"),
			want: outcomeFailure, wantOut: "HTTP probe failed with statuscode: 404"},
		{name: "kubelet's default headers", action: get("/headers"),
			want: outcomeSuccess, wantOut: fmt.Sprintf(`host=%s ua=kube-probe/1.37 accept="*/*" accepts=1 x=`, addr)},
		{name: "headers given, Host one becoming the request's host",
			action: withHeaders(get("/headers"),
				corev1.HTTPHeader{Name: "Host", Value: "example.test"},
				corev1.HTTPHeader{Name: "User-Agent", Value: "mine"},
				corev1.HTTPHeader{Name: "Accept", Value: "text/plain"},
				corev1.HTTPHeader{Name: "X-Probe", Value: "1"},
				corev1.HTTPHeader{Name: "x-probe", Value: "2"}),
			want: outcomeSuccess, wantOut: `host=example.test ua=mine accept="text/plain" accepts=1 x=1,2`},
		{name: "an empty Accept header sends none",
			action: withHeaders(get("/headers"), corev1.HTTPHeader{Name: "Accept", Value: ""}),
			want:   outcomeSuccess, wantOut: fmt.Sprintf(`host=%s ua=kube-probe/1.37 accept="" accepts=0 x=`, addr)},
		{name: "body bounded to 10 KiB", action: get("/big"), want: outcomeSuccess, wantOut: strings.Repeat("b", 10<<10)},
		{name: "redirect to the same host is followed", action: get("/redirect-local"), want: outcomeSuccess, wantOut: "fine"},
		{name: "redirect to another host is a warning", action: get("/redirect-away"),
			want: outcomeWarning, wantOut: "Probe terminated redirects, Response body: <a href=", wantSub: true},
		{name: "endless redirects fail", action: get("/loop"),
			want: outcomeFailure, wantOut: "stopped after 10 redirects", wantSub: true},
		{name: "timeout is a failure", action: get("/slow"), timeout: 100 * time.Millisecond,
			want: outcomeFailure, wantOut: "Client.Timeout exceeded", wantSub: true},
		{name: "HTTPS without verification",
			action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt(tlsPort), Scheme: corev1.URISchemeHTTPS},
			want:   outcomeSuccess, wantOut: "fine"},
		{name: "connection refused is a failure",
			action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt(closedPort(t))},
			want:   outcomeFailure, wantOut: "connection refused", wantSub: true},
		{name: "unknown port name errors", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("admin")},
			want: outcomeUnknown, wantErr: `strconv.Atoi: parsing "admin": invalid syntax`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			target := &netTarget{}
			h := &corev1.ProbeHandler{HTTPGet: &tt.action}
			got, out, err := attempt(context.Background(), target, "cid", host, c, h, timeout)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("outcome = %v (%q), want %v", got, out, tt.want)
			}
			if tt.wantSub && !strings.Contains(out, tt.wantOut) || !tt.wantSub && out != tt.wantOut {
				t.Errorf("output = %q, want %q", out, tt.wantOut)
			}
			if tt.wantErr == "" {
				// Every connection goes through the target, to the pod IP.
				for _, d := range target.dialed() {
					if h, _ := splitHostPort(t, d); h != host {
						t.Errorf("dialed %s, want host %s", d, host)
					}
				}
				if len(target.dialed()) == 0 {
					t.Error("no connection went through the target")
				}
			}
		})
	}
}

func TestRunHTTPWarningIsASuccess(t *testing.T) {
	s := probeServer(t, false)
	host, port := splitHostPort(t, s.Listener.Addr().String())
	h := &corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/redirect-away", Port: intstr.FromInt(port)}}
	got, out, err := Run(context.Background(), &netTarget{}, "cid", host, &corev1.Container{}, h, 5*time.Second)
	if err != nil || got != Success || !strings.HasPrefix(out, "Probe terminated redirects") {
		t.Errorf("Run = %v, %q, %v; want Success, Probe terminated redirects...", got, out, err)
	}
}
