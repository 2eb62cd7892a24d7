package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeTypeMeta(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		obj       Object
		wantErr   []string // nil: accepted
	}{
		{"kubelet", "apiVersion: rbn.dev/v1alpha1\nkind: KubeletConfiguration\n", &KubeletConfiguration{}, nil},
		{"extender", "apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\n", &ExtenderConfiguration{}, nil},
		{"absent means the kind's own", "", &ExtenderConfiguration{}, nil},
		{"kind absent", "apiVersion: rbn.dev/v1alpha1\n", &KubeletConfiguration{}, nil},
		{"other version", "apiVersion: rbn.dev/v1beta9\nkind: KubeletConfiguration\n", &KubeletConfiguration{}, []string{"apiVersion", "v1beta9"}},
		{"other kind", "apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\n", &KubeletConfiguration{}, []string{"kind", "ExtenderConfiguration"}},
		// The fields of an unknown kind are not worth listing.
		{"both, fields unread", "apiVersion: v1\nkind: Pod\nspec: {}\n", &KubeletConfiguration{}, []string{"apiVersion", "kind"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Decode([]byte(tc.doc), tc.obj)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				tm, kind := tc.obj.typeMeta()
				if tm.APIVersion != APIVersion || tm.Kind != kind {
					t.Errorf("type meta %+v, want %s %s", tm, APIVersion, kind)
				}
				return
			}
			wantInvalid(t, err, tc.wantErr...)
			if strings.Contains(err.Error(), "spec") {
				t.Errorf("fields of another kind listed: %v", err)
			}
		})
	}
}

func TestDecodeListsEveryUnknownAndRepeatedField(t *testing.T) {
	doc := `kind: KubeletConfiguration
nodeAdress: 10.0.0.5
NodeAddress: 10.0.0.6
ssh: {dialTimeout: 1s, keepAlive: 2s}
podRetry: {teardown: 1s}
logLevel: info
logLevel: debug
`
	// Field names match case-sensitively, as Kubernetes' decoders do.
	wantInvalid(t, Decode([]byte(doc), &KubeletConfiguration{}), "nodeAdress: Forbidden: unknown field", "NodeAddress: Forbidden: unknown field",
		"ssh.keepAlive: Forbidden: unknown field", "logLevel: Forbidden: given more than once")
	if err := Decode([]byte("kubeletPort: [1]\n"), &KubeletConfiguration{}); err == nil || !strings.Contains(err.Error(), "kubeletPort") {
		t.Errorf("wrong type: %v", err)
	}
	if err := Decode([]byte("{{"), &KubeletConfiguration{}); err == nil {
		t.Error("malformed document accepted")
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: rbn.dev/v1alpha1\nkind: ExtenderConfiguration\nport: 1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &ExtenderConfiguration{}
	if err := Load(path, c); err != nil || c.Port != 1234 || c.ListenAddress != "0.0.0.0" {
		t.Errorf("Load: %+v, %v", c, err)
	}
	if err := Load(path, &KubeletConfiguration{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("an extender's file loaded as a kubelet's, or the error does not name the file: %v", err)
	}
	if err := Load(filepath.Join(t.TempDir(), "none.yaml"), c); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
