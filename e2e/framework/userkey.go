package framework

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// UserKey is an SSH key pair made with the real ssh-keygen: the private
// key's file, for the real ssh and scp clients, and the public key's line.
type UserKey struct{ Private, Public string }

// NewUserKey makes a key pair in the test's temporary directory.
func NewUserKey(t testing.TB) UserKey {
	t.Helper()
	key := filepath.Join(t.TempDir(), "id_ed25519")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := Command(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e-user", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return UserKey{Private: key, Public: ReadFile(t, key+".pub")}
}

// ReadFile returns the file's content, failing the test when it cannot be
// read.
func ReadFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
