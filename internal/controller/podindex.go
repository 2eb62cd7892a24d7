package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// newPodIndex is an informer on every scheduled pod of the cluster that
// keeps only what tells a pod's node (namespace, name, uid, spec.nodeName):
// the kubelet API resolves a pod route's node through it, as kwok does,
// instead of asking each node runtime. A pod's node never changes once set.
func newPodIndex(client kubernetes.Interface) (cache.SharedIndexInformer, error) {
	inf := cache.NewSharedIndexInformer(scheduledPods(client), &corev1.Pod{}, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := inf.SetTransform(podNodeOnly); err != nil {
		return nil, err
	}
	return inf, nil
}

// scheduledPods lists and watches the pods that have a node.
func scheduledPods(client kubernetes.Interface) *cache.ListWatch {
	scheduled := fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = scheduled
			return client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = scheduled
			return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
}

// podNodeOnly strips a pod to what the index needs: thousands of pods of
// other nodes cost little.
func podNodeOnly(obj any) (any, error) {
	pd, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pd.Namespace, Name: pd.Name, UID: pd.UID, ResourceVersion: pd.ResourceVersion,
		},
		Spec: corev1.PodSpec{NodeName: pd.Spec.NodeName},
	}, nil
}

// PodLister lists the cluster's scheduled pods (name and node only) from
// the controller's pod index, for the kubelet API.
func (c *Controller) PodLister() corev1listers.PodLister {
	return corev1listers.NewPodLister(c.podIndex.GetIndexer())
}
