package pod

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// ReferencedObjects names the Secrets and ConfigMaps of the pod's namespace
// that Translate reads, sorted and without duplicates: those of secret,
// configMap and projected volumes and of the env (valueFrom) and envFrom
// of every container, init container and ephemeral container. The caller
// fetches them into Input.Secrets and Input.ConfigMaps, with the Secret of
// the pod's S3 transfers (TransfersSecret), which is not the node's to
// read: the pod names it in an annotation, not in its spec.
// imagePullSecrets are left out: they are the runtime's, for pulling, not
// Translate's.
func ReferencedObjects(pd *corev1.Pod) (secrets, configMaps []string) {
	s, cm := map[string]bool{}, map[string]bool{}
	for _, v := range pd.Spec.Volumes {
		switch {
		case v.Secret != nil:
			s[v.Secret.SecretName] = true
		case v.ConfigMap != nil:
			cm[v.ConfigMap.Name] = true
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				switch {
				case src.Secret != nil:
					s[src.Secret.Name] = true
				case src.ConfigMap != nil:
					cm[src.ConfigMap.Name] = true
				}
			}
		}
	}
	containers := [][]corev1.Container{pd.Spec.InitContainers, pd.Spec.Containers, nil}
	for i := range pd.Spec.EphemeralContainers {
		containers[2] = append(containers[2], corev1.Container(pd.Spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
	for _, cs := range containers {
		for i := range cs {
			c := &cs[i]
			for _, from := range c.EnvFrom {
				switch {
				case from.SecretRef != nil:
					s[from.SecretRef.Name] = true
				case from.ConfigMapRef != nil:
					cm[from.ConfigMapRef.Name] = true
				}
			}
			for _, e := range c.Env {
				switch {
				case e.ValueFrom == nil:
				case e.ValueFrom.SecretKeyRef != nil:
					s[e.ValueFrom.SecretKeyRef.Name] = true
				case e.ValueFrom.ConfigMapKeyRef != nil:
					cm[e.ValueFrom.ConfigMapKeyRef.Name] = true
				}
			}
		}
	}
	return sortedKeys(s), sortedKeys(cm)
}

// sortedKeys returns the non-empty keys of set, sorted; nil when there are none.
func sortedKeys(set map[string]bool) []string {
	var out []string
	for k := range set {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
