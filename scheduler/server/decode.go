package server

import (
	"encoding/json"
	"io"

	corev1 "k8s.io/api/core/v1"
)

// args is extenderv1.ExtenderArgs with only the pod fields the decisions
// read (scheduler.NeedsOf, scheduler.ClaimNames): the JSON decoder skips
// everything else without allocating it. Whole pods (env, volume sources,
// status, managed fields) made up most of a call's time and garbage, and so
// of its tail latency. The field names are ExtenderArgs' Go names, and the
// pod's its JSON tags.
type args struct {
	Pod       *podFields
	Nodes     *corev1.NodeList
	NodeNames *[]string
}

type podFields struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		InitContainers []containerFields            `json:"initContainers"`
		Containers     []containerFields            `json:"containers"`
		Overhead       corev1.ResourceList          `json:"overhead"`
		Resources      *corev1.ResourceRequirements `json:"resources"`
		Volumes        []volumeFields               `json:"volumes"`
	} `json:"spec"`
}

// volumeFields is what scheduler.ClaimNames reads of a volume: its name,
// and which claim it uses. An ephemeral volume's template is skipped: only
// its presence matters (its claim is named after the pod and the volume).
type volumeFields struct {
	Name                  string `json:"name"`
	PersistentVolumeClaim *struct {
		ClaimName string `json:"claimName"`
	} `json:"persistentVolumeClaim"`
	Ephemeral *struct{} `json:"ephemeral"`
}

type containerFields struct {
	Image         string                         `json:"image"`
	Resources     corev1.ResourceRequirements    `json:"resources"`
	RestartPolicy *corev1.ContainerRestartPolicy `json:"restartPolicy"`
}

func decodeArgs(r io.Reader) (*args, error) {
	var a args
	if err := json.NewDecoder(r).Decode(&a); err != nil {
		return nil, err
	}
	return &a, nil
}

// pod is the part of the Pod that was decoded.
func (p *podFields) pod() *corev1.Pod {
	out := &corev1.Pod{}
	out.Name, out.Namespace, out.Annotations = p.Metadata.Name, p.Metadata.Namespace, p.Metadata.Annotations
	out.Spec.Overhead, out.Spec.Resources = p.Spec.Overhead, p.Spec.Resources
	conv := func(in []containerFields) []corev1.Container {
		cs := make([]corev1.Container, len(in))
		for i, c := range in {
			cs[i] = corev1.Container{Image: c.Image, Resources: c.Resources, RestartPolicy: c.RestartPolicy}
		}
		return cs
	}
	out.Spec.InitContainers, out.Spec.Containers = conv(p.Spec.InitContainers), conv(p.Spec.Containers)
	for _, v := range p.Spec.Volumes {
		vol := corev1.Volume{Name: v.Name}
		switch {
		case v.PersistentVolumeClaim != nil:
			vol.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v.PersistentVolumeClaim.ClaimName}
		case v.Ephemeral != nil:
			vol.Ephemeral = &corev1.EphemeralVolumeSource{}
		default:
			continue // no claim: nothing the decisions read
		}
		out.Spec.Volumes = append(out.Spec.Volumes, vol)
	}
	return out
}
