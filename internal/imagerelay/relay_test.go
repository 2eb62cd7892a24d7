package imagerelay

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeRegistry is an upstream registry with basic auth holding images made
// of the given blobs (unit tests only).
type fakeRegistry struct {
	user, password string
	blobs          map[digest.Digest][]byte
	manifests      map[string][]byte // "repo:tag" and "repo@digest"
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{user: "u", password: "p", blobs: map[digest.Digest][]byte{}, manifests: map[string][]byte{}}
}

func (f *fakeRegistry) blob(b []byte) map[string]any {
	d := digest.FromBytes(b)
	f.blobs[d] = b
	return map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(b)}
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.Bytes()
}

// image adds repo:tag, a linux/amd64 image with the given layer contents,
// and returns its manifest digest.
func (f *fakeRegistry) image(repo, tag string, layers ...string) digest.Digest {
	return f.imageFor(repo, tag, "amd64", layers...)
}

// imageFor is image for architecture arch.
func (f *fakeRegistry) imageFor(repo, tag, arch string, layers ...string) digest.Digest {
	var ls []map[string]any
	var diffs []digest.Digest
	for _, l := range layers {
		ls = append(ls, f.blob(gzipped(l)))
		diffs = append(diffs, digest.FromString(l))
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": arch, "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffs}})
	c := f.blob(cfg)
	c["mediaType"] = "application/vnd.oci.image.config.v1+json"
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": c, "layers": ls})
	d := digest.FromBytes(m)
	f.manifests[repo+":"+tag], f.manifests[repo+"@"+d.String()] = m, m
	return d
}

// index adds repo:tag, an OCI image index of the given linux manifests
// (architecture -> manifest digest, added before).
func (f *fakeRegistry) index(repo, tag string, instances map[string]digest.Digest) {
	var ms []map[string]any
	for arch, d := range instances {
		p := map[string]any{"architecture": arch, "os": "linux"}
		if arch == "arm64" {
			p["variant"] = "v8"
		}
		ms = append(ms, map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d,
			"size": len(f.manifests[repo+"@"+d.String()]), "platform": p})
	}
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ms})
	f.manifests[repo+":"+tag], f.manifests[repo+"@"+digest.FromBytes(m).String()] = m, m
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.password {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	if path == "" {
		return
	}
	if repo, ref, ok := strings.Cut(path, "/manifests/"); ok {
		sep := ":"
		if strings.HasPrefix(ref, "sha256:") {
			sep = "@"
		}
		if m, ok := f.manifests[repo+sep+ref]; ok {
			var typed struct{ MediaType string }
			_ = json.Unmarshal(m, &typed)
			w.Header().Set("Content-Type", typed.MediaType)
			_, _ = w.Write(m)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
		return
	}
	if _, ref, ok := strings.Cut(path, "/blobs/"); ok {
		if b, ok := f.blobs[digest.Digest(ref)]; ok {
			_, _ = w.Write(b)
			return
		}
	}
	w.WriteHeader(http.StatusNotFound)
}

// loopback stands in for the host's SSH listener.
type loopback struct{}

func (loopback) ListenLoopback(context.Context) (net.Listener, error) {
	return net.Listen("tcp", "127.0.0.1:0")
}

// sshLoopback stands in for the host's SSH listener as the relay gets it:
// its connections are SSH channels, which take no deadlines (x/crypto/ssh's
// forwarded connections refuse them).
type sshLoopback struct{}

func (sshLoopback) ListenLoopback(context.Context) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	return noDeadlineListener{ln}, err
}

type noDeadlineListener struct{ net.Listener }

func (l noDeadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return noDeadlineConn{c}, err
}

type noDeadlineConn struct{ net.Conn }

var errNoDeadline = errors.New("ssh: tcpChan: deadline not supported")

func (noDeadlineConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (noDeadlineConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (noDeadlineConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

// resetNotifyingClock is a fake clock whose timers tell resets when rearmed.
type resetNotifyingClock struct {
	*clocktesting.FakeClock
	resets chan struct{}
}

func (c resetNotifyingClock) NewTimer(d time.Duration) clock.Timer {
	return resetNotifyingTimer{c.FakeClock.NewTimer(d), c.resets}
}

type resetNotifyingTimer struct {
	clock.Timer
	resets chan<- struct{}
}

func (t resetNotifyingTimer) Reset(d time.Duration) bool {
	ok := t.Timer.Reset(d)
	t.resets <- struct{}{}
	return ok
}

// fakePodman pulls with containers/image into an OCI layout, which, like
// podman's store, reuses the blobs it already has; it records names. From
// an image index it picks the instance of its arch, as podman picks its
// host's platform (default amd64).
type fakePodman struct {
	t     *testing.T
	dir   string
	arch  string
	mu    sync.Mutex
	names map[string]bool
	// creds are the credentials of every pull, in order.
	creds []Credentials
	// intruder, if set, runs once the relay listens, before the pull: a
	// local process trying its luck.
	intruder func(hostPort string)
}

func (p *fakePodman) PullImageLoopbackPlain(ctx context.Context, ref, username, password string) (string, error) {
	p.mu.Lock()
	p.creds = append(p.creds, Credentials{Username: username, Password: password})
	p.mu.Unlock()
	if p.intruder != nil {
		hostPort, _, _ := strings.Cut(ref, "/")
		p.intruder(hostPort)
	}
	src, err := docker.ParseReference("//" + ref)
	if err != nil {
		return "", err
	}
	dst, err := layout.ParseReference(p.dir + ":" + ref[strings.Index(ref, "/")+1:])
	if err != nil {
		return "", err
	}
	pc, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return "", err
	}
	defer pc.Destroy()
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, OSChoice: "linux", ArchitectureChoice: cmp.Or(p.arch, "amd64"),
		DockerAuthConfig: &types.DockerAuthConfig{Username: username, Password: password}}
	if sys.ArchitectureChoice == "arm64" {
		sys.VariantChoice = "v8"
	}
	m, err := copy.Image(ctx, pc, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: sys})
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.names[ref] = true
	p.mu.Unlock()
	return fmt.Sprintf("%x", sha256.Sum256(m)), nil
}

func (p *fakePodman) TagImage(_ context.Context, _, repo, tag string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names[repo+":"+tag] = true
	return nil
}

func (p *fakePodman) UntagImage(_ context.Context, _, repo, tag string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.names[repo+":"+tag] {
		p.t.Errorf("untag of unknown name %s:%s", repo, tag)
	}
	delete(p.names, repo+":"+tag)
	return nil
}

func TestPull(t *testing.T) {
	reg := newFakeRegistry()
	reg.image("team/app", "1.0", "layer one")
	reg.image("team/app", "2.0", "layer one", "layer two")
	up := httptest.NewServer(reg)
	defer up.Close()
	registry := strings.TrimPrefix(up.URL, "http://")
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), names: map[string]bool{}}
	pull := func(image string, creds *Credentials) (Result, error) {
		return Pull(context.Background(), Request{Image: image, Credentials: creds, Host: loopback{}, Podman: host, SystemContext: sys})
	}
	good := &Credentials{Username: "u", Password: "p"}

	res, err := pull(registry+"/team/app:1.0", good)
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 2 || res.ImageID == "" {
		t.Errorf("first pull: %+v, want 2 blobs (config, layer)", res)
	}
	// The second image shares its first layer: only its config and the new layer travel.
	res, err = pull(registry+"/team/app:2.0", good)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(gzipped("layer two"))); res.Blobs != 2 || res.Bytes <= want {
		t.Errorf("second pull: %+v, want 2 blobs (config, new layer)", res)
	}
	for _, name := range []string{registry + "/team/app:1.0", registry + "/team/app:2.0"} {
		if !host.names[name] {
			t.Errorf("host image not named %s: %v", name, host.names)
		}
	}
	if len(host.names) != 2 {
		t.Errorf("loopback names left on the host: %v", host.names)
	}

	for _, tt := range []struct {
		name, image string
		creds       *Credentials
		want        string
	}{
		{"wrong credentials", registry + "/team/app:1.0", &Credentials{Username: "u", Password: "wrong"}, "authentication required"},
		{"no credentials", registry + "/team/app:1.0", nil, "authentication required"},
		{"missing tag", registry + "/team/app:3.0", good, "manifest unknown"},
		{"bad reference", "UPPER/case", good, "image"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pull(tt.image, tt.creds)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// The relay serves a multi-arch index as the registry has it and each
// instance by digest: the host picks its own platform's manifest, and an
// index without one fails on the host with a message naming its platform.
func TestPullMultiArchIndexHostPicksItsPlatform(t *testing.T) {
	reg := newFakeRegistry()
	amd := reg.imageFor("team/multi", "amd64-only-instance", "amd64", "amd64 layer")
	arm := reg.imageFor("team/multi", "arm64-only-instance", "arm64", "arm64 layer, a bit longer")
	reg.index("team/multi", "1", map[string]digest.Digest{"amd64": amd, "arm64": arm})
	reg.index("team/multi", "amd64only", map[string]digest.Digest{"amd64": amd})
	up := httptest.NewServer(reg)
	defer up.Close()
	registry := strings.TrimPrefix(up.URL, "http://")
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	good := &Credentials{Username: "u", Password: "p"}

	for _, tt := range []struct {
		arch string
		want digest.Digest
	}{{"arm64", arm}, {"amd64", amd}} {
		t.Run(tt.arch, func(t *testing.T) {
			host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), arch: tt.arch, names: map[string]bool{}}
			res, err := Pull(context.Background(), Request{Image: registry + "/team/multi:1", Credentials: good, Host: loopback{}, Podman: host, SystemContext: sys})
			if err != nil {
				t.Fatal(err)
			}
			// fakePodman's image ID is the digest of the manifest it stored.
			if res.ImageID != tt.want.Encoded() {
				t.Errorf("%s host stored manifest %s, want its platform's %s (amd64 %s, arm64 %s)", tt.arch, res.ImageID, tt.want.Encoded(), amd.Encoded(), arm.Encoded())
			}
			if res.Blobs != 2 {
				t.Errorf("%s host: %d blobs relayed, want 2 (its instance's config and layer)", tt.arch, res.Blobs)
			}
		})
	}

	host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), arch: "arm64", names: map[string]bool{}}
	_, err := Pull(context.Background(), Request{Image: registry + "/team/multi:amd64only", Credentials: good, Host: loopback{}, Podman: host, SystemContext: sys})
	if err == nil || !strings.Contains(err.Error(), "arm64") || !strings.Contains(err.Error(), "team/multi:amd64only") {
		t.Fatalf("arm64 host pulling an index without arm64: %v, want an error naming the image and arm64", err)
	}
	// The host's words name the registry's image, not the relay's loopback
	// address on the host.
	if msg := strings.ReplaceAll(err.Error(), registry, "REGISTRY"); strings.Contains(msg, "127.0.0.1") {
		t.Errorf("the error names the relay's loopback address: %v", err)
	}
	t.Logf("arm64 host, amd64-only index: %v", err)
}

func TestParseImage(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tt := range []struct {
		in, upstream, local, repo, tag string
	}{
		{"busybox", "docker.io/library/busybox:latest", ":latest", "docker.io/library/busybox", "latest"},
		{"reg:5000/a/b:1.0", "reg:5000/a/b:1.0", ":1.0", "reg:5000/a/b", "1.0"},
		{"reg.io/a@" + d, "reg.io/a@" + d, "@" + d, "reg.io/a", "sha256-" + strings.Repeat("ab", 32)},
		{"reg.io/a:1.0@" + d, "reg.io/a@" + d, "@" + d, "reg.io/a", "1.0"},
	} {
		img, err := parseImage(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if img.upstream.String() != tt.upstream || img.localRef != tt.local || img.repo != tt.repo || img.tag != tt.tag {
			t.Errorf("%s: got upstream %s local %s repo %s tag %s", tt.in, img.upstream, img.localRef, img.repo, img.tag)
		}
	}
}

// cutPodman stands in for a host whose SSH connection drops in the middle of
// a blob: once the relay streams from upstream, the connection goes and the
// host's pull fails.
type cutPodman struct {
	fakePodman
	streaming <-chan struct{}
}

func (p *cutPodman) PullImageLoopbackPlain(ctx context.Context, ref, username, password string) (string, error) {
	host, rest, _ := strings.Cut(ref, "/")
	repo, _, _ := strings.Cut(rest, ":")
	c, err := net.Dial("tcp", host)
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+"/blobs/"+digest.FromString("x").String(), nil)
	req.SetBasicAuth(username, password)
	_ = req.Write(c)
	<-p.streaming
	_ = c.Close()
	return "", fmt.Errorf("connection lost")
}

func TestPullReturnsWhenTheHostGoesAway(t *testing.T) {
	reg := newFakeRegistry()
	reg.image("team/app", "1.0", "layer")
	streaming, hang := make(chan struct{}), make(chan struct{})
	defer close(hang)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			w.Header().Set("Content-Length", "1000000")
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			close(streaming)
			select { // an upstream that stalls mid-blob until the client goes
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer up.Close()
	host := &cutPodman{fakePodman: fakePodman{t: t, names: map[string]bool{}}, streaming: streaming}
	done := make(chan error, 1)
	go func() {
		_, err := Pull(context.Background(), Request{
			Image: strings.TrimPrefix(up.URL, "http://") + "/team/app:1.0", Credentials: &Credentials{Username: "u", Password: "p"},
			Host: loopback{}, Podman: host, SystemContext: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue},
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "connection lost") {
			t.Fatalf("error %v, want the host's", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pull still waits on a stalled upstream blob after the host's pull failed")
	}
}

// A registry that stops sending in the middle of a blob fails the pull
// once ProgressDeadline passes with no byte, with a StalledError naming
// the registry and the blob, rather than holding it for the pull's whole
// deadline.
func TestPullCancelledWhenTheRegistryStallsMidBlob(t *testing.T) {
	reg := newFakeRegistry()
	reg.image("team/app", "1.0", "layer")
	layer := digest.FromBytes(gzipped("layer")).String()
	requested, send, hang := make(chan struct{}), make(chan struct{}), make(chan struct{})
	defer close(hang)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/blobs/"+layer) {
			w.Header().Set("Content-Length", "1000000")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			close(requested)
			select {
			case <-send:
			case <-hang:
				return
			}
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			select { // stalls until the client goes
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer up.Close()
	registry := strings.TrimPrefix(up.URL, "http://")
	const deadline = time.Minute
	fc := resetNotifyingClock{clocktesting.NewFakeClock(time.Now()), make(chan struct{}, 64)}
	host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), names: map[string]bool{}}
	done := make(chan error, 1)
	go func() {
		_, err := Pull(context.Background(), Request{
			Image: registry + "/team/app:1.0", Credentials: &Credentials{Username: "u", Password: "p"},
			Host: sshLoopback{}, Podman: host, SystemContext: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue},
			ProgressDeadline: deadline, Clock: fc,
		})
		done <- err
	}()
	// The config blob went through before the layer was asked for: its
	// resets are not the layer's.
	<-requested
	for len(fc.resets) > 0 {
		<-fc.resets
	}
	close(send)
	var err error
	for waiting := true; waiting; {
		select {
		case <-fc.resets:
			// The relay read what the registry sent, which rearmed the
			// deadline: a deadline on from there, it has read nothing.
			fc.Step(deadline)
		case err = <-done:
			waiting = false
		case <-time.After(10 * time.Second):
			t.Fatal("Pull still waits on the stalled blob after its progress deadline passed")
		}
	}
	var stalled *StalledError
	if !errors.As(err, &stalled) {
		t.Fatalf("error %v, want a *StalledError", err)
	}
	if stalled.Registry != registry || stalled.Blob.String() != layer || stalled.After != deadline || stalled.Sent != int64(len("partial")) {
		t.Errorf("stall %+v, want registry %s, blob %s, the 7 bytes sent and %s", stalled, registry, layer, deadline)
	}
	if !strings.Contains(err.Error(), "sent nothing of blob") || !strings.Contains(err.Error(), "team/app:1.0") {
		t.Errorf("error %q, want the image and the stall", err)
	}
	if len(host.names) != 0 {
		t.Errorf("the host got an image from a cancelled pull: %v", host.names)
	}
}

// Each read that brings bytes rearms the deadline: a slow blob that keeps
// coming is never cut, one that stops is, a deadline after its last byte.
func TestProgressWatchRearmsOnEachRead(t *testing.T) {
	const deadline = time.Minute
	fc := clocktesting.NewFakeClock(time.Now())
	s := &server{progress: deadline, clock: fc, registry: "r.example"}
	ctx, pw := s.watchProgress(context.Background(), digest.FromString("blob"))
	defer pw.stop()
	pr, pwr := io.Pipe()
	r := pw.reader(pr)
	buf := make([]byte, 16)
	for range 5 {
		go func() { _, _ = pwr.Write([]byte("chunk")) }()
		if n, err := r.Read(buf); n != 5 || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
		fc.Step(deadline - time.Second)
		if pw.stalled() != nil || ctx.Err() != nil {
			t.Fatalf("cut %s after a read, before its deadline", deadline-time.Second)
		}
	}
	fc.Step(time.Second)
	<-ctx.Done()
	stalled := pw.stalled()
	if stalled == nil || stalled.Sent != 25 || stalled.Registry != "r.example" || s.stalled() != stalled {
		t.Fatalf("stall %+v, want the blob's 25 bytes sent, recorded on the server too", stalled)
	}
}

// A registry that drops the connection in the middle of a blob fails the
// pull at once: the relay cuts the host's connection too, which would
// otherwise wait for the rest of the blob (over SSH, net/http's own abort
// waits for the host to send something first).
func TestPullFailsWhenTheRegistryCutsABlob(t *testing.T) {
	reg := newFakeRegistry()
	reg.image("team/app", "1.0", "layer")
	layer := digest.FromBytes(gzipped("layer")).String()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/blobs/"+layer) && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", "1000000")
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection drops
		}
		reg.ServeHTTP(w, r) // a Range request gets the whole blob: no resumption
	}))
	defer up.Close()
	host := &fakePodman{t: t, dir: filepath.Join(t.TempDir(), "store"), names: map[string]bool{}}
	done := make(chan error, 1)
	go func() {
		_, err := Pull(context.Background(), Request{
			Image: strings.TrimPrefix(up.URL, "http://") + "/team/app:1.0", Credentials: &Credentials{Username: "u", Password: "p"},
			Host: sshLoopback{}, Podman: host, SystemContext: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue},
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Pull succeeded with a blob the registry cut")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Pull still waits after the registry cut the blob")
	}
}
