package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

// Auth authenticates a kubelet API caller and authorizes its requests.
type Auth interface {
	authenticator.Request
	Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error)
}

type delegatingAuth struct {
	authenticator.Request
	authorizer.Authorizer
}

// NewWebhookAuth checks callers as kubelet's webhook mode does: a client
// certificate signed by clientCA (the apiserver's, when clientCA is the
// cluster CA) or a bearer token the apiserver accepts (TokenReview), then a
// SubjectAccessReview on the node's subresource (nodes/proxy, nodes/stats,
// ...). There is no anonymous access. Caching as kubelet's defaults:
// tokens 2m, allowed 5m, denied 30s.
func NewWebhookAuth(client kubernetes.Interface, clientCA []byte) (Auth, error) {
	authn := authenticatorfactory.DelegatingAuthenticatorConfig{
		TokenAccessReviewClient:  client.AuthenticationV1(),
		TokenAccessReviewTimeout: 10 * time.Second,
		CacheTTL:                 2 * time.Minute,
		WebhookRetryBackoff:      options.DefaultAuthWebhookRetryBackoff(),
	}
	if len(clientCA) > 0 {
		ca, err := dynamiccertificates.NewStaticCAContent("client-ca", clientCA)
		if err != nil {
			return nil, fmt.Errorf("kubelet API client CA: %w", err)
		}
		authn.ClientCertificateCAContentProvider = ca
	}
	req, _, err := authn.New()
	if err != nil {
		return nil, fmt.Errorf("kubelet API authentication: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: client.AuthorizationV1(),
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       options.DefaultAuthWebhookRetryBackoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("kubelet API authorization: %w", err)
	}
	return delegatingAuth{Request: req, Authorizer: authz}, nil
}

func isSubpath(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return path == prefix || (strings.HasPrefix(path, prefix) && path[len(prefix)] == '/')
}

// requestAttributes are what a request to a node's kubelet API is
// authorized as, in the order tried, exactly as kubelet maps them (with its
// fine-grained authorization, on by default since 1.33): the node object
// with a subresource named after the path, and nodes/proxy as the
// fallback for the paths that got finer subresources.
func requestAttributes(u user.Info, r *http.Request, node string) []authorizer.Attributes {
	verb := ""
	switch r.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodGet, http.MethodHead:
		verb = "get"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	}
	path := r.URL.Path
	// Exec, attach, run and port-forward run code in a pod or open a
	// stream into it: "create" whatever the method, since their WebSocket
	// upgrade is a GET, and "get nodes/proxy" (read-only access, e.g. a
	// metrics scraper's) must not let its holder run commands. Stricter
	// than kubelet, which maps such a GET to "get".
	for _, p := range []string{"/exec", "/attach", "/run", "/portForward"} {
		if isSubpath(path, p) {
			verb = "create"
		}
	}
	var subresources []string
	switch {
	case isSubpath(path, "/pods"), isSubpath(path, "/allocatedPods"), isSubpath(path, "/runningpods/"):
		subresources = append(subresources, "pods")
	case isSubpath(path, "/healthz"):
		subresources = append(subresources, "healthz")
	case isSubpath(path, "/configz"):
		subresources = append(subresources, "configz")
	}
	switch {
	case isSubpath(path, "/stats/"):
		subresources = append(subresources, "stats")
	case isSubpath(path, "/metrics"):
		subresources = append(subresources, "metrics")
	case isSubpath(path, "/logs/"):
		subresources = append(subresources, "log") // as pods/log
	case isSubpath(path, "/checkpoint/"):
		subresources = append(subresources, "checkpoint")
	case isSubpath(path, "/statusz"):
		subresources = append(subresources, "statusz")
	case isSubpath(path, "/flagz"):
		subresources = append(subresources, "configz")
	default:
		subresources = append(subresources, "proxy")
	}
	attrs := make([]authorizer.Attributes, 0, len(subresources)+1)
	for _, sub := range subresources {
		attrs = append(attrs, authorizer.AttributesRecord{
			User: u, Verb: verb, APIVersion: "v1", Resource: "nodes", Subresource: sub,
			Name: node, ResourceRequest: true, Path: path,
		})
	}
	if ns, pod, ok := portForwardTarget(path); ok {
		attrs = append(attrs, authorizer.AttributesRecord{
			User: u, Verb: "create", APIVersion: "v1", Namespace: ns, Resource: "pods", Subresource: "portforward",
			Name: pod, ResourceRequest: true, Path: path,
		})
	}
	return attrs
}

// portForwardTarget returns the pod a port-forward path names
// (/portForward/{namespace}/{pod}[/{uid}]).
//
// rbn's own addition to kubelet's mapping: a caller allowed to create
// pods/portforward on that pod may port-forward to it here, not only a
// holder of nodes/proxy. It is the right the apiserver checks before it
// proxies the same request to the node (kubectl port-forward), so it
// grants nothing new; it lets rbn-portal reach a node's kubelet API
// directly, off the apiserver's data path, without nodes/proxy, which
// would let it run commands in every pod of every node.
func portForwardTarget(path string) (namespace, pod string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/portForward/")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

type userKey struct{}

// authenticate answers 401 to a caller it cannot identify and passes the
// caller's identity on to the route.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, ok, err := s.cfg.Auth.AuthenticateRequest(r)
		if err != nil || !ok {
			if err != nil {
				logging.FromContext(r.Context()).Debug("kubelet API: authentication failed", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
			}
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		// The token was for us; the routes behind must not see it.
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, resp.User)))
	})
}

// errForbidden is a denied request; the message names what was asked.
var errForbidden = errors.New("forbidden")

// authorize decides a request against node, as kubelet's filter does: the
// first allowed attribute set lets it through.
func (s *Server) authorize(r *http.Request, node string) error {
	u, _ := r.Context().Value(userKey{}).(user.Info)
	if u == nil {
		return fmt.Errorf("%w: unauthenticated", errForbidden)
	}
	attrs := requestAttributes(u, r, node)
	var subs []string
	for _, a := range attrs {
		what := a.GetResource() + "/" + a.GetSubresource()
		if a.GetNamespace() != "" {
			what += " " + a.GetNamespace() + "/" + a.GetName()
		}
		subs = append(subs, what)
		decision, _, err := s.cfg.Auth.Authorize(r.Context(), a)
		if err != nil {
			return fmt.Errorf("authorization error (user=%s, verb=%s, %s): %w", u.GetName(), a.GetVerb(), what, err)
		}
		if decision == authorizer.DecisionAllow {
			return nil
		}
	}
	return fmt.Errorf("%w (user=%s, verb=%s, node=%s, not allowed: %s)", errForbidden, u.GetName(), attrs[0].GetVerb(), node, strings.Join(subs, ", "))
}
