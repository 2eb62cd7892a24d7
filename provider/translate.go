package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/provider/node"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// pullSecrets returns the pod's imagePullSecrets that could be read (a
// missing one is skipped, as the kubelet skips it).
func (p *Pods) pullSecrets(ctx context.Context, pd *corev1.Pod) []*corev1.Secret {
	p.trackObjects(pd)
	var out []*corev1.Secret
	for _, ref := range pd.Spec.ImagePullSecrets {
		s, err := p.cfg.Objects.Secret(ctx, pd.Namespace, ref.Name)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				p.cfg.Logger.Warn("imagePullSecret not read: pulling without it", "pod", pd.Namespace+"/"+pd.Name, "secret", ref.Name, "err", err)
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// trackObjects tells cfg.Objects what the pod uses: the Secrets and
// ConfigMaps Translate reads and its imagePullSecrets. It returns the
// former (pod.ReferencedObjects).
func (p *Pods) trackObjects(pd *corev1.Pod) (secrets, configMaps []string) {
	secrets, configMaps = pod.ReferencedObjects(pd)
	tracked := slices.Clone(secrets)
	for _, ref := range pd.Spec.ImagePullSecrets {
		if ref.Name != "" && !slices.Contains(tracked, ref.Name) {
			tracked = append(tracked, ref.Name)
		}
	}
	p.cfg.Objects.Track(pd.UID, pd.Namespace, tracked, configMaps)
	return secrets, configMaps
}

// translate gathers what the pod references and plans the pod. podIP is
// empty before the pod's sandbox exists; env that names status.podIP is
// resolved by a second translation once it does. Service link variables are
// not injected: build hosts have no route to cluster IPs. token holds the
// pod's service account token when it has a projected one: requested when
// empty, else reused, so that the plan made again once the pod has an IP
// costs no second TokenRequest; renewing it is the refresh's (refresh.go).
// A pod whose dnsConfig is merged onto the host's resolvers has the host's
// resolv.conf read (hostdns.go).
func (p *Pods) translate(ctx context.Context, pd *corev1.Pod, podIP string, token *podToken) (*pod.Plan, error) {
	in, err := p.input(ctx, pd, podIP, token)
	if err != nil {
		return nil, err
	}
	if pod.NeedsHostDNS(pd) {
		// Read at each translation, as the kubelet reads its
		// resolv.conf for each sandbox; only the first plan's is used.
		if in.HostDNS, err = p.hostDNS(ctx); err != nil {
			return nil, err
		}
	}
	return pod.Translate(in)
}

// input is what the pod references, read from the listers, for pod.Translate
// and pod.RenderFiles; see translate.
func (p *Pods) input(ctx context.Context, pd *corev1.Pod, podIP string, token *podToken) (pod.Input, error) {
	in := pod.Input{
		Pod: pd, NodeName: p.cfg.NodeName, HostPathAllowlist: p.cfg.Spec.HostPathAllowlist,
		Secrets: map[string]*corev1.Secret{}, ConfigMaps: map[string]*corev1.ConfigMap{},
		PodIP: podIP, HostIP: p.hostIP(), ClusterDomain: p.cfg.ClusterDomain,
		Network: p.net.name(),
	}
	in.AllowedUnsafeSysctls = p.cfg.Spec.AllowedUnsafeSysctls
	if q := p.cfg.Spec.ContainerLogMaxSize; q != nil {
		in.ContainerLogMaxBytes = q.Value()
	}
	info := p.rt.Info()
	if info != nil {
		_, in.NodeAllocatable = node.Resources(p.cfg.Spec, info)
		in.HostRuntimes = info.OCIRuntimes
		in.RootlessHost = info.Rootless
	}
	if name := pd.Spec.RuntimeClassName; name != nil && *name != "" {
		if info == nil {
			// Not a property of the pod: the host has not told its runtimes yet.
			return in, fmt.Errorf("RuntimeClass %q: the host's OCI runtimes are not known yet", *name)
		}
		h, err := p.runtimeHandler(*name)
		if err != nil {
			return in, err
		}
		in.RuntimeHandler = h
	}
	// Missing objects are left out: Translate says which the pod waits for.
	secrets, configMaps := p.trackObjects(pd)
	for _, name := range secrets {
		s, err := p.cfg.Objects.Secret(ctx, pd.Namespace, name)
		switch {
		case err == nil:
			in.Secrets[name] = s
		case !apierrors.IsNotFound(err):
			return in, err
		}
	}
	for _, name := range configMaps {
		c, err := p.cfg.Objects.ConfigMap(ctx, pd.Namespace, name)
		switch {
		case err == nil:
			in.ConfigMaps[name] = c
		case !apierrors.IsNotFound(err):
			return in, err
		}
	}
	if name := pod.TransfersSecret(pd); name != "" {
		s, err := p.cfg.TransferSecret(ctx, pd, name)
		switch {
		case err == nil:
			in.Secrets[name] = s
		case apierrors.IsForbidden(err):
			// The pod waits, as for a missing Secret: the grant may come
			// after it (RBAC applied later).
			return in, &pod.MissingObjectError{Kind: "Secret", Namespace: pd.Namespace, Name: name, Reason: pod.ReasonCreateContainerConfigError,
				Cause: fmt.Errorf("the Secret of the pod's S3 transfers, which its service account %s may not read (grant it get on the Secret): %w", ServiceAccountOf(pd), err)}
		case !apierrors.IsNotFound(err):
			return in, fmt.Errorf("Secret %s/%s of the pod's S3 transfers: %w", pd.Namespace, name, err)
		}
	}
	in.Claims, in.VolumeRoot = p.claims(pd), volumeRoot(p.cfg.Spec)
	in.Services = p.services(pd)
	if serviceAccountTokenSource(pd) != nil {
		if token.value == "" {
			if err := p.requestToken(ctx, pd, token); err != nil {
				return in, err
			}
		}
		in.ServiceAccountToken = token.value
	}
	return in, nil
}

// claims reads the pod's PersistentVolumeClaims and their volumes from the
// listers; what is not there is left out (the translation waits for it).
func (p *Pods) claims(pd *corev1.Pod) map[string]*pod.Claim {
	names := pod.ReferencedClaims(pd)
	if len(names) == 0 || p.cfg.Claims == nil || p.cfg.Volumes == nil {
		return nil
	}
	out := make(map[string]*pod.Claim, len(names))
	for _, name := range names {
		pvc, err := p.cfg.Claims.PersistentVolumeClaims(pd.Namespace).Get(name)
		if err != nil {
			continue
		}
		c := &pod.Claim{PVC: pvc}
		if pvc.Spec.VolumeName != "" {
			c.PV, _ = p.cfg.Volumes.Get(pvc.Spec.VolumeName)
		}
		out[name] = c
	}
	return out
}

// services reads the cluster Services the pod's annotation names from the
// lister; what is not there is left out (the translation waits for it).
func (p *Pods) services(pd *corev1.Pod) map[types.NamespacedName]*corev1.Service {
	refs := pod.ReferencedServices(pd)
	if len(refs) == 0 || p.cfg.Services == nil {
		return nil
	}
	out := make(map[types.NamespacedName]*corev1.Service, len(refs))
	for _, ref := range refs {
		if svc, err := p.cfg.Services.Services(ref.Namespace).Get(ref.Name); err == nil {
			out[ref] = svc
		}
	}
	return out
}

// podToken is a pod's projected service account token, with its life.
type podToken struct {
	value           string
	issued, expires time.Time
}

// refreshAt is when the token is to be renewed: by kubelet's token manager,
// once older than 80% of its time to live or than 24 hours (kubelet adds up
// to 10 s of jitter; one worker per pod spreads these already).
func (t podToken) refreshAt() time.Time {
	ttl := t.expires.Sub(t.issued)
	at := t.expires.Add(-ttl / 5)
	if day := t.issued.Add(24 * time.Hour); day.Before(at) {
		at = day
	}
	return at
}

// ServiceAccountOf is the pod's service account, as the apiserver defaults it.
func ServiceAccountOf(pd *corev1.Pod) string {
	if pd.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pd.Spec.ServiceAccountName
}

// requestToken asks for the token of the pod's first projected
// serviceAccountToken source (the translation refuses others that differ)
// and keeps it in token; token is left as it was on failure.
func (p *Pods) requestToken(ctx context.Context, pd *corev1.Pod, token *podToken) error {
	src := serviceAccountTokenSource(pd)
	if p.cfg.Token == nil {
		return errors.New("no token source for projected service account token")
	}
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	var aud []string
	if src.Audience != "" {
		aud = []string{src.Audience}
	}
	now := p.cfg.Clock.Now()
	tok, expires, err := p.cfg.Token(ctx, pd, aud, exp)
	if err != nil {
		return fmt.Errorf("service account token: %w", err)
	}
	// The token lives what was asked (the status's expiration is that far
	// from its issue, as kubelet's token manager takes it).
	ttl := time.Duration(exp) * time.Second
	if expires.IsZero() {
		expires = now.Add(ttl)
	}
	*token = podToken{value: tok, issued: expires.Add(-ttl), expires: expires}
	return nil
}

// runtimeHandler resolves a RuntimeClass to its handler as the kubelet
// does. A RuntimeClass that does not exist (yet) is not the pod's fault for
// good: the kubelet fails the sandbox's creation (FailedCreatePodSandBox)
// and retries, and so does the caller with this error, whose text is the
// API's NotFound (runtimeclass.node.k8s.io "NAME" not found) as in the
// kubelet's event.
func (p *Pods) runtimeHandler(name string) (string, error) {
	if p.cfg.RuntimeClasses == nil {
		return "", fmt.Errorf("RuntimeClass %q: no RuntimeClass lister configured", name)
	}
	rc, err := p.cfg.RuntimeClasses.Get(name)
	if err != nil {
		return "", fmt.Errorf("failed to look up RuntimeClass: %w", err)
	}
	return rc.Handler, nil
}

// serviceAccountTokenSource returns the pod's first projected service account token source.
func serviceAccountTokenSource(pd *corev1.Pod) *corev1.ServiceAccountTokenProjection {
	for _, v := range pd.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				return src.ServiceAccountToken
			}
		}
	}
	return nil
}
