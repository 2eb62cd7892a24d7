package framework

import (
	"runtime"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// TestImage is on every local build host (hack/hosts.sh); not :latest, so
// that the default pull policy is IfNotPresent as for any pinned build image.
const TestImage = "localhost/rbn/busybox:1.0"

// PodSpec and TemplateSpec are the scheduling boilerplate every pod on a
// remote build node carries, as YAML lines for a pod's spec (PodSpec) or a
// Job's pod template (TemplateSpec). They pin the pod to the nodes of this
// machine's architecture, the stack's ordinary hosts': a test that
// registers an emulated aarch64 host (e2e/arm64_test.go) leaves the other
// tests' pods where they expect to run.
var (
	PodSpec = `
  nodeSelector: {rbn.dev/remote-build-node: "true", kubernetes.io/arch: ` + runtime.GOARCH + `}
  tolerations: [{key: rbn.dev/remote-build-node, operator: Exists, effect: NoSchedule}]`
	TemplateSpec = `
      nodeSelector: {rbn.dev/remote-build-node: "true", kubernetes.io/arch: ` + runtime.GOARCH + `}
      tolerations: [{key: rbn.dev/remote-build-node, operator: Exists, effect: NoSchedule}]`
)

// RemoteNodePlacement sets the scheduling boilerplate of PodSpec on spec:
// the node selector (a remote build node of this machine's architecture)
// and the toleration of the default taint.
func RemoteNodePlacement(spec *corev1.PodSpec) {
	ArchPlacement(spec, runtime.GOARCH)
}

// ArchPlacement is RemoteNodePlacement for a remote build node of
// architecture arch (as Kubernetes names it: amd64, arm64).
func ArchPlacement(spec *corev1.PodSpec, arch string) {
	spec.NodeSelector = map[string]string{rbnv1.LabelRemoteBuildNode: "true", corev1.LabelArchStable: arch}
	spec.Tolerations = []corev1.Toleration{{Key: rbnv1.TaintRemoteBuildNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
}

// OnNode requires, through the scheduler, that the pod run on node: a
// required node affinity on the node's name (every local node has the same
// kubernetes.io/hostname).
func OnNode(spec *corev1.PodSpec, node string) {
	spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}}},
	}}
}

// JobPod is a job-shaped pod (restartPolicy Never, grace period 0) running
// command in TestImage on a remote build node; on node when node is set.
func JobPod(ns, name, node string, labels map[string]string, command []string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "main", Image: TestImage, Command: command}},
		},
	}
	RemoteNodePlacement(&p.Spec)
	if node != "" {
		OnNode(&p.Spec, node)
	}
	return p
}
