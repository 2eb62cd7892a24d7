package imagerelay

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
	"k8s.io/utils/clock"
)

// server is the read-only registry of one pull: the manifests and blobs of
// one repository, streamed from the upstream source, to the holder of the
// pull's credentials only.
type server struct {
	ctx      context.Context // the pull's: upstream requests end with it
	src      types.ImageSource
	creds    Credentials // the pull's own, asked of every request
	repo     string      // repository path served, as upstream ("rbn/busybox")
	localRef string      // ":tag" or "@digest" the host asks for
	top      []byte      // the manifest the pull resolved, served for localRef
	topType  string
	topDig   digest.Digest
	log      *slog.Logger
	registry string        // the upstream registry's host, for errors
	progress time.Duration // ProgressDeadline: 0, none
	clock    clock.Clock

	stall    atomic.Pointer[StalledError] // the first blob the registry stopped sending
	blobs    atomic.Int64
	bytes    atomic.Int64
	handlers sync.WaitGroup
}

type stats struct {
	blobs int
	bytes int64
}

func newServer(ctx context.Context, src types.ImageSource, repo, localRef string, creds Credentials, log *slog.Logger) (*server, error) {
	// Resolved once, so that a tag moving upstream during the pull cannot mix
	// two images; manifests are small, blobs are never held.
	top, mime, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("rbn-kubelet reading the manifest of %s: %w", src.Reference().DockerReference(), err)
	}
	return &server{ctx: ctx, src: src, creds: creds, repo: repo, localRef: localRef, top: top, topType: mime, topDig: digest.FromBytes(top), log: log}, nil
}

func (s *server) stats() stats { return stats{blobs: int(s.blobs.Load()), bytes: s.bytes.Load()} }

// serve answers on ln until the returned function is called, which cancels
// the upstream requests in flight, closes the listener and every connection,
// and waits for the handlers to return: nothing uses the upstream source
// afterwards.
func (s *server) serve(ln net.Listener) func() {
	ctx, cancel := context.WithCancel(s.ctx)
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext:       func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = hs.Serve(ln) // ends when the listener is closed, or with the SSH connection
	}()
	return func() {
		cancel() // upstream reads of handlers in flight end
		_ = hs.Close()
		wg.Wait()
		s.handlers.Wait()
	}
}

// ServeHTTP implements the pull side of the distribution API v2. A request
// without the pull's credentials gets 401 and nothing else: no upstream
// request, not even the version check (/v2/), whose 401 is what tells the
// host's podman to send them (HTTP basic auth, as a registry asks).
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="rbn-kubelet image relay"`)
		registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry is read-only")
		return
	}
	if stalled := s.stalled(); stalled != nil {
		// The pull is lost: the host's retry of the blob (a Range request
		// after the cut) fails at once instead of asking the registry again.
		registryError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "rbn-kubelet: "+stalled.Error())
		return
	}
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/"+s.repo+"/")
	if !ok {
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "only "+s.repo+" is served here")
		return
	}
	kind, ref, _ := strings.Cut(rest, "/")
	switch kind {
	case "manifests":
		s.manifest(w, r, ref)
	case "blobs":
		s.blob(w, r, ref)
	default:
		registryError(w, http.StatusNotFound, "UNSUPPORTED", "not served here")
	}
}

// authorized reports whether r carries the pull's credentials, compared in
// constant time.
func (s *server) authorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok || s.creds.Password == "" {
		return false
	}
	user := subtle.ConstantTimeCompare([]byte(u), []byte(s.creds.Username))
	pass := subtle.ConstantTimeCompare([]byte(p), []byte(s.creds.Password))
	return user&pass == 1
}

func (s *server) manifest(w http.ResponseWriter, r *http.Request, ref string) {
	body, mime := s.top, s.topType
	if ref != strings.TrimLeft(s.localRef, ":@") && ref != s.topDig.String() {
		d, err := digest.Parse(ref)
		if err != nil {
			registryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "only "+s.localRef+" and manifests by digest are served here")
			return
		}
		// An instance of a manifest list (the host picks its platform's).
		body, mime, err = s.src.GetManifest(r.Context(), &d)
		if err != nil {
			s.upstreamError(w, "manifest "+ref, err)
			return
		}
	}
	w.Header().Set("Content-Type", mime)
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(body).String())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

func (s *server) blob(w http.ResponseWriter, r *http.Request, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		registryError(w, http.StatusNotFound, "DIGEST_INVALID", err.Error())
		return
	}
	ctx, watch := s.watchProgress(r.Context(), d)
	defer watch.stop()
	rc, size, err := s.src.GetBlob(ctx, types.BlobInfo{Digest: d, Size: -1}, none.NoCache)
	if err != nil {
		if stalled := watch.stalled(); stalled != nil {
			err = stalled
		}
		s.upstreamError(w, "blob "+ref, err)
		return
	}
	defer rc.Close()
	watch.size.Store(size)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", d.String())
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	if r.Method == http.MethodHead {
		return
	}
	s.blobs.Add(1)
	// Streamed: io.Copy holds one buffer, the host's podman checks the digest.
	n, err := io.Copy(w, watch.reader(rc))
	s.bytes.Add(n)
	if err == nil && (size < 0 || n == size) {
		return
	}
	if stalled := watch.stalled(); stalled != nil {
		s.log.Info("image relay: the registry stalled mid-blob", "blob", d, "sent", n, "size", size, "after", s.progress)
	} else {
		s.log.Debug("image relay: blob cut short", "blob", d, "sent", n, "size", size, "err", err)
	}
	// Cut: the host's pull must fail now, not wait for the bytes that will
	// not come. The connection is closed here, not by net/http's abort
	// alone: that (as the end of any response) first waits for its
	// background read of the connection to end, which a read deadline ends
	// on TCP, but an SSH channel takes no deadline, and the host, waiting
	// for the rest of the blob, sends nothing.
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		_ = c.Close()
	}
	panic(http.ErrAbortHandler)
}

// connKey holds a request's connection in its context.
type connKey struct{}

// stalled is the first blob the registry stopped sending, or nil.
func (s *server) stalled() *StalledError { return s.stall.Load() }

// StalledError is a blob the registry sent nothing of for the pull's
// ProgressDeadline: the pull was cancelled.
type StalledError struct {
	Registry string
	Blob     digest.Digest
	// Sent and Size count the blob's bytes relayed before the stall and
	// its whole size (-1: unknown).
	Sent, Size int64
	After      time.Duration
}

func (e *StalledError) Error() string {
	size := "of unknown size"
	if e.Size >= 0 {
		size = fmt.Sprintf("of %d", e.Size)
	}
	return fmt.Sprintf("registry %s sent nothing of blob %s for %s (%d bytes %s received): the pull was cancelled",
		e.Registry, e.Blob, e.After, e.Sent, size)
}

// progressWatch cancels one blob's upstream request when no byte of it
// arrives for the server's progress deadline, from the request's start.
type progressWatch struct {
	s      *server
	size   atomic.Int64 // -1 until the registry said
	sent   atomic.Int64
	stall  atomic.Pointer[StalledError]
	cancel context.CancelFunc
	timer  clock.Timer // nil: no deadline
	done   chan struct{}
}

func (s *server) watchProgress(ctx context.Context, d digest.Digest) (context.Context, *progressWatch) {
	ctx, cancel := context.WithCancel(ctx)
	pw := &progressWatch{s: s, cancel: cancel, done: make(chan struct{})}
	pw.size.Store(-1)
	if s.progress <= 0 {
		return ctx, pw
	}
	pw.timer = s.clock.NewTimer(s.progress)
	go func() {
		select {
		case <-pw.timer.C():
			stalled := &StalledError{Registry: s.registry, Blob: d, Sent: pw.sent.Load(), Size: pw.size.Load(), After: s.progress}
			pw.stall.Store(stalled)
			s.stall.CompareAndSwap(nil, stalled)
			cancel()
		case <-pw.done:
		}
	}()
	return ctx, pw
}

// reader counts r's bytes and rearms the deadline with each read that
// brought some.
func (pw *progressWatch) reader(r io.Reader) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		n, err := r.Read(p)
		if n > 0 {
			pw.sent.Add(int64(n))
			if pw.timer != nil && pw.stall.Load() == nil {
				pw.timer.Reset(pw.s.progress)
			}
		}
		return n, err
	})
}

// stalled is the watch's stall, if its deadline passed.
func (pw *progressWatch) stalled() *StalledError { return pw.stall.Load() }

func (pw *progressWatch) stop() {
	if pw.timer != nil {
		pw.timer.Stop()
	}
	close(pw.done)
	pw.cancel()
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// upstreamError answers with the registry's verdict as well as it is known.
func (s *server) upstreamError(w http.ResponseWriter, what string, err error) {
	s.log.Debug("image relay: upstream failed", "what", what, "err", err)
	var unauthorized docker.ErrUnauthorizedForCredentials
	switch {
	case errors.As(err, &unauthorized):
		registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", err.Error())
	default:
		registryError(w, http.StatusBadGateway, "UNKNOWN", "rbn-kubelet: "+err.Error())
	}
}

func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
