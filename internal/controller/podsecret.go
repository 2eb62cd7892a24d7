package controller

import (
	"context"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"

	"github.com/remote-build-nodes/rbn/provider"
)

// podSecretTokenSeconds is the lifetime of the tokens secretAsPod reads
// with: the shortest the apiserver issues.
const podSecretTokenSeconds = 600

// secretAsPod reads a Secret of a pod's namespace as the pod's own service
// account: a token of that account bound to the pod (requested by tokens,
// as the pod's node) authenticates the request, on a transport to base's
// apiserver that carries none of rbn-kubelet's own credentials. What the
// pod's account may not read, rbn-kubelet does not read for it.
func secretAsPod(base *rest.Config, tokens provider.TokenFunc) (provider.SecretFunc, error) {
	anonymous := rest.AnonymousClientConfig(base)
	rt, err := rest.TransportFor(anonymous)
	if err != nil {
		return nil, fmt.Errorf("transport to the apiserver: %w", err)
	}
	return func(ctx context.Context, pd *corev1.Pod, name string) (*corev1.Secret, error) {
		token, _, err := tokens(ctx, pd, nil, podSecretTokenSeconds)
		if err != nil {
			return nil, fmt.Errorf("a token of the pod's service account: %w", err)
		}
		client, err := corev1client.NewForConfigAndClient(anonymous, &http.Client{Transport: transport.NewBearerAuthRoundTripper(token, rt)})
		if err != nil {
			return nil, err
		}
		return client.Secrets(pd.Namespace).Get(ctx, name, metav1.GetOptions{})
	}, nil
}
