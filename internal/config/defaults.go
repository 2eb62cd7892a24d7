package config

import (
	"fmt"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// defaultTag is the struct tag that declares a field's default, written as
// the field's value would be in a configuration file ("10s", "0.0.0.0", "2").
const defaultTag = "default"

// SetDefaults fills every unset field of obj: apiVersion and kind with its
// own, and every zero field that declares a default with that default. A
// pointer field is unset when nil, so that a pointer makes 0 a value one
// can choose; nested sections are filled field by field.
func SetDefaults(obj Object) {
	defaultTypeMeta(obj.typeMeta())
	setDefaults(reflect.ValueOf(obj).Elem())
}

func defaultTypeMeta(tm *metav1.TypeMeta, kind string) {
	if tm.APIVersion == "" {
		tm.APIVersion = APIVersion
	}
	if tm.Kind == "" {
		tm.Kind = kind
	}
}

// setDefaults applies the default tags of struct v's fields. A malformed
// tag is a programming error, caught by the tests that default each kind.
func setDefaults(v reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		def, ok := f.Tag.Lookup(defaultTag)
		switch {
		case ok:
			if fv.IsZero() {
				if err := yaml.Unmarshal([]byte(def), fv.Addr().Interface()); err != nil {
					panic(fmt.Sprintf("config: the default %q of %s.%s: %v", def, t.Name(), f.Name, err))
				}
			}
		case f.Type.Kind() == reflect.Struct && f.IsExported():
			setDefaults(fv)
		}
	}
}
