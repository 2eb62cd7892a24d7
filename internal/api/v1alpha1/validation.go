package v1alpha1

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-helpers/node/util/sysctl"

	"github.com/remote-build-nodes/rbn/internal/imageref"
)

// hostLabels are set from the host's own facts and may not be overridden.
var hostLabels = sets.New(corev1.LabelArchStable, corev1.LabelOSStable, corev1.LabelHostname, LabelRemoteBuildNode, LabelNode)

var reservable = sets.New(corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage)

// Validate checks a defaulted RemoteBuildNode and reports every problem at once.
func Validate(name string, spec *RemoteBuildNodeSpec) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(name) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), name, msg))
	}
	p := field.NewPath("spec")
	errs = append(errs, validateAddress(p.Child("address"), spec.Address)...)
	if spec.Port < 1 || spec.Port > 65535 {
		errs = append(errs, field.Invalid(p.Child("port"), spec.Port, "must be between 1 and 65535"))
	}
	if spec.User == "" || strings.ContainsAny(spec.User, " \t\n@:") {
		errs = append(errs, field.Invalid(p.Child("user"), spec.User, "must be a non-empty user name"))
	}
	ref := p.Child("sshSecretRef")
	for _, msg := range validation.IsDNS1123Subdomain(spec.SSHSecretRef.Name) {
		errs = append(errs, field.Invalid(ref.Child("name"), spec.SSHSecretRef.Name, msg))
	}
	for _, msg := range validation.IsDNS1123Label(spec.SSHSecretRef.Namespace) {
		errs = append(errs, field.Invalid(ref.Child("namespace"), spec.SSHSecretRef.Namespace, msg))
	}
	if !path.IsAbs(spec.PodmanSocket) {
		errs = append(errs, field.Invalid(p.Child("podmanSocket"), spec.PodmanSocket, "must be an absolute path"))
	}
	errs = append(errs, metav1validation.ValidateLabels(spec.Labels, p.Child("labels"))...)
	for k := range spec.Labels {
		if hostLabels.Has(k) {
			errs = append(errs, field.Forbidden(p.Child("labels").Key(k), "set by rbn from the host itself"))
		}
	}
	errs = append(errs, validateTaints(p.Child("taints"), spec.Taints)...)
	if spec.MaxPods < 1 {
		errs = append(errs, field.Invalid(p.Child("maxPods"), spec.MaxPods, "must be at least 1"))
	}
	for name, q := range spec.Reserved {
		fp := p.Child("reserved").Key(string(name))
		if !reservable.Has(name) {
			errs = append(errs, field.NotSupported(fp, name, sets.List(reservable)))
		}
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(fp, q.String(), "must not be negative"))
		}
	}
	switch spec.ImagePull {
	case ImagePullDirect, ImagePullThroughKubelet:
	default:
		errs = append(errs, field.NotSupported(p.Child("imagePull"), spec.ImagePull,
			[]ImagePullMode{ImagePullDirect, ImagePullThroughKubelet}))
	}
	for i, dir := range spec.HostPathAllowlist {
		fp := p.Child("hostPathAllowlist").Index(i)
		switch {
		case !path.IsAbs(dir):
			errs = append(errs, field.Invalid(fp, dir, "must be an absolute path"))
		case path.Clean(dir) != dir:
			errs = append(errs, field.Invalid(fp, dir, "must be a clean path (no trailing slash, '.', '..' or '//')"))
		case dir == "/":
			errs = append(errs, field.Forbidden(fp, "allowing / would expose the whole host"))
		}
	}
	if v := spec.Volumes; v != nil {
		fp := p.Child("volumes")
		switch {
		case !path.IsAbs(v.Root):
			errs = append(errs, field.Invalid(fp.Child("root"), v.Root, "must be an absolute path"))
		case path.Clean(v.Root) != v.Root:
			errs = append(errs, field.Invalid(fp.Child("root"), v.Root, "must be a clean path (no trailing slash, '.', '..' or '//')"))
		case v.Root == "/":
			errs = append(errs, field.Forbidden(fp.Child("root"), "volumes need a directory of their own"))
		}
		switch v.SizeLimit {
		case VolumeSizeLimitLoopFile, VolumeSizeLimitNone:
		default:
			errs = append(errs, field.NotSupported(fp.Child("sizeLimit"), v.SizeLimit,
				[]VolumeSizeLimit{VolumeSizeLimitLoopFile, VolumeSizeLimitNone}))
		}
	}
	errs = append(errs, validateUnsafeSysctls(p.Child("allowedUnsafeSysctls"), spec.AllowedUnsafeSysctls)...)
	if q := spec.ContainerLogMaxSize; q != nil && q.Cmp(MinContainerLogMaxSize) < 0 {
		errs = append(errs, field.Invalid(p.Child("containerLogMaxSize"), q.String(), "must be at least "+MinContainerLogMaxSize.String()))
	}
	errs = append(errs, validateImageGC(p.Child("imageGC"), spec.ImageGC)...)
	if d := spec.DiskPressure; d != nil && d.AvailableBelow != "" {
		if _, err := DiskThreshold(d.AvailableBelow, 0); err != nil {
			errs = append(errs, field.Invalid(p.Child("diskPressure", "availableBelow"), d.AvailableBelow, err.Error()))
		}
	}
	return errs
}

// validateImageGC applies the kubelet's rules for its image garbage
// collection settings.
func validateImageGC(fp *field.Path, gc *ImageGCSpec) field.ErrorList {
	if gc == nil {
		return nil
	}
	var errs field.ErrorList
	high, low := gc.HighThresholdPercent, gc.LowThresholdPercent
	for _, th := range []struct {
		name string
		v    *int32
	}{{"highThresholdPercent", high}, {"lowThresholdPercent", low}} {
		if th.v != nil && (*th.v < 0 || *th.v > 100) {
			errs = append(errs, field.Invalid(fp.Child(th.name), *th.v, "must be between 0 and 100"))
		}
	}
	if high != nil && low != nil && *low >= *high {
		errs = append(errs, field.Invalid(fp.Child("lowThresholdPercent"), *low,
			fmt.Sprintf("must be below highThresholdPercent (%d)", *high)))
	}
	for _, d := range []struct {
		name string
		v    *metav1.Duration
	}{{"minimumAge", gc.MinimumAge}, {"maximumAge", gc.MaximumAge}} {
		if d.v != nil && d.v.Duration < 0 {
			errs = append(errs, field.Invalid(fp.Child(d.name), d.v.Duration.String(), "must not be negative"))
		}
	}
	if gc.MinimumAge != nil && gc.MaximumAge != nil && gc.MaximumAge.Duration > 0 && gc.MaximumAge.Duration < gc.MinimumAge.Duration {
		errs = append(errs, field.Invalid(fp.Child("maximumAge"), gc.MaximumAge.Duration.String(),
			fmt.Sprintf("must be 0 or at least minimumAge (%s)", gc.MinimumAge.Duration)))
	}
	for i, ref := range gc.Pinned {
		if _, err := imageref.Normalize(ref); err != nil {
			errs = append(errs, field.Invalid(fp.Child("pinned").Index(i), ref, err.Error()))
		}
	}
	return errs
}

// validateUnsafeSysctls applies the kubelet's rule for
// --allowed-unsafe-sysctls: namespaced sysctls only, since any other would
// change the build host's kernel for everything on it. A user namespace's
// are refused too: pods share the host's (hostUsers: false is refused).
func validateUnsafeSysctls(fp *field.Path, allowed []string) field.ErrorList {
	var errs field.ErrorList
	for i, name := range allowed {
		ip := fp.Index(i)
		if j := strings.IndexByte(name, '*'); j >= 0 && j != len(name)-1 {
			errs = append(errs, field.Invalid(ip, name, "'*' may only end a prefix"))
			continue
		}
		switch ns, _, _ := sysctl.GetNamespace(name); ns {
		case sysctl.NetNamespace, sysctl.IPCNamespace, sysctl.UTSNamespace:
		default:
			errs = append(errs, field.Invalid(ip, name, "not a sysctl of a network, IPC or UTS namespace, which pods have to themselves"))
		}
	}
	return errs
}

func validateAddress(fp *field.Path, addr string) field.ErrorList {
	if addr == "" {
		return field.ErrorList{field.Required(fp, "the host's DNS name or IP address")}
	}
	if strings.ContainsAny(addr, " /@[]") {
		return field.ErrorList{field.Invalid(fp, addr, "must be a DNS name or an IP address, without port or user")}
	}
	if validation.IsValidIP(fp, addr) == nil {
		return nil
	}
	if strings.Contains(addr, ":") {
		return field.ErrorList{field.Invalid(fp, addr, "is neither a valid IP address nor a DNS name; put the port in spec.port")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(strings.ToLower(addr)) {
		errs = append(errs, field.Invalid(fp, addr, msg))
	}
	return errs
}

func validateTaints(fp *field.Path, taints []corev1.Taint) field.ErrorList {
	var errs field.ErrorList
	seen := sets.New[string]()
	for i, t := range taints {
		tp := fp.Index(i)
		for _, msg := range validation.IsQualifiedName(t.Key) {
			errs = append(errs, field.Invalid(tp.Child("key"), t.Key, msg))
		}
		if t.Value != "" {
			for _, msg := range validation.IsValidLabelValue(t.Value) {
				errs = append(errs, field.Invalid(tp.Child("value"), t.Value, msg))
			}
		}
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect,
				[]corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}))
		}
		if k := t.Key + ":" + string(t.Effect); seen.Has(k) {
			errs = append(errs, field.Duplicate(tp, k))
		} else {
			seen.Insert(k)
		}
	}
	return errs
}

// ReservedOrZero returns the reserve of a resource, zero when unset.
func (s *RemoteBuildNodeSpec) ReservedOrZero(name corev1.ResourceName) resource.Quantity {
	if q, ok := s.Reserved[name]; ok {
		return q
	}
	return resource.Quantity{}
}
