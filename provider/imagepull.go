package provider

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/imagerelay"
)

// pullImage pulls image onto the host the way the node's spec.imagePull
// says, with the pod's imagePullSecrets either way. It returns what the
// Pulled event adds about how the image came.
func (w *podWorker) pullImage(ctx context.Context, pd *corev1.Pod, image string) (string, error) {
	pc := w.p.cfg.Host.Podman()
	creds := pullCredentials(image, w.p.pullSecrets(pd))
	if w.p.cfg.Spec.ImagePull != rbnv1.ImagePullThroughKubelet {
		_, err := pc.PullImage(ctx, image, creds)
		return "", err
	}
	req := imagerelay.Request{Image: image, Host: w.p.cfg.Host.SSH(), Podman: pc, Logger: w.log}
	if creds != nil {
		req.Credentials = &imagerelay.Credentials{Username: creds.Username, Password: creds.Password}
	}
	res, err := imagerelay.Pull(ctx, req)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(" through rbn-kubelet (%d blobs, %d bytes sent to the host)", res.Blobs, res.Bytes), nil
}
