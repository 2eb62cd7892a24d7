package bench

import (
	"cmp"
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// ---------------------------------------------------------------------------------------------
// Pods and namespaces.

func (b *bench) newNamespace(ctx context.Context, prefix string) (string, error) {
	return createNamespace(ctx, b.kube, prefix)
}

func (b *bench) deleteNamespace(ns string) { deleteNamespace(b.kube, ns) }

// createNamespace creates a namespace named prefix-<random>, labelled as
// the benchmark's, and waits for its default service account: pods are
// refused until it exists.
func createNamespace(ctx context.Context, kube kubernetes.Interface, prefix string) (string, error) {
	ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: map[string]string{benchLabel: "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	err = framework.Poll(ctx, "the default service account in "+ns.Name, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		_, err := kube.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return ns.Name, err
}

func deleteNamespace(kube kubernetes.Interface, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
}

// deletePods deletes the namespace's pods matching selector with grace
// period 0 and waits until rbn has removed them from the hosts. The pod
// objects go at once (grace 0, or a pod that has ended: the apiserver does
// not wait for the kubelet then), so the hosts are what tells the end.
func (b *bench) deletePods(ctx context.Context, ns, selector string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := b.kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)},
		metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, err
	}
	err = b.waitHostsClean(ctx, map[string]string{pod.LabelPodNamespace: ns}, timeout)
	return time.Since(start), err
}

// waitHostsClean waits until no host has a podman pod or container carrying
// every one of labels.
func (b *bench) waitHostsClean(ctx context.Context, labels map[string]string, timeout time.Duration) error {
	var listErr error
	err := framework.Poll(ctx, fmt.Sprintf("the hosts to hold nothing labelled %v", labels), timeout, 250*time.Millisecond, func() (bool, string) {
		left := 0
		for _, f := range b.floors {
			ps, err := f.pm.ListPods(ctx, labels)
			if err != nil {
				listErr = err
				return true, ""
			}
			cs, err := f.pm.ListContainers(ctx, labels)
			if err != nil {
				listErr = err
				return true, ""
			}
			left += len(ps) + len(cs)
		}
		return left == 0, fmt.Sprintf("%d podman pods and containers left", left)
	})
	return cmp.Or(listErr, err)
}
