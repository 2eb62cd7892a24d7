package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// APIVersion is the apiVersion of every configuration kind.
const APIVersion = "rbn.dev/v1alpha1"

// Object is one of this package's configuration kinds.
type Object interface {
	// Validate lists every problem of the defaulted configuration.
	Validate() field.ErrorList
	// typeMeta is the object's apiVersion and kind, and the kind it must
	// name (or leave out) to be decoded into it.
	typeMeta() (tm *metav1.TypeMeta, kind string)
}

// ErrInvalid classifies a configuration that cannot be used, as decoded
// or as validated; the error lists every problem.
var ErrInvalid = errors.New("invalid configuration")

// Load reads the file at path into obj strictly, then applies defaults
// (see Decode). Callers apply flag overrides, then call ValidateAll.
func Load(path string, obj Object) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := Decode(data, obj); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Decode reads a YAML or JSON document into obj, then applies defaults.
// It checks apiVersion and kind first (absent means obj's own): the fields
// mean something only in their kind and version. Then every unknown field
// (names match case-sensitively, as Kubernetes' own decoders do) and every
// field given twice is reported together, wrapping ErrInvalid.
func Decode(data []byte, obj Object) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	var tm metav1.TypeMeta
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	_, kind := obj.typeMeta()
	defaultTypeMeta(&tm, kind)
	if errs := validateTypeMeta(tm, kind); len(errs) > 0 {
		return invalid(errs)
	}
	strict, err := sigsjson.UnmarshalStrict(js, obj)
	if err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	errs := repeatedKeys(data)
	for _, e := range strict {
		errs = append(errs, strictError(e))
	}
	if len(errs) > 0 {
		return invalid(errs)
	}
	SetDefaults(obj)
	return nil
}

// strictError turns one of sigs.k8s.io/json's strict errors into a field error.
func strictError(err error) *field.Error {
	var fe sigsjson.FieldError
	if !errors.As(err, &fe) {
		return field.Invalid(field.NewPath("<document>"), nil, err.Error())
	}
	p := field.NewPath(fe.FieldPath())
	switch msg := fe.Error(); {
	case strings.Contains(msg, "unknown field"):
		return field.Forbidden(p, "unknown field")
	case strings.Contains(msg, "duplicate field"):
		return field.Forbidden(p, "given more than once")
	default:
		return field.Invalid(p, nil, msg)
	}
}

// repeatedKeys lists every key given twice in a mapping of the YAML
// document: its conversion to JSON keeps only the last.
func repeatedKeys(data []byte) field.ErrorList {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		return nil // the conversion to JSON failed on it already
	}
	var errs field.ErrorList
	var walk func(n *yamlv3.Node, p *field.Path)
	walk = func(n *yamlv3.Node, p *field.Path) {
		switch n.Kind {
		case yamlv3.DocumentNode:
			for _, c := range n.Content {
				walk(c, p)
			}
		case yamlv3.MappingNode:
			seen := map[string]bool{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				kp := field.NewPath(k)
				if p != nil {
					kp = p.Child(k)
				}
				if seen[k] {
					errs = append(errs, field.Forbidden(kp, "given more than once"))
				}
				seen[k] = true
				walk(n.Content[i+1], kp)
			}
		case yamlv3.SequenceNode:
			for i, c := range n.Content {
				walk(c, p.Index(i))
			}
		}
	}
	walk(&doc, nil)
	return errs
}

// ValidateAll is obj.Validate as one error listing every problem and
// wrapping ErrInvalid, or nil.
func ValidateAll(obj Object) error {
	if errs := obj.Validate(); len(errs) > 0 {
		return invalid(errs)
	}
	return nil
}

func invalid(errs field.ErrorList) error {
	return fmt.Errorf("%w: %w", ErrInvalid, errs.ToAggregate())
}
