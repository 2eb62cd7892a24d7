package sshconn

import "testing"

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"cat", "/proc/stat", "/proc/meminfo"}, `'cat' '/proc/stat' '/proc/meminfo'`},
		{[]string{"echo", "it's", "$HOME; rm -rf /"}, `'echo' 'it'\''s' '$HOME; rm -rf /'`},
		{[]string{""}, `''`},
	} {
		if got := shellQuote(tc.argv); got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.argv, got, tc.want)
		}
	}
}
