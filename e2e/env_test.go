//go:build e2e || bench

package e2e

import (
	"bufio"
	"os"
	"strings"
)

// readEnvFile reads the KEY=value lines of a file hack/ scripts wrote
// (host.env), quotes stripped.
func readEnvFile(path string) (map[string]string, error) {
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
