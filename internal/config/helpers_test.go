package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mustDecode decodes doc into a new T.
func mustDecode[T any, PT interface {
	*T
	Object
}](t *testing.T, doc string) PT {
	t.Helper()
	c := PT(new(T))
	if err := Decode([]byte(doc), c); err != nil {
		t.Fatal(err)
	}
	return c
}

// existingFile is the path of a file that exists, for the fields that name one.
func existingFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.pem")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantInvalid checks that err is ErrInvalid and names every one of fields.
func wantInvalid(t *testing.T, err error, fields ...string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	for _, f := range fields {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not mention %s: %v", f, err)
		}
	}
}
