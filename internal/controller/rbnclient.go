package controller

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

const resource = "remotebuildnodes"

// rbnClient is a small typed client for RemoteBuildNodes.
type rbnClient struct{ rc rest.Interface }

func newRBNClient(base *rest.Config) (*rbnClient, error) {
	scheme := runtime.NewScheme()
	if err := rbnv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(base)
	cfg.GroupVersion = &rbnv1.SchemeGroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("remotebuildnodes client: %w", err)
	}
	return &rbnClient{rc: rc}, nil
}

func (c *rbnClient) listWatch() *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			out := &rbnv1.RemoteBuildNodeList{}
			err := c.rc.Get().Resource(resource).VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(out)
			return out, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.Watch = true
			return c.rc.Get().Resource(resource).VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
		},
	}
}

func (c *rbnClient) updateStatus(ctx context.Context, obj *rbnv1.RemoteBuildNode) error {
	return c.rc.Put().Resource(resource).Name(obj.Name).SubResource("status").Body(obj).Do(ctx).Error()
}

// setFinalizers replaces the finalizer list, guarded by resourceVersion.
func (c *rbnClient) setFinalizers(ctx context.Context, obj *rbnv1.RemoteBuildNode, finalizers []string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"finalizers": finalizers, "resourceVersion": obj.ResourceVersion,
	}})
	if err != nil {
		return err
	}
	return c.rc.Patch(types.MergePatchType).Resource(resource).Name(obj.Name).Body(patch).Do(ctx).Error()
}
