package framework

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The environment hack/test.sh and hack/bench.sh set for the tests.
const (
	EnvKubeconfig = "RBN_E2E_KUBECONFIG"
	EnvKubectl    = "RBN_E2E_KUBECTL"
	EnvState      = "RBN_E2E_STATE"
	EnvRoot       = "RBN_E2E_ROOT"
	// EnvInCluster is "1" when rbn-kubelet and rbn-extender run as pods on
	// the worker node (hack/test.sh e2e, the default mode); optional, the
	// stack's state dir says it too (InClusterMarker).
	EnvInCluster = "RBN_E2E_IN_CLUSTER"
)

// InClusterMarker is the file hack/dev-up.sh leaves in the state dir of a
// stack brought up in the in-cluster mode.
const InClusterMarker = "in-cluster"

// ErrNotSet is wrapped by the errors of the environment's lookups.
var ErrNotSet = errors.New("is not set")

// Env says where the running local stack is.
type Env struct {
	Kubeconfig string // the stack's kubeconfig
	KubectlBin string // the real kubectl binary
	State      string // the stack's state dir (RBN_STATE of hack/dev-up.sh)
	Root       string // the repository, for hack/ scripts
	// InCluster: rbn-kubelet and rbn-extender run as pods in the namespace
	// RBNNamespace on the worker node, not as local processes.
	InCluster bool
}

// Getenv returns the variable k, or an error wrapping ErrNotSet.
func Getenv(k string) (string, error) {
	v := os.Getenv(k)
	if v == "" {
		return "", fmt.Errorf("%s %w", k, ErrNotSet)
	}
	return v, nil
}

// EnvFromOS reads Env from RBN_E2E_*; the error names the first variable
// that is not set.
func EnvFromOS() (Env, error) {
	var e Env
	for _, v := range []struct {
		key string
		dst *string
	}{{EnvKubeconfig, &e.Kubeconfig}, {EnvKubectl, &e.KubectlBin}, {EnvState, &e.State}, {EnvRoot, &e.Root}} {
		val, err := Getenv(v.key)
		if err != nil {
			return Env{}, err
		}
		*v.dst = val
	}
	_, err := os.Stat(filepath.Join(e.State, InClusterMarker))
	e.InCluster = os.Getenv(EnvInCluster) == "1" || err == nil
	return e, nil
}

// ReadEnvFile reads the KEY=value lines of a file hack/ scripts wrote
// (host.env), quotes stripped.
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	return env, sc.Err()
}
