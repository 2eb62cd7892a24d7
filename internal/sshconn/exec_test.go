package sshconn

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

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

func TestOutput(t *testing.T) {
	c, got := execClient(t, "out\x00", "realpath: missing: No such file or directory\n")
	ctx := context.Background()

	out, err := c.Output(ctx, "realpath", "-z", "--", "/a b/it's")
	if err != nil || string(out) != "out\x00" {
		t.Fatalf("Output = %q, %v", out, err)
	}
	// Every argument reaches the host's shell single-quoted: a space or a
	// quote in a path is never a second word.
	if want := `'realpath' '-z' '--' '/a b/it'\''s'`; (*got)[0] != want {
		t.Errorf("command line %q, want %q", (*got)[0], want)
	}

	out, err = c.Output(ctx, "realpath", "missing")
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Status != 1 || !strings.Contains(exit.Error(), "No such file") || string(out) != "partial" {
		t.Errorf("failing command: out %q, err %v", out, err)
	}
	if _, err := c.Output(ctx); err == nil {
		t.Error("empty command accepted")
	}
}

// StreamChecked ends a failed command's output with its exit, where
// Stream ends it as if all went well.
func TestStreamChecked(t *testing.T) {
	c, _ := execClient(t, "whole", "cat: missing: No such file or directory\n")
	ctx := context.Background()
	read := func(stream func(context.Context, ...string) (io.ReadCloser, error), argv ...string) (string, error) {
		t.Helper()
		s, err := stream(ctx, argv...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := io.ReadAll(s)
		if _, again := s.Read(make([]byte, 1)); err != nil && !errors.Is(again, err) {
			t.Errorf("a read after the end: %v, want %v again", again, err)
		}
		return string(out), err
	}

	if out, err := read(c.StreamChecked, "cat", "present"); out != "whole" || err != nil {
		t.Errorf("succeeding command: %q, %v", out, err)
	}
	out, err := read(c.StreamChecked, "cat", "missing")
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Status != 1 || !strings.Contains(exit.Stderr, "No such file") || out != "partial" {
		t.Errorf("failing command: %q, %v", out, err)
	}
	if out, err := read(c.Stream, "cat", "missing"); out != "partial" || err != nil {
		t.Errorf("failing command through Stream: %q, %v; want its output and no error", out, err)
	}
}

// execClient is a client connected to a server whose commands print out
// and succeed, but for those naming "missing", which print "partial" and
// failure and exit 1; got collects the command lines.
func execClient(t *testing.T, out, failure string) (c *Client, got *[]string) {
	t.Helper()
	f := newFixture(t)
	got = new([]string)
	f.srv.exec = func(cmd string) (string, string, uint32) {
		*got = append(*got, cmd)
		if strings.Contains(cmd, "missing") {
			return "partial", failure, 1
		}
		return out, "", 0
	}
	c, _ = run(t, f.cfg)
	awaitState(t, c, "connected", connected)
	return c, got
}

// Input gives the command its standard input, all of it, and its failure
// as Output does.
func TestInput(t *testing.T) {
	f := newFixture(t)
	var got []string
	f.srv.stdin = func(cmd string, data []byte) { got = append(got, cmd+" < "+string(data)) }
	f.srv.exec = func(cmd string) (string, string, uint32) {
		if strings.Contains(cmd, "missing") {
			return "", "tar: missing: Cannot open: No such file or directory\n", 2
		}
		return "", "", 0
	}
	c, _ := run(t, f.cfg)
	awaitState(t, c, "connected", connected)
	ctx := context.Background()
	if err := c.Input(ctx, strings.NewReader("archive bytes"), "tar", "-x", "-C", "/v"); err != nil {
		t.Fatal(err)
	}
	err := c.Input(ctx, strings.NewReader("more"), "tar", "-x", "-C", "/missing")
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Status != 2 || !strings.Contains(exit.Stderr, "Cannot open") {
		t.Errorf("failing command: %v", err)
	}
	want := []string{`'tar' '-x' '-C' '/v' < archive bytes`, `'tar' '-x' '-C' '/missing' < more`}
	if !slices.Equal(got, want) {
		t.Errorf("the host read %q, want %q", got, want)
	}
}

func TestOutputNotConnected(t *testing.T) {
	f := newFixture(t)
	c, err := New(f.cfg) // never Run
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Output(context.Background(), "true")
	assertClassified(t, err, ErrNotConnected, ReasonNotConnected)
}

func TestLimitedBuffer(t *testing.T) {
	var b limitedBuffer
	chunk := strings.Repeat("x", maxOutput/2+1)
	for range 3 {
		if n, err := b.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if b.Len() != maxOutput {
		t.Errorf("kept %d bytes, want %d", b.Len(), maxOutput)
	}
}
