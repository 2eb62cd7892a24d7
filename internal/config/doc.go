// Package config holds rbn's versioned configuration kinds, both
// apiVersion rbn.dev/v1alpha1: KubeletConfiguration (rbn-kubelet) and
// ExtenderConfiguration (rbn-extender).
//
// Both work the same way, and the same code does it:
//   - defaults are declared on the type, as a `default:"..."` tag on the
//     field, written as in a configuration file; SetDefaults applies them to
//     every unset (zero) field. There is no other place a default lives, and
//     docs/configuration.md is checked against the tags;
//   - Load and Decode read a file strictly: the apiVersion and kind first
//     (absent means this kind's own), then the fields, where every unknown
//     or repeated field is reported at once;
//   - each kind's Validate lists every problem of a defaulted configuration
//     as a field.ErrorList, built from the checks in validate.go;
//     ValidateAll makes that one error.
//
// Programs load a file, apply their flag overrides, then validate.
package config
