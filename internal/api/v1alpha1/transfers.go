package v1alpha1

import (
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// AnnotationTransfers is the pod annotation that declares S3 transfers:
// objects fetched into the pod's volumes before its first container starts,
// and files of its volumes uploaded once its containers have succeeded. Its
// value is a Transfers document, JSON or YAML.
const AnnotationTransfers = GroupName + "/transfers"

// KindTransfers is the kind of the annotation's document.
const KindTransfers = "Transfers"

// Keys of the Secret that Transfers.SecretName names. The Secret stays in
// rbn-kubelet: the build host never sees it.
const (
	// S3KeyEndpoint: the S3 service's URL, http(s)://host[:port]; empty or
	// absent means AWS for the region.
	S3KeyEndpoint = "endpoint"
	// S3KeyRegion: the signing region. Default us-east-1.
	S3KeyRegion = "region"
	// S3KeyAccessKeyID and S3KeySecretAccessKey are required.
	S3KeyAccessKeyID     = "accessKeyID"
	S3KeySecretAccessKey = "secretAccessKey"
	// S3KeySessionToken: for temporary credentials.
	S3KeySessionToken = "sessionToken"
	// S3KeyCABundle: PEM certificates that replace the system roots.
	S3KeyCABundle = "caBundle"
	// S3KeyForcePathStyle: "true" or "false". Default: true when endpoint
	// is set (on-premises servers rarely have wildcard DNS), false for AWS.
	S3KeyForcePathStyle = "forcePathStyle"
)

// Unpack and output formats.
const (
	// FormatFile (the default) is the object as a file, byte for byte.
	FormatFile = "file"
	// FormatTar is a tar archive; FormatTarGz the same, gzip-compressed.
	FormatTar   = "tar"
	FormatTarGz = "tar.gz"
)

// Transfers declares a pod's S3 transfers (annotation rbn.dev/transfers).
//
//	apiVersion: rbn.dev/v1alpha1
//	kind: Transfers
//	secretName: s3-credentials
//	inputs:
//	- {bucket: recipes, key: demo/config.kiwi, volume: work, path: recipe/config.kiwi}
//	- {bucket: recipes, key: demo/root.tar.gz, volume: work, path: root, unpack: tar.gz}
//	outputs:
//	- {volume: work, path: result/image.raw, bucket: images, key: demo/image.raw}
//	- {volume: work, path: result, bucket: images, key: demo/result.tar, format: tar}
type Transfers struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// SecretName names a Secret in the pod's namespace with the S3
	// endpoint and credentials (keys S3Key*).
	SecretName string `json:"secretName"`
	// Inputs are fetched in order before any container starts.
	Inputs []TransferInput `json:"inputs,omitempty"`
	// Outputs are uploaded in order after every container succeeded, before
	// the pod is reported Succeeded. They need restartPolicy Never or OnFailure.
	Outputs []TransferOutput `json:"outputs,omitempty"`
}

// TransferInput fetches one object into a volume.
type TransferInput struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	// Volume is one of the pod's emptyDir volumes (not medium: Memory).
	Volume string `json:"volume"`
	// Path, relative to the volume, is the file written (unpack "" or
	// "file"), or the directory the archive is unpacked into ("" or "." for
	// the volume's root). Parent directories are created.
	Path string `json:"path,omitempty"`
	// Unpack is "file" (default), "tar" or "tar.gz".
	Unpack string `json:"unpack,omitempty"`
}

// TransferOutput uploads a file or directory of a volume.
type TransferOutput struct {
	Volume string `json:"volume"`
	// Path, relative to the volume ("" or "." for its root).
	Path   string `json:"path,omitempty"`
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	// Format is "file" (default: Path must be a regular file, uploaded as
	// it is), "tar" or "tar.gz" (Path, a file or a directory, archived with
	// names relative to it).
	Format string `json:"format,omitempty"`
}

// ParseTransfers decodes the annotation's value strictly (unknown fields
// are errors), applies defaults and validates it against the pod.
func ParseTransfers(value string, spec *corev1.PodSpec) (*Transfers, field.ErrorList) {
	fp := field.NewPath("metadata", "annotations").Key(AnnotationTransfers)
	t := &Transfers{}
	if err := yaml.UnmarshalStrict([]byte(value), t); err != nil {
		return nil, field.ErrorList{field.Invalid(fp, shorten(value), "not a Transfers document: "+err.Error())}
	}
	DefaultTransfers(t)
	if errs := ValidateTransfers(fp, t, spec); len(errs) > 0 {
		return nil, errs
	}
	return t, nil
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return strings.TrimSpace(s)
}

// DefaultTransfers fills unset optional fields. An empty list is no list
// (`inputs: []` reads as no inputs), so that a Transfers encodes and reads
// back as the same value: the lists are omitted when empty.
func DefaultTransfers(t *Transfers) {
	if len(t.Inputs) == 0 {
		t.Inputs = nil
	}
	if len(t.Outputs) == 0 {
		t.Outputs = nil
	}
	for i := range t.Inputs {
		if t.Inputs[i].Unpack == "" {
			t.Inputs[i].Unpack = FormatFile
		}
		t.Inputs[i].Path = cleanRel(t.Inputs[i].Path)
	}
	for i := range t.Outputs {
		if t.Outputs[i].Format == "" {
			t.Outputs[i].Format = FormatFile
		}
		t.Outputs[i].Path = cleanRel(t.Outputs[i].Path)
	}
}

func cleanRel(p string) string {
	if p == "" {
		return "."
	}
	// A ".." component, not any "..": a name such as "v1..2" is cleaned too,
	// for the runtime takes Path as clean (Reroot's dir).
	if slices.Contains(strings.Split(p, "/"), "..") || path.IsAbs(p) {
		return p // left for validation to refuse
	}
	return path.Clean(p)
}

var formats = []string{FormatFile, FormatTar, FormatTarGz}

// ValidateTransfers checks a defaulted Transfers against the pod it
// belongs to and reports every problem at once.
func ValidateTransfers(fp *field.Path, t *Transfers, spec *corev1.PodSpec) field.ErrorList {
	var errs field.ErrorList
	if t.APIVersion != SchemeGroupVersion.String() {
		errs = append(errs, field.NotSupported(fp.Child("apiVersion"), t.APIVersion, []string{SchemeGroupVersion.String()}))
	}
	if t.Kind != KindTransfers {
		errs = append(errs, field.NotSupported(fp.Child("kind"), t.Kind, []string{KindTransfers}))
	}
	for _, msg := range validation.IsDNS1123Subdomain(t.SecretName) {
		errs = append(errs, field.Invalid(fp.Child("secretName"), t.SecretName, msg))
	}
	if len(t.Inputs)+len(t.Outputs) == 0 {
		errs = append(errs, field.Required(fp.Child("inputs"), "at least one input or output"))
	}
	emptyDirs, memory := sets.New[string](), sets.New[string]()
	for _, v := range spec.Volumes {
		switch {
		case v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory:
			memory.Insert(v.Name)
		case v.EmptyDir != nil:
			emptyDirs.Insert(v.Name)
		}
	}
	volume := func(p *field.Path, name string) {
		switch {
		case memory.Has(name):
			// A tmpfs volume is mounted only while a container of the pod runs:
			// the transfer, before or after them, would not see its content.
			errs = append(errs, field.Invalid(p, name, "a medium: Memory emptyDir cannot be transferred; use a disk-backed emptyDir"))
		case !emptyDirs.Has(name):
			errs = append(errs, field.NotFound(p, fmt.Sprintf("%s (must name one of the pod's disk-backed emptyDir volumes: %v)", name, sets.List(emptyDirs))))
		}
	}
	// ends checks what inputs and outputs share: the object, the volume
	// and path, the format.
	ends := func(p *field.Path, bucket, key, vol, rel, formatField, format string) {
		errs = append(errs, validateObject(p, bucket, key)...)
		volume(p.Child("volume"), vol)
		errs = append(errs, validateRelPath(p.Child("path"), rel)...)
		if !sets.New(formats...).Has(format) {
			errs = append(errs, field.NotSupported(p.Child(formatField), format, formats))
		}
	}
	for i, in := range t.Inputs {
		p := fp.Child("inputs").Index(i)
		ends(p, in.Bucket, in.Key, in.Volume, in.Path, "unpack", in.Unpack)
		if in.Unpack == FormatFile && in.Path == "." {
			errs = append(errs, field.Required(p.Child("path"), "the file to write (only an unpacked archive goes to the volume's root)"))
		}
	}
	if len(t.Outputs) > 0 && spec.RestartPolicy == corev1.RestartPolicyAlways {
		errs = append(errs, field.Forbidden(fp.Child("outputs"), "outputs are uploaded when the pod succeeds: restartPolicy must be Never or OnFailure"))
	}
	keys := sets.New[string]()
	for i, out := range t.Outputs {
		p := fp.Child("outputs").Index(i)
		ends(p, out.Bucket, out.Key, out.Volume, out.Path, "format", out.Format)
		if k := out.Bucket + "/" + out.Key; keys.Has(k) {
			errs = append(errs, field.Duplicate(p.Child("key"), out.Key))
		} else {
			keys.Insert(k)
		}
	}
	return errs
}

func validateObject(p *field.Path, bucket, key string) field.ErrorList {
	var errs field.ErrorList
	// S3's bucket naming rules: 3-63 characters, lower case, digits, dots, hyphens.
	if len(bucket) < 3 || len(bucket) > 63 || len(validation.IsDNS1123Subdomain(bucket)) > 0 {
		errs = append(errs, field.Invalid(p.Child("bucket"), bucket, "must be an S3 bucket name (3-63 lower-case letters, digits, '.' and '-')"))
	}
	switch {
	case key == "":
		errs = append(errs, field.Required(p.Child("key"), ""))
	case len(key) > 1024:
		errs = append(errs, field.TooLong(p.Child("key"), key, 1024))
	}
	return errs
}

func validateRelPath(p *field.Path, rel string) field.ErrorList {
	switch {
	case path.IsAbs(rel):
		return field.ErrorList{field.Invalid(p, rel, "must be relative to the volume")}
	case rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "/../") || strings.HasSuffix(rel, "/.."):
		return field.ErrorList{field.Invalid(p, rel, "must not contain '..'")}
	}
	return nil
}
