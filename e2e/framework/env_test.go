package framework

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.env")
	if err := os.WriteFile(path, []byte("NAME=\"host1\"\nPORT='2303'\nADDRESS=127.0.1.1\nnot a pair\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"NAME": "host1", "PORT": "2303", "ADDRESS": "127.0.1.1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestEnvFromOS(t *testing.T) {
	t.Setenv(EnvKubeconfig, "/k")
	t.Setenv(EnvKubectl, "/kubectl")
	t.Setenv(EnvState, "")
	t.Setenv(EnvRoot, "/root")
	t.Setenv(EnvInCluster, "") // hack/test.sh exports it for the e2e tests
	if _, err := EnvFromOS(); !errors.Is(err, ErrNotSet) || err.Error() != EnvState+" is not set" {
		t.Fatalf("err = %v, want %s not set", err, EnvState)
	}
	t.Setenv(EnvState, "/state")
	got, err := EnvFromOS()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Env{Kubeconfig: "/k", KubectlBin: "/kubectl", State: "/state", Root: "/root"}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestEnvFromOSInCluster(t *testing.T) {
	state := t.TempDir()
	t.Setenv(EnvKubeconfig, "/k")
	t.Setenv(EnvKubectl, "/kubectl")
	t.Setenv(EnvState, state)
	t.Setenv(EnvRoot, "/root")
	t.Setenv(EnvInCluster, "0")
	check := func(what string, want bool) {
		t.Helper()
		got, err := EnvFromOS()
		if err != nil {
			t.Fatal(err)
		}
		if got.InCluster != want {
			t.Errorf("%s: InCluster = %v, want %v", what, got.InCluster, want)
		}
	}
	check("no marker, variable 0", false)
	t.Setenv(EnvInCluster, "1")
	check("variable 1", true)
	t.Setenv(EnvInCluster, "")
	if err := os.WriteFile(filepath.Join(state, InClusterMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	check("marker in the state dir", true)
}
