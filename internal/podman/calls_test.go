package podman

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/remote-build-nodes/rbn/internal/callstats"
)

// step is how far the fake service moves the clock while it answers a
// request: each call's duration is known.
const step = 250 * time.Millisecond

var apiPrefix = regexp.MustCompile(`^/v[^/]+/libpod`)

// fakePodman serves routes (ServeMux patterns on the libpod paths without
// their /vX/libpod prefix; /_ping is served unless routes serve it) on a unix socket, the far end
// of the returned Client's Dial. Each request moves clk by step before it
// is answered.
func fakePodman(t *testing.T, clk *clocktesting.FakeClock, routes map[string]http.HandlerFunc) *Client {
	t.Helper()
	return fakePodmanWith(t, clk, routes, nil)
}

// fakePodmanWith is fakePodman with the client's Config adjusted by tune.
func fakePodmanWith(t *testing.T, clk *clocktesting.FakeClock, routes map[string]http.HandlerFunc, tune func(*Config)) *Client {
	t.Helper()
	mux := http.NewServeMux()
	if routes["GET /_ping"] == nil {
		mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Libpod-API-Version", "5.0.0")
			w.WriteHeader(http.StatusOK)
		})
	}
	for pattern, h := range routes {
		mux.HandleFunc(pattern, h)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clk.Step(step)
		r.URL.Path = apiPrefix.ReplaceAllString(r.URL.Path, "")
		mux.ServeHTTP(w, r)
	}))
	sock := filepath.Join(t.TempDir(), "podman.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	cfg := Config{Name: "h", SocketDir: t.TempDir(), Clock: clk, Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	if tune != nil {
		tune(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Every call counts under its operation, once it ended: a success, a
// not-found answer and a failure each as such, a call made before the
// connection as a failure that took no time.
func TestCallStats(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	c := fakePodman(t, clk, map[string]http.HandlerFunc{
		"POST /containers/ok/start": func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) },
		"POST /containers/missing/start": func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "no such container", http.StatusNotFound)
		},
		"POST /containers/broken/start": func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "crun: exploded", http.StatusInternalServerError)
		},
	})
	ctx := t.Context()
	if err := c.StartContainer(ctx, "ok"); err == nil {
		t.Fatal("a call before Connect succeeded")
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ok", "missing", "broken", "ok"} {
		_ = c.StartContainer(ctx, name)
	}
	// The call before Connect failed at once; the others took a step.
	want := map[string]callstats.Op{
		opConnect:        {Calls: 1, Duration: step, Buckets: took(map[time.Duration]uint64{step: 1})},
		opContainerStart: {Calls: 5, Errors: 2, NotFound: 1, Duration: 4 * step, Buckets: took(map[time.Duration]uint64{0: 1, step: 4})},
	}
	got := c.CallStats()
	if !maps.Equal(got, want) {
		t.Errorf("CallStats() = %v\nwant %v", got, want)
	}
	got[opConnect] = callstats.Op{}
	if again := c.CallStats(); !maps.Equal(again, want) {
		t.Errorf("CallStats() changed with the copy it returned: %v", again)
	}
}

// took is the latency buckets of calls that took each duration, as many
// as the map says.
func took(calls map[time.Duration]uint64) (b [len(callstats.Bounds)]uint64) {
	for d, n := range calls {
		for i, bound := range callstats.Bounds {
			if d <= bound {
				b[i] += n
				break
			}
		}
	}
	return b
}

// A stream counts when it is open: its duration is the time podman took
// to answer, not the stream's life. A session refused before it opened
// counts with podman's answer.
func TestCallStatsStreams(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	c := fakePodman(t, clk, map[string]http.HandlerFunc{
		"GET /containers/follow/logs": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(frame(1, "line\n"))
			w.(http.Flusher).Flush()
			<-r.Context().Done() // a followed log goes on
		},
		"POST /containers/missing/attach": func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "no such container", http.StatusNotFound)
		},
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	logs, err := c.Logs(ctx, "follow", LogOptions{Follow: true, Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	if got, want := c.CallStats()[opLogs], (callstats.Op{Calls: 1, Duration: step, Buckets: took(map[time.Duration]uint64{step: 1})}); got != want {
		t.Errorf("logs once open: %+v, want %+v", got, want)
	}
	buf := make([]byte, len("line\n"))
	if _, err := io.ReadFull(logs, buf); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Hour) // the stream lives on
	if got, want := c.CallStats()[opLogs], (callstats.Op{Calls: 1, Duration: step, Buckets: took(map[time.Duration]uint64{step: 1})}); got != want {
		t.Errorf("logs while streaming: %+v, want %+v", got, want)
	}

	if err := c.Attach(ctx, "missing", AttachOptions{Stdout: io.Discard}); err == nil {
		t.Fatal("attach to a missing container succeeded")
	}
	if got, want := c.CallStats()[opAttach], (callstats.Op{Calls: 1, NotFound: 1, Duration: step, Buckets: took(map[time.Duration]uint64{step: 1})}); got != want {
		t.Errorf("attach refused: %+v, want %+v", got, want)
	}
}
