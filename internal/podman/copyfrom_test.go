package podman

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// copyFromServer is a podman API that serves the archive of /data in
// container c1 (payload, chunked, as podman streams it; then it blocks
// until the client goes when hold is set) and refuses any other path as
// podman does.
func copyFromServer(t *testing.T, payload []byte, hold bool) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v4.0.0/libpod/containers/c1/archive" || r.URL.Query().Get("path") != "/data" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"cause":"no such file or directory","message":"\"/nope\" could not be found on container c1: no such file or directory","response":404}`)
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		for chunk := range slices.Chunk(payload, 4096) {
			_, _ = w.Write(chunk)
			w.(http.Flusher).Flush()
		}
		if hold {
			<-r.Context().Done()
		}
	}))
	return clientOf(t, srv)
}

// clientOf is a Client of the podman API srv serves, closed with the
// test, as is srv.
func clientOf(t *testing.T, srv *httptest.Server) *Client {
	t.Helper()
	t.Cleanup(srv.Close)
	c, err := New(Config{Name: "h", SocketDir: t.TempDir(), Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// CopyFrom streams podman's archive as it comes, on a connection of its
// own; a missing path is ErrNotFound with podman's message; the end of ctx
// cuts a stream under way.
func TestCopyFrom(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB
	c := copyFromServer(t, payload, false)
	r, err := c.CopyFrom(context.Background(), "c1", "/data")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, payload) {
		t.Errorf("archive: %d bytes, %v; want the %d bytes served", len(got), err, len(payload))
	}
	if err := r.Close(); err != nil {
		t.Errorf("close: %v", err)
	}

	_, err = c.CopyFrom(context.Background(), "c1", "/nope")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"/nope" could not be found on container c1`) {
		t.Errorf("missing path: %v, want ErrNotFound with podman's message", err)
	}

	c = copyFromServer(t, payload, true)
	ctx, cancel := context.WithCancel(context.Background())
	r, err = c.CopyFrom(ctx, "c1", "/data")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, len(payload))); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(r); err == nil {
		t.Error("the stream read on to its end after ctx ended")
	}
}
