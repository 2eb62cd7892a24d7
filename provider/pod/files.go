package pod

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// defaultFileMode is the API's default for defaultMode of secret, configMap,
// downwardAPI and projected volumes (0644).
const defaultFileMode int32 = 0o644

// kubeRootCAConfigMap is the ConfigMap every namespace gets with the cluster
// CA; the default service-account projected volume reads ca.crt from it.
const kubeRootCAConfigMap = "kube-root-ca.crt"

// fileSet collects the files of one volume by path. A later file replaces an
// earlier one at the same path, as in the kubelet's payload map.
type fileSet map[string]File

func (fs fileSet) add(field, p string, data []byte, mode int32) error {
	if err := validateFilePath(p); err != nil {
		return unsupported(field, ReasonInvalidSpec, "%v", err)
	}
	if mode < 0 || mode > 0o777 {
		return unsupported(field, ReasonInvalidSpec, "file mode %#o of %q is outside 0-0777", mode, p)
	}
	fs[p] = File{Path: p, Data: data, Mode: mode}
	return nil
}

// sorted returns the files by path, refusing a file that would have to be a
// directory for another one ("a" and "a/b"): the loader could not write both.
func (fs fileSet) sorted(field string) ([]File, error) {
	out := make([]File, 0, len(fs))
	for _, f := range fs {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	for i := range out {
		for j := i + 1; j < len(out) && strings.HasPrefix(out[j].Path, out[i].Path); j++ {
			if strings.HasPrefix(out[j].Path, out[i].Path+"/") {
				return nil, unsupported(field, ReasonInvalidSpec, "file %q would have to be the directory of %q", out[i].Path, out[j].Path)
			}
		}
	}
	return out, nil
}

func modeOr(mode *int32) int32 {
	if mode == nil {
		return defaultFileMode
	}
	return *mode
}

// files builds the content of a secret, configMap, downwardAPI or projected
// volume, following the kubelet's volume plugins (MakePayload, CollectData).
func (t *translator) files(field string, src *corev1.VolumeSource) ([]File, error) {
	if err := checkFileOwners(field, src); err != nil {
		return nil, err
	}
	fs := fileSet{}
	var err error
	switch {
	case src.Secret != nil:
		s := src.Secret
		if s.SecretName == "" { // keyFiles would say .name: a Secret volume's is secretName
			return nil, unsupported(field+".secret.secretName", ReasonInvalidSpec, "a Secret name is required")
		}
		err = t.secretFiles(fs, field+".secret", s.SecretName, s.Items, modeOr(s.DefaultMode), s.Optional)
	case src.ConfigMap != nil:
		c := src.ConfigMap
		err = t.configMapFiles(fs, field+".configMap", c.Name, c.Items, modeOr(c.DefaultMode), c.Optional)
	case src.DownwardAPI != nil:
		err = t.downwardAPIFiles(fs, field+".downwardAPI", src.DownwardAPI.Items, modeOr(src.DownwardAPI.DefaultMode))
	case src.Projected != nil:
		err = t.projectedFiles(fs, field+".projected", src.Projected)
	}
	if err != nil {
		return nil, err
	}
	return fs.sorted(field)
}

func (t *translator) secretFiles(fs fileSet, field, name string, items []corev1.KeyToPath, mode int32, optional *bool) error {
	var data map[string][]byte
	s, found := t.in.Secrets[name]
	if found && s != nil {
		data = s.Data
	}
	return t.keyFiles(fs, field, "Secret", name, data, found && s != nil, items, mode, optional)
}

func (t *translator) configMapFiles(fs fileSet, field, name string, items []corev1.KeyToPath, mode int32, optional *bool) error {
	cm, found := t.in.ConfigMaps[name]
	found = found && cm != nil
	data := map[string][]byte{}
	switch {
	case found:
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		for k, v := range cm.BinaryData {
			data[k] = v
		}
	case name == kubeRootCAConfigMap && len(t.in.CACert) > 0:
		// The caller may hand the cluster CA over instead of the ConfigMap.
		data["ca.crt"] = t.in.CACert
		found = true
	}
	return t.keyFiles(fs, field, "ConfigMap", name, data, found, items, mode, optional)
}

// keyFiles writes the keys of a Secret or ConfigMap: all keys under their own
// names when there are no items, else the listed keys at their paths. A
// missing object or key is skipped when optional and an error otherwise.
func (t *translator) keyFiles(fs fileSet, field, kind, name string, data map[string][]byte, found bool, items []corev1.KeyToPath, mode int32, optional *bool) error {
	// Required by API validation; missing, an object of no name would be
	// awaited forever.
	if name == "" {
		return unsupported(field+".name", ReasonInvalidSpec, "a %s name is required", kind)
	}
	isOptional := optional != nil && *optional
	if !found {
		if isOptional {
			return nil
		}
		return missingObject(kind, t.pod.Namespace, name, "")
	}
	if len(items) == 0 {
		// In key order, so that a bad key is reported the same way every time.
		keys := make([]string, 0, len(data))
		for key := range data {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			if err := fs.add(field, key, data[key], mode); err != nil {
				return err
			}
		}
		return nil
	}
	for j, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if isOptional {
				continue
			}
			return missingObject(kind, t.pod.Namespace, name, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		if err := fs.add(fmt.Sprintf("%s.items[%d].path", field, j), it.Path, v, m); err != nil {
			return err
		}
	}
	return nil
}

func (t *translator) downwardAPIFiles(fs fileSet, field string, items []corev1.DownwardAPIVolumeFile, mode int32) error {
	for j, it := range items {
		f := fmt.Sprintf("%s.items[%d]", field, j)
		var (
			data string
			err  error
		)
		switch {
		case it.FieldRef != nil:
			data, err = t.fieldRef(f+".fieldRef.fieldPath", it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			data, err = t.resourceFieldRef(f+".resourceFieldRef", it.ResourceFieldRef, nil)
		default:
			err = unsupported(f, ReasonInvalidSpec, "downwardAPI item %q has neither fieldRef nor resourceFieldRef", it.Path)
		}
		if err != nil {
			return err
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		if err := fs.add(f+".path", it.Path, []byte(data), m); err != nil {
			return err
		}
	}
	return nil
}

func (t *translator) projectedFiles(fs fileSet, field string, src *corev1.ProjectedVolumeSource) error {
	mode := modeOr(src.DefaultMode)
	for k, s := range src.Sources {
		f := fmt.Sprintf("%s.sources[%d]", field, k)
		var err error
		switch {
		case s.Secret != nil:
			err = t.secretFiles(fs, f+".secret", s.Secret.Name, s.Secret.Items, mode, s.Secret.Optional)
		case s.ConfigMap != nil:
			err = t.configMapFiles(fs, f+".configMap", s.ConfigMap.Name, s.ConfigMap.Items, mode, s.ConfigMap.Optional)
		case s.DownwardAPI != nil:
			err = t.downwardAPIFiles(fs, f+".downwardAPI", s.DownwardAPI.Items, mode)
		case s.ServiceAccountToken != nil:
			if err := t.oneToken(f+".serviceAccountToken", s.ServiceAccountToken); err != nil {
				return err
			}
			if t.in.ServiceAccountToken == "" {
				return fmt.Errorf("%s: %w", f+".serviceAccountToken", ErrNoServiceAccountToken)
			}
			err = fs.add(f+".serviceAccountToken.path", s.ServiceAccountToken.Path, []byte(t.in.ServiceAccountToken), mode)
		case s.ClusterTrustBundle != nil:
			err = unsupported(f+".clusterTrustBundle", ReasonUnsupportedVolume, "clusterTrustBundle projections are not supported")
		case s.PodCertificate != nil:
			err = unsupported(f+".podCertificate", ReasonUnsupportedVolume, "podCertificate projections are not supported")
		default:
			err = unsupported(f, ReasonUnsupportedVolume, "projection with no supported source")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// oneToken refuses a second serviceAccountToken projection that asks for a
// different token than the first: the runtime requests one token per pod
// (for the first projection), and would write it where another audience or
// lifetime was asked for.
func (t *translator) oneToken(field string, p *corev1.ServiceAccountTokenProjection) error {
	if t.token == nil {
		t.token, t.tokenField = p, field
		return nil
	}
	if p.Audience != t.token.Audience || !ptrEqual(p.ExpirationSeconds, t.token.ExpirationSeconds) {
		return unsupported(field, ReasonUnsupportedVolume,
			"a second serviceAccountToken projection with another audience or expirationSeconds than %s is not supported (one token per pod)", t.tokenField)
	}
	return nil
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// checkFileOwners refuses the owner fields of a files volume (defaultUser,
// items[].user, ...): the files are written owned by the host user podman
// runs as (root inside the container), and choosing another owner is not
// implemented. Found in field order.
func checkFileOwners(field string, src *corev1.VolumeSource) error {
	refuse := func(f string) error {
		return unsupported(f, ReasonUnsupportedVolume, "file owners (defaultUser, user) are not supported: the files belong to root")
	}
	items := func(f string, its []corev1.KeyToPath) error {
		for j := range its {
			if its[j].User != nil {
				return refuse(fmt.Sprintf("%s.items[%d].user", f, j))
			}
		}
		return nil
	}
	downward := func(f string, its []corev1.DownwardAPIVolumeFile) error {
		for j := range its {
			if its[j].User != nil {
				return refuse(fmt.Sprintf("%s.items[%d].user", f, j))
			}
		}
		return nil
	}
	switch {
	case src.Secret != nil:
		if src.Secret.DefaultUser != nil {
			return refuse(field + ".secret.defaultUser")
		}
		return items(field+".secret", src.Secret.Items)
	case src.ConfigMap != nil:
		if src.ConfigMap.DefaultUser != nil {
			return refuse(field + ".configMap.defaultUser")
		}
		return items(field+".configMap", src.ConfigMap.Items)
	case src.DownwardAPI != nil:
		if src.DownwardAPI.DefaultUser != nil {
			return refuse(field + ".downwardAPI.defaultUser")
		}
		return downward(field+".downwardAPI", src.DownwardAPI.Items)
	case src.Projected != nil:
		if src.Projected.DefaultUser != nil {
			return refuse(field + ".projected.defaultUser")
		}
		for k, s := range src.Projected.Sources {
			f := fmt.Sprintf("%s.projected.sources[%d]", field, k)
			var err error
			switch {
			case s.Secret != nil:
				err = items(f+".secret", s.Secret.Items)
			case s.ConfigMap != nil:
				err = items(f+".configMap", s.ConfigMap.Items)
			case s.DownwardAPI != nil:
				err = downward(f+".downwardAPI", s.DownwardAPI.Items)
			case s.ServiceAccountToken != nil && s.ServiceAccountToken.User != nil:
				err = refuse(f + ".serviceAccountToken.user")
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// RenderFiles renders the files of the pod's secret, configMap, downwardAPI
// and projected volumes from in, as Translate does, by volume name: the
// runtime writes them again while the pod runs, as kubelet's periodic
// remount does. Each volume stands alone: one that cannot be rendered now
// (a Secret deleted since the pod started) is in errs, not in files, and
// keeps on the host what it last had, as on a kubelet.
func RenderFiles(in Input) (files map[string][]File, errs map[string]error) {
	files, errs = map[string][]File{}, map[string]error{}
	if in.Pod == nil {
		return files, errs
	}
	t := &translator{in: in, pod: in.Pod}
	for i := range in.Pod.Spec.Volumes {
		v := &in.Pod.Spec.Volumes[i]
		if src := &v.VolumeSource; src.Secret == nil && src.ConfigMap == nil && src.DownwardAPI == nil && src.Projected == nil {
			continue
		}
		fs, err := t.volumeFiles(i)
		if err != nil {
			errs[v.Name] = err
			continue
		}
		files[v.Name] = fs
	}
	return files, errs
}
