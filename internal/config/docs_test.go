package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// docs/configuration.md has a row for every field of both kinds, showing
// the default the field's tag declares.
func TestDocsListEveryFieldAndDefault(t *testing.T) {
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for kind, obj := range map[string]any{KubeletKind: KubeletConfiguration{}, ExtenderKind: ExtenderConfiguration{}} {
		_, section, ok := strings.Cut(doc, "## "+kind)
		if !ok {
			t.Fatalf("no section %s", kind)
		}
		section, _, _ = strings.Cut(section, "\n## ")
		rows := map[string]string{} // field -> default column
		for line := range strings.SplitSeq(section, "\n") {
			cols := strings.Split(line, "|")
			if len(cols) > 3 {
				rows[strings.Trim(strings.TrimSpace(cols[1]), "`")] = strings.TrimSpace(cols[2])
			}
		}
		for path, def := range fieldDefaults(reflect.TypeOf(obj), "") {
			got, ok := rows[path]
			switch {
			case !ok:
				t.Errorf("%s: no row for %s", kind, path)
			case def != "" && !strings.Contains(got, "`"+def+"`"):
				t.Errorf("%s: %s: the row says the default is %q, the type says %q", kind, path, got, def)
			}
			delete(rows, path)
		}
		for path := range rows {
			if path != "field" && path != "---" {
				t.Errorf("%s: a row for %s, which is no field", kind, path)
			}
		}
	}
}

// fieldDefaults maps the path of every configuration field of struct t to
// its default tag ("" when none), descending into sections.
func fieldDefaults(t reflect.Type, prefix string) map[string]string {
	out := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			continue // TypeMeta, inline
		}
		def, hasDefault := f.Tag.Lookup(defaultTag)
		if f.Type.PkgPath() == t.PkgPath() && f.Type.Kind() == reflect.Struct && !hasDefault { // a section
			for p, d := range fieldDefaults(f.Type, prefix+name+".") {
				out[p] = d
			}
			continue
		}
		out[prefix+name] = def
	}
	return out
}
