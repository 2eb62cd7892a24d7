package imagerelay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/cli/environment"
	"go.podman.io/image/v5/types"
	"k8s.io/utils/clock"

	"github.com/remote-build-nodes/rbn/internal/egress"
)

// Credentials authenticate to the upstream registry.
type Credentials struct {
	Username string
	Password string
}

// HostListener opens a listener on the host's loopback, forwarded to this
// process (sshconn.Client). It must fail rather than return a listener
// reachable from beyond the host.
type HostListener interface {
	ListenLoopback(ctx context.Context) (net.Listener, error)
}

// HostImages is the host's podman (podman.Client).
type HostImages interface {
	// PullImageLoopbackPlain pulls ref from the relay over plain HTTP,
	// authenticating with username and password.
	PullImageLoopbackPlain(ctx context.Context, ref, username, password string) (string, error)
	TagImage(ctx context.Context, nameOrID, repo, tag string) error
	UntagImage(ctx context.Context, nameOrID, repo, tag string) error
}

// Request is one image to bring to one host.
type Request struct {
	// Image is the reference the pod asked for; the host's image gets that name.
	Image string
	// Credentials for the image's registry; nil: anonymous. rbn-kubelet's own
	// registry credentials (auth files) are never used for a pod.
	Credentials *Credentials
	Host        HostListener
	Podman      HostImages
	// SystemContext is the base for the upstream connection (TLS, registries
	// configuration); nil: the containers defaults of this process
	// (registries.conf or $CONTAINERS_REGISTRIES_CONF, certs.d), as for any
	// containers tool.
	SystemContext *types.SystemContext
	// Egress is where the relay may connect: the registry is the pod's
	// user's choice. Nil: anywhere (tests; rbn-kubelet always sets one).
	Egress *egress.Policy
	// ProgressDeadline cancels the pull when the registry sends nothing of
	// a blob for that long (kubelet's old --image-pull-progress-deadline):
	// a registry that stalls mid-blob fails the pull with a *StalledError
	// instead of holding it until the pull's own deadline. Zero: no bound.
	ProgressDeadline time.Duration
	// Clock times ProgressDeadline; nil: the real clock.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Result says what a relayed pull did.
type Result struct {
	// ImageID is the image's ID in the host's store.
	ImageID string
	// Blobs and Bytes count what the relay sent the host: the layers the host
	// already had are not among them.
	Blobs int
	Bytes int64
}

// Pull brings req.Image to the host through this process's own access to its
// registry; see the package documentation. It returns when the image is in
// the host's store under req.Image, or with the first error: the upstream's
// (missing image, refused credentials) before anything reaches the host.
func Pull(ctx context.Context, req Request) (Result, error) {
	if req.Logger == nil {
		req.Logger = slog.New(slog.DiscardHandler)
	}
	img, err := parseImage(req.Image)
	if err != nil {
		return Result{}, err
	}
	src, err := openUpstream(ctx, img.upstream, req.Credentials, req.SystemContext, req.Egress)
	if err != nil {
		return Result{}, err
	}
	defer src.Close()
	// The relay's listener is on the host's loopback, which every local user
	// and host-network container shares: it answers only whoever holds this
	// pull's credentials, which go to the host's podman with the pull request.
	creds := pullCredentials()
	srv, err := newServer(ctx, src, reference.Path(img.upstream), img.localRef, creds, req.Logger)
	if err != nil {
		return Result{}, err
	}
	srv.progress = req.ProgressDeadline
	srv.clock = req.Clock
	if srv.clock == nil {
		srv.clock = clock.RealClock{}
	}
	srv.registry = reference.Domain(img.upstream)

	ln, err := req.Host.ListenLoopback(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("relay %s: %w", req.Image, err)
	}
	port, err := loopbackPort(ln.Addr())
	if err != nil {
		_ = ln.Close()
		return Result{}, fmt.Errorf("relay %s: %w", req.Image, err)
	}
	stop := srv.serve(ln)
	defer stop()

	local := net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/" + reference.Path(img.upstream)
	id, err := req.Podman.PullImageLoopbackPlain(ctx, local+img.localRef, creds.Username, creds.Password)
	st := srv.stats()
	res := Result{ImageID: id, Blobs: st.blobs, Bytes: st.bytes}
	if err != nil {
		// A blob the registry stopped sending is why the host's pull broke:
		// the host only saw its stream cut.
		if stalled := srv.stalled(); stalled != nil {
			return res, fmt.Errorf("pull %s through rbn-kubelet: %w", req.Image, stalled)
		}
		return res, fmt.Errorf("pull %s through rbn-kubelet: %w", req.Image, &hostPullError{err: err, local: local, upstream: img.upstream.Name()})
	}
	// The host's image takes the pod's name and loses the loopback one, whose
	// port means nothing once this pull is over.
	if err := req.Podman.TagImage(ctx, id, img.repo, img.tag); err != nil {
		return res, err
	}
	if tag, ok := strings.CutPrefix(img.localRef, ":"); ok {
		if err := req.Podman.UntagImage(ctx, id, local, tag); err != nil {
			return res, err
		}
	}
	req.Logger.Debug("image relayed", "image", req.Image, "imageID", id, "blobs", res.Blobs, "bytes", res.Bytes)
	return res, nil
}

// relayUser is the user name of every pull's relay; the password is what
// differs.
const relayUser = "rbn-relay"

// pullCredentials returns new credentials for one pull's relay: a password
// of at least 128 random bits (crypto/rand.Text), which nobody can guess
// while the pull lasts and which is worth nothing afterwards.
func pullCredentials() Credentials {
	return Credentials{Username: relayUser, Password: rand.Text()}
}

// hostPullError is the host's failed pull from the relay, its message
// naming the registry's repository where the host named the relay's
// loopback address: that port means nothing once the pull is over, and a
// message such as "no image found in image index for architecture arm64"
// must point at the registry's image.
type hostPullError struct {
	err             error
	local, upstream string
}

func (e *hostPullError) Error() string { return strings.ReplaceAll(e.err.Error(), e.local, e.upstream) }
func (e *hostPullError) Unwrap() error { return e.err }

// image is a pod's image reference taken apart.
type image struct {
	// upstream is what the relay fetches: the tag, or the digest when there is one.
	upstream reference.Named
	// localRef is the host pull's suffix: ":tag" or "@digest".
	localRef string
	// repo and tag name the host's image afterwards. An image by digest only
	// gets the tag "sha256-<hex>": podman names images by tag, and a name in
	// the repository is what lets `repo@digest` find the image afterwards.
	repo, tag string
}

func parseImage(s string) (image, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return image{}, fmt.Errorf("image %q: %w", s, err)
	}
	named = reference.TagNameOnly(named)
	img := image{repo: named.Name(), upstream: named}
	tagged, isTagged := named.(reference.Tagged)
	if isTagged {
		img.tag = tagged.Tag()
		img.localRef = ":" + img.tag
	}
	if d, ok := named.(reference.Digested); ok {
		// The docker transport takes a tag or a digest, not both: the digest decides.
		img.upstream, err = reference.WithDigest(reference.TrimNamed(named), d.Digest())
		if err != nil {
			return image{}, fmt.Errorf("image %q: %w", s, err)
		}
		img.localRef = "@" + d.Digest().String()
		if !isTagged {
			img.tag = d.Digest().Algorithm().String() + "-" + d.Digest().Encoded()
		}
	}
	return img, nil
}

// openUpstream reaches the image in its registry; the docker transport does
// the authentication and token exchange and resolves the manifest, so that a
// missing image or refused credentials fail here, with the registry's words.
func openUpstream(ctx context.Context, named reference.Named, creds *Credentials, base *types.SystemContext, policy *egress.Policy) (types.ImageSource, error) {
	ref, err := docker.NewReference(named)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", named, err)
	}
	sys := &types.SystemContext{}
	if base != nil {
		c := *base
		sys = &c
	}
	sys.DockerAuthConfig = &types.DockerAuthConfig{}
	if creds != nil {
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: creds.Username, Password: creds.Password}
	}
	// CONTAINERS_REGISTRIES_CONF, as podman and skopeo honour it.
	if err := environment.UpdateRegistriesConf(sys); err != nil {
		return nil, err
	}
	if sys.DockerRegistryUserAgent == "" {
		sys.DockerRegistryUserAgent = "rbn-kubelet"
	}
	if policy != nil {
		guardRequests(ctx, sys, policy)
	}
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("rbn-kubelet fetching %s: %w", named, err)
	}
	return src, nil
}

func loopbackPort(a net.Addr) (int, error) {
	if t, ok := a.(*net.TCPAddr); ok && t.Port > 0 {
		return t.Port, nil
	}
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return 0, fmt.Errorf("listener address %s: %w", a, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 {
		return 0, errors.New("the host gave no port for the forward")
	}
	return port, nil
}

// guardRequests makes every request of the docker transport (the ping, the
// token exchange, manifests, blobs and any redirect, as to a blob store)
// check its host against policy first. The transport's dialer cannot be
// replaced, so its per-request proxy hook is where the check goes; it then
// picks the proxy the transport would have picked. Unlike the S3 relay's
// dial-time check, this one resolves the name itself: a name that resolves
// differently a moment later could slip past it.
func guardRequests(ctx context.Context, sys *types.SystemContext, policy *egress.Policy) {
	next := sys.DockerProxy
	if next == nil && sys.DockerProxyURL != nil {
		fixed := sys.DockerProxyURL
		next = func(*url.URL) (*url.URL, error) { return fixed, nil }
	}
	if next == nil {
		next = func(u *url.URL) (*url.URL, error) { return http.ProxyFromEnvironment(&http.Request{URL: u}) }
	}
	sys.DockerProxy = func(u *url.URL) (*url.URL, error) {
		host := u.Host
		if u.Port() == "" {
			port := "443"
			if u.Scheme == "http" {
				port = "80"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		if err := policy.CheckHost(ctx, host); err != nil {
			return nil, err
		}
		return next(u)
	}
}
