package podman

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// volumeServer is a podman API holding the volume "have"; ignores tells
// whether its volume creation takes IgnoreIfExists (podman 5) or refuses
// any existing name (Debian 12's podman 4.3.1, whose answer this is). It
// records the calls.
func volumeServer(t *testing.T, ignores bool) (*Client, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var calls []string
	existing := `{"Name":"have","Labels":{"old":"1"},"Mountpoint":"/vols/have/_data"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path[strings.Index(r.URL.Path[1:], "/")+1:] // without the version
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			w.Header().Set("Libpod-API-Version", "5.4.0")
			_, _ = io.WriteString(w, "OK")
			return
		}
		mu.Lock()
		calls = append(calls, r.Method+" "+path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && path == "/libpod/volumes/create":
			var in struct {
				Name          string
				Label         map[string]string
				IgnoreIfExist bool `json:"IgnoreIfExists"`
			}
			_ = json.NewDecoder(r.Body).Decode(&in)
			switch {
			case in.Name == "have" && ignores && in.IgnoreIfExist:
				w.WriteHeader(http.StatusCreated)
				_, _ = io.WriteString(w, existing)
			case in.Name == "have":
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = io.WriteString(w, `{"cause":"volume already exists","message":"volume with name have already exists: volume already exists","response":500}`)
			default:
				w.WriteHeader(http.StatusCreated)
				b, _ := json.Marshal(map[string]any{"Name": in.Name, "Labels": in.Label, "Mountpoint": "/vols/" + in.Name + "/_data"})
				_, _ = w.Write(b)
			}
		case r.Method == http.MethodGet && path == "/libpod/volumes/have/json":
			_, _ = io.WriteString(w, existing)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"cause":"no such volume","message":"no such volume","response":404}`)
		}
	}))
	c := clientOf(t, srv)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := calls
		calls = nil
		return out
	}
}

// EnsureVolume makes one call, for a new volume and for one that exists
// (which it returns as it is); a podman that refuses an existing name is
// asked for the volume then.
func TestEnsureVolume(t *testing.T) {
	for _, ignores := range []bool{true, false} {
		c, calls := volumeServer(t, ignores)
		v, err := c.EnsureVolume(context.Background(), "new", map[string]string{"l": "v"}, nil)
		if err != nil || v.Mountpoint != "/vols/new/_data" || v.Labels["l"] != "v" {
			t.Errorf("ignoreIfExist %t: new volume: %+v, %v", ignores, v, err)
		}
		if got := calls(); len(got) != 1 {
			t.Errorf("ignoreIfExist %t: new volume: calls %q, want one create", ignores, got)
		}
		v, err = c.EnsureVolume(context.Background(), "have", map[string]string{"l": "v"}, nil)
		if err != nil || v.Mountpoint != "/vols/have/_data" || v.Labels["old"] != "1" {
			t.Errorf("ignoreIfExist %t: existing volume: %+v, %v; want it as it is", ignores, v, err)
		}
		want := 1
		if !ignores {
			want = 2
		}
		if got := calls(); len(got) != want {
			t.Errorf("ignoreIfExist %t: existing volume: calls %q, want %d", ignores, got, want)
		}
	}
}
