package kubelet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/remote-build-nodes/rbn/internal/config"
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var out strings.Builder
	if err := Run(t.Context(), nil, &out); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("no --config: %v", err)
	}
	unknown := write("unknown.yaml", "apiVersion: rbn.dev/v1alpha1\nkind: KubeletConfiguration\nnodeAdress: 10.0.0.5\n")
	if err := Run(t.Context(), []string{"--config=" + unknown}, &out); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "nodeAdress") {
		t.Errorf("unknown field: %v", err)
	}
	// Validation runs after the flags: --node-address fixes nodeAddress,
	// the missing certificate is still reported.
	invalid := write("invalid.yaml", "apiVersion: rbn.dev/v1alpha1\nkind: KubeletConfiguration\nnodeAddress: nowhere\n")
	err := Run(t.Context(), []string{"--config=" + invalid, "--node-address=10.0.0.5"}, &out)
	if !errors.Is(err, config.ErrInvalid) || strings.Contains(err.Error(), "nodeAddress") || !strings.Contains(err.Error(), "tlsCertFile") {
		t.Errorf("invalid configuration: %v", err)
	}
}
