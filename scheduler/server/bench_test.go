package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/scheduler"
	"github.com/remote-build-nodes/rbn/scheduler/state"
)

// The benchmarks measure one scheduler call as rbn-extender serves it:
// decoding ExtenderArgs (an image-build pod and 100 node names), reading the
// informer cache (100 build hosts publishing 60 images each, 10 bound pods
// per node), deciding, encoding. "handler" calls the http.Handler directly;
// "loopback" goes through a real TCP connection with keep-alive, as
// kube-scheduler does. Each reports p50 and p99 per call in microseconds.
//
//	go test -run '^$' -bench . -benchtime 5000x ./scheduler/server/

const benchNodes = 100

func benchPod() *corev1.Pod {
	env := make([]corev1.EnvVar, 20)
	for i := range env {
		env[i] = corev1.EnvVar{Name: fmt.Sprintf("BUILD_VAR_%d", i), Value: "some-value-of-moderate-length"}
	}
	c := func(name, image string) corev1.Container {
		return corev1.Container{
			Name: name, Image: image, Command: []string{"sh", "-c", "kiwi-ng system build --description /recipe --target-dir /out"},
			Env: env,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"),
				corev1.ResourceEphemeralStorage: resource.MustParse("20Gi"),
			}},
			VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}, {Name: "recipe", MountPath: "/recipe"}},
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "image-create-7f9c2", Namespace: "builds", UID: "0a6c1c3e-6a55-4f43-9b1e-7d1f3c2b8e11",
			Labels:      map[string]string{"job-name": "image-create", "controller-uid": "0a6c1c3e"},
			Annotations: map[string]string{rbnv1.AnnotationNativeArch: "arm64"}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{c("fetch", "registry.example.org/tools/fetch:2.1"), c("prepare", "registry.example.org/tools/prepare:2.1")},
			Containers:     []corev1.Container{c("build", "registry.example.org/kiwi/builder:9.24"), c("upload", "registry.example.org/tools/upload:2.1")},
			NodeSelector:   map[string]string{rbnv1.LabelRemoteBuildNode: "true"},
			Tolerations:    []corev1.Toleration{{Key: rbnv1.TaintRemoteBuildNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "recipe", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "recipe"}}}}},
			RestartPolicy: corev1.RestartPolicyNever,
		},
	}
}

// benchCache is a state.Cache over a fake clientset holding the cluster above.
func benchCache(b *testing.B) (*state.Cache, []string) {
	b.Helper()
	var objs []runtime.Object
	names := make([]string, benchNodes)
	for i := range benchNodes {
		names[i] = fmt.Sprintf("build-host-%03d", i)
		images := make([]string, 60)
		for j := range images {
			images[j] = fmt.Sprintf("registry.example.org/team-%d/image-%d:1.%d", j%7, j, i%3)
		}
		if i%10 == 0 {
			images = append(images, "registry.example.org/kiwi/builder:9.24")
		}
		f, _ := json.Marshal(rbnv1.HostFacts{
			ObservedAt: metav1.NewTime(time.Now()), Healthy: i%17 != 0, StorageFreeBytes: int64(i) << 30,
			TmpFreeBytes: 50 << 30, RunningPods: i % 12, Images: images,
		})
		arch := "amd64"
		if i%2 == 1 {
			arch = "arm64"
		}
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        names[i],
			Labels:      map[string]string{rbnv1.LabelRemoteBuildNode: "true", corev1.LabelArchStable: arch},
			Annotations: map[string]string{rbnv1.AnnotationHostFacts: string(f)},
		}})
		for j := range 10 {
			objs = append(objs, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("job-%d-%d", i, j), Namespace: "builds"},
				Spec:       corev1.PodSpec{NodeName: names[i]},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			})
		}
	}
	c, err := state.New(state.Config{Client: fake.NewClientset(objs...)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go c.Run(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			b.Fatal("cache not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c, names
}

// reportPercentiles reports p50 and p99 of the per-call durations.
func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	at := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

func BenchmarkExtender(b *testing.B) {
	cache, names := benchCache(b)
	h, err := New(Config{Source: cache, Policy: scheduler.Policy{MaxFactsAge: 2 * time.Minute, LoadTolerance: 2, DefaultImageSizeBytes: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(extenderv1.ExtenderArgs{Pod: benchPod(), NodeNames: &names})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("request body %d bytes", len(body))
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	client := srv.Client()

	for _, verb := range []string{"filter", "prioritize"} {
		b.Run(verb+"/handler", func(b *testing.B) {
			durations := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/"+verb, bytes.NewReader(body)))
				durations = append(durations, time.Since(start))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", verb, rec.Code, rec.Body)
				}
			}
			reportPercentiles(b, durations)
		})
		b.Run(verb+"/loopback", func(b *testing.B) {
			durations := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				resp, err := client.Post(srv.URL+"/"+verb, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				durations = append(durations, time.Since(start))
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", verb, resp.StatusCode)
				}
			}
			reportPercentiles(b, durations)
		})
	}
}
