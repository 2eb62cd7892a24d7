package podobjects

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
)

// Objects are the Secrets and ConfigMaps of one node's pods, each watched
// on its own with client (the node's identity).
type Objects struct {
	secrets    *Cache[*corev1.Secret]
	configMaps *Cache[*corev1.ConfigMap]
}

// New reads with client until ctx ends.
func New(ctx context.Context, client kubernetes.Interface, o Options) *Objects {
	return &Objects{secrets: NewSecrets(ctx, client, o), configMaps: NewConfigMaps(ctx, client, o)}
}

// Track makes secrets and configMaps of namespace the objects pod uid uses.
func (o *Objects) Track(uid types.UID, namespace string, secrets, configMaps []string) {
	o.secrets.Track(uid, namespace, secrets)
	o.configMaps.Track(uid, namespace, configMaps)
}

// Forget drops pod uid.
func (o *Objects) Forget(uid types.UID) {
	o.secrets.Forget(uid)
	o.configMaps.Forget(uid)
}

// Secret is Cache.Get of a Secret.
func (o *Objects) Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	return o.secrets.Get(ctx, namespace, name)
}

// ConfigMap is Cache.Get of a ConfigMap.
func (o *Objects) ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	return o.configMaps.Get(ctx, namespace, name)
}

// Listers reads the same from cluster-wide informers, with rbn-kubelet's
// own account (nodeIdentities off): nothing to track.
type Listers struct {
	Secrets    corev1listers.SecretLister
	ConfigMaps corev1listers.ConfigMapLister
}

// Track does nothing: the informers hold every object.
func (Listers) Track(types.UID, string, []string, []string) {}

// Forget does nothing.
func (Listers) Forget(types.UID) {}

// Secret reads the Secret from its lister.
func (l Listers) Secret(_ context.Context, namespace, name string) (*corev1.Secret, error) {
	return l.Secrets.Secrets(namespace).Get(name)
}

// ConfigMap reads the ConfigMap from its lister.
func (l Listers) ConfigMap(_ context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	return l.ConfigMaps.ConfigMaps(namespace).Get(name)
}
