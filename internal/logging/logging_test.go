package logging

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestSetupAndValidateOptions(t *testing.T) {
	var buf bytes.Buffer
	l, err := Setup(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	ctx := IntoContext(context.Background(), l)
	FromContext(ctx).Info("dropped")
	FromContext(ctx).Warn("kept", "key", "v")
	if out := buf.String(); strings.Contains(out, "dropped") || !strings.Contains(out, `"key":"v"`) {
		t.Errorf("json at warn: %q", out)
	}
	if _, err := Setup(&buf, "xml", "info"); err == nil {
		t.Error("unknown format accepted")
	}
	errs := ValidateOptions("xml", "loud")
	if len(errs) != 2 || errs[0].Field != "logFormat" || errs[1].Field != "logLevel" {
		t.Errorf("problems: %v", errs)
	}
	if errs := ValidateOptions("text", "debug"); len(errs) != 0 {
		t.Errorf("valid options rejected: %v", errs)
	}
}
