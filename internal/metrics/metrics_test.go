package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Serve answers GET /metrics with the registry's series (the Go runtime's
// and rbn's) until its context ends; an empty address serves nothing.
func TestServe(t *testing.T) {
	reg := NewRegistry()
	reg.MustRegister(NewSSHCollector(func() []SSHConn { return []SSHConn{{Host: "h:22", User: "root"}} }))
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, reg, false) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"go_goroutines ", "process_cpu_seconds_total ", `rbn_ssh_connection_up{host="h:22",user="root"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no %q:\n%s", want, body)
		}
	}
	if code, _ := get(t, "http://"+ln.Addr().String()+"/debug/pprof/goroutine?debug=1"); code != http.StatusNotFound {
		t.Errorf("profiles served without enableProfiling: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}

	for _, off := range []string{"", Off} {
		if ln, err := Listen(off); ln != nil || err != nil {
			t.Errorf("Listen(%q) = %v, %v; want nothing served", off, ln, err)
		}
	}
}

// With profiling, Go's profiles are served beside the metrics.
func TestServeProfiling(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, NewRegistry(), true) }()
	code, body := get(t, "http://"+ln.Addr().String()+"/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "goroutine profile: total") {
		t.Errorf("goroutine profile: %d %.200s", code, body)
	}
	if code, _ := get(t, "http://"+ln.Addr().String()+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics beside the profiles: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
