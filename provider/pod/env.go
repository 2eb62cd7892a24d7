package pod

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// env resolves a container's environment as the kubelet does
// (makeEnvironmentVariables), which rbn must do itself: virtual-kubelet's
// resolution runs before the pod has an IP and cannot resolve status.podIP
// or status.hostIP, so the runtime switches it off.
//
// envFrom comes first, in order, then env in order, a later definition of a
// name replacing an earlier one; an env value is expanded ($(VAR)) against
// what is defined before it, then the service variables. Service variables
// the container does not define are added last.
//
// A Secret or ConfigMap that is missing and not optional is recorded with
// t.deferMissing and its variable skipped, so that the rest is still
// checked for permanent refusals; those are returned at once.
func (t *translator) env(field string, c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for k, from := range c.EnvFrom {
		f := fmt.Sprintf("%s.envFrom[%d]", field, k)
		var (
			kind, name string
			data       map[string]string
			found      bool
			optional   *bool
		)
		switch {
		case from.ConfigMapRef != nil:
			kind, name, optional = "ConfigMap", from.ConfigMapRef.Name, from.ConfigMapRef.Optional
			data, found = t.configMapEnvData(name)
		case from.SecretRef != nil:
			kind, name, optional = "Secret", from.SecretRef.Name, from.SecretRef.Optional
			data, found = t.secretEnvData(name)
		default:
			return nil, unsupported(f, ReasonInvalidSpec, "envFrom has neither configMapRef nor secretRef")
		}
		if name == "" {
			// Refused by API validation; missing, it would be awaited forever.
			return nil, unsupported(f+"."+lowerFirst(kind)+"Ref.name", ReasonInvalidSpec, "a %s name is required", kind)
		}
		if !found {
			if optional == nil || !*optional {
				t.deferMissing(missingObject(kind, t.pod.Namespace, name, ""))
			}
			continue
		}
		// In key order, so that InvalidEnvKeys reads the same every time.
		keys := make([]string, 0, len(data))
		for key := range data {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			envName := from.Prefix + key
			if !validEnvName(envName) {
				t.invalidEnvKey(kind, name, envName)
				continue
			}
			env[envName] = data[key]
		}
	}

	lookup := func(name string) (string, bool) {
		if v, ok := env[name]; ok {
			return v, true
		}
		v, ok := t.in.ServiceEnv[name]
		return v, ok
	}
	for j := range c.Env {
		e := &c.Env[j]
		// As the kubelet: a value wins over valueFrom (API validation allows
		// only one), and a variable with neither is defined empty.
		if e.Value != "" || e.ValueFrom == nil {
			env[e.Name] = expandWith(e.Value, lookup)
			continue
		}
		v, ok, err := t.envValueFrom(fmt.Sprintf("%s.env[%d].valueFrom", field, j), e.ValueFrom, c)
		if err != nil {
			return nil, err
		}
		if ok {
			env[e.Name] = v
		}
	}

	for name, v := range t.in.ServiceEnv {
		if _, ok := env[name]; !ok {
			env[name] = v
		}
	}
	if len(env) == 0 {
		return nil, nil
	}
	return env, nil
}

// envValueFrom resolves one valueFrom. ok is false when the variable is to
// be left out: an optional source that is missing, or a missing one that
// was deferred.
func (t *translator) envValueFrom(field string, src *corev1.EnvVarSource, c *corev1.Container) (string, bool, error) {
	switch {
	case src.FieldRef != nil:
		v, err := t.envFieldRef(field+".fieldRef", src.FieldRef)
		return v, err == nil, err
	case src.ResourceFieldRef != nil:
		v, err := t.resourceFieldRef(field+".resourceFieldRef", src.ResourceFieldRef, c)
		return v, err == nil, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		data, found := t.configMapEnvData(ref.Name)
		return t.keyRef(field+".configMapKeyRef", "ConfigMap", ref.Name, ref.Key, data, found, ref.Optional)
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		data, found := t.secretEnvData(ref.Name)
		return t.keyRef(field+".secretKeyRef", "Secret", ref.Name, ref.Key, data, found, ref.Optional)
	case src.FileKeyRef != nil:
		// The kubelet reads the file from the volume on its own disk; here
		// the volume lives on the build host and is filled after the plan.
		return "", false, unsupported(field+".fileKeyRef", ReasonUnsupportedField, "env from fileKeyRef is not supported on remote build nodes")
	}
	return "", false, unsupported(field, ReasonUnsupportedField, "valueFrom with no supported source")
}

// keyRef reads one key of a Secret or ConfigMap for an env variable.
func (t *translator) keyRef(field, kind, name, key string, data map[string]string, found bool, optional *bool) (string, bool, error) {
	// Both are required by API validation; missing, an object of no name
	// would be awaited forever.
	switch {
	case name == "":
		return "", false, unsupported(field+".name", ReasonInvalidSpec, "a %s name is required", kind)
	case key == "":
		return "", false, unsupported(field+".key", ReasonInvalidSpec, "a key of %s %s is required", kind, name)
	}
	isOptional := optional != nil && *optional
	if !found {
		if !isOptional {
			t.deferMissing(missingObject(kind, t.pod.Namespace, name, ""))
		}
		return "", false, nil
	}
	v, ok := data[key]
	if !ok && !isOptional {
		t.deferMissing(missingObject(kind, t.pod.Namespace, name, key))
	}
	return v, ok, nil
}

// configMapEnvData is what env reads of a ConfigMap: its data, not its
// binaryData, as the kubelet. The cluster CA in Input.CACert stands in for a
// kube-root-ca.crt the caller did not pass, as for volumes.
func (t *translator) configMapEnvData(name string) (map[string]string, bool) {
	if cm := t.in.ConfigMaps[name]; cm != nil {
		return cm.Data, true
	}
	if name == kubeRootCAConfigMap && len(t.in.CACert) > 0 {
		return map[string]string{"ca.crt": string(t.in.CACert)}, true
	}
	return nil, false
}

func (t *translator) secretEnvData(name string) (map[string]string, bool) {
	s := t.in.Secrets[name]
	if s == nil {
		return nil, false
	}
	data := make(map[string]string, len(s.Data))
	for k, v := range s.Data {
		data[k] = string(v)
	}
	return data, true
}

// validEnvName is the API's rule for env names since
// RelaxedEnvironmentVariableValidation (GA in 1.34): printable ASCII but
// '='. The kubelet no longer filters envFrom keys at all; Secret and
// ConfigMap keys and envFrom prefixes that pass API validation always pass
// this. It stays as a guard, because a name with '=' or a control character
// would corrupt the NAME=value list handed to podman.
func validEnvName(name string) bool {
	return len(validation.IsRelaxedEnvVarName(name)) == 0
}

// invalidEnvKey records a key envFrom skipped, once per object and name.
func (t *translator) invalidEnvKey(kind, objName, envName string) {
	s := fmt.Sprintf("%s %s: key %q", lowerFirst(kind), objName, envName)
	if t.invalidSeen == nil {
		t.invalidSeen = map[string]bool{}
	}
	if t.invalidSeen[s] {
		return
	}
	t.invalidSeen[s] = true
	t.invalidEnvKeys = append(t.invalidEnvKeys, s)
}

// deferMissing keeps the first missing object met, to be reported only if
// nothing permanent is wrong with the pod.
func (t *translator) deferMissing(m *MissingObjectError) {
	if t.missing == nil {
		t.missing = m
	}
}
