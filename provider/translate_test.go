package provider

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podobjects"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// A pod's Secrets and ConfigMaps are read as its node, one object at a
// time: what the node may read lands in the plan; one it may not read (yet)
// holds the pod back with the reason, rather than counting as missing,
// which for an optional volume would start the pod without it.
func TestObjectsReadAsTheNode(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"}, Data: map[string][]byte{"user": []byte("builder")}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "recipe"}, Data: map[string]string{"config.xml": "<image/>"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fenced"}, Data: map[string][]byte{"k": []byte("v")}},
	)
	client.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.ListAction).GetListRestrictions().Fields.String() == "metadata.name=fenced" {
			return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "fenced", errors.New("no relationship found between node and this object"))
		}
		return false, nil, nil
	})
	objects := podobjects.New(t.Context(), client, podobjects.Options{SyncTimeout: 300 * time.Millisecond})
	p := newPods(PodsConfig{
		NodeName: "node-1", Spec: &rbnv1.RemoteBuildNodeSpec{Address: "127.0.1.1"},
		Objects:        objects,
		TransferSecret: secretsFrom(cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})),
	}, newFakeRuntime(clock.RealClock{}))
	volume := func(name string, src corev1.VolumeSource) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: src}
	}
	pd := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "main", Image: "busybox", VolumeMounts: []corev1.VolumeMount{
				{Name: "creds", MountPath: "/creds"}, {Name: "recipe", MountPath: "/recipe"}}}},
			Volumes: []corev1.Volume{
				volume("creds", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}),
				volume("recipe", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "recipe"}}}),
			},
		},
	}
	plan, err := p.translate(context.Background(), pd, "", &podToken{})
	if err != nil {
		t.Fatal(err)
	}
	if v := planVolume(plan, "creds"); v == nil || !hasFile(v.Files, "user", "builder") {
		t.Errorf("the Secret volume: %+v, want its file user", v)
	}
	if v := planVolume(plan, "recipe"); v == nil || !hasFile(v.Files, "config.xml", "<image/>") {
		t.Errorf("the ConfigMap volume: %+v, want its file config.xml", v)
	}

	fenced := pd.DeepCopy()
	fenced.UID = "uid-2"
	fenced.Spec.Volumes = append(fenced.Spec.Volumes, volume("fenced", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "fenced", Optional: ptr.To(true)}}))
	_, err = p.translate(context.Background(), fenced, "", &podToken{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "Secret ns/fenced not read yet") {
		t.Fatalf("a pod with a Secret the node may not read: %v, want the Forbidden, not a plan without the optional volume", err)
	}

	// Pods that end are forgotten: no watch stays behind.
	for _, pd := range []*corev1.Pod{pd, fenced} {
		p.finished(newPodWorker(p, pd))
	}
	if _, err := objects.Secret(context.Background(), "ns", "creds"); !errors.Is(err, podobjects.ErrNotTracked) {
		t.Errorf("after its pods are forgotten, Secret creds: %v, want ErrNotTracked", err)
	}
}

// The Secret of a pod's S3 transfers is read as the pod's service account:
// one the account may not read holds the pod back, saying whose grant is
// missing; one that does not exist (yet) makes the pod wait, as before.
func TestTransfersSecretReadAsThePod(t *testing.T) {
	var readFor []string
	denied := true
	p := newPods(PodsConfig{
		NodeName: "node-1", Spec: &rbnv1.RemoteBuildNodeSpec{Address: "127.0.1.1"},
		Objects: podobjects.New(t.Context(), fake.NewClientset(), podobjects.Options{}),
		TransferSecret: func(_ context.Context, pd *corev1.Pod, name string) (*corev1.Secret, error) {
			readFor = append(readFor, pd.Name+":"+name)
			if denied {
				return nil, apierrors.NewForbidden(corev1.Resource("secrets"), name, errors.New(`User "system:serviceaccount:builds:builder" cannot get resource "secrets"`))
			}
			return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
		},
	}, newFakeRuntime(clock.RealClock{}))
	pd := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: "builds", UID: "uid-1", Annotations: map[string]string{
			rbnv1.AnnotationTransfers: `{"apiVersion": "rbn.dev/v1alpha1", "kind": "Transfers", "secretName": "s3", "outputs": [{"volume": "work", "path": "out", "bucket": "images", "key": "demo.raw"}]}`,
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "builder", RestartPolicy: corev1.RestartPolicyNever,
			Volumes:    []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{Name: "main", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}}},
		},
	}
	_, err := p.translate(context.Background(), pd, "", &podToken{})
	var missing *pod.MissingObjectError
	if !errors.As(err, &missing) || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "which its service account builder may not read (grant it get on the Secret)") {
		t.Fatalf("translate with a Secret the pod's account may not read: %v, want the pod to wait, saying whose grant is missing", err)
	}
	t.Log(err)
	denied = false
	if _, err = p.translate(context.Background(), pd, "", &podToken{}); !errors.As(err, &missing) {
		t.Fatalf("translate with a Secret that does not exist: %v, want the pod to wait for it", err)
	}
	if want := []string{"build:s3", "build:s3"}; !slices.Equal(readFor, want) {
		t.Errorf("reads %q, want %q", readFor, want)
	}
}
