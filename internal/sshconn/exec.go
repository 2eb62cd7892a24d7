package sshconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"
)

// shellQuote renders argv as one POSIX shell command line with every
// argument single-quoted.
func shellQuote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(a, `'`, `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}

// session opens a session on the current connection for running argv,
// and returns what closes it (any number of times).
func (c *Client) session(argv []string) (*ssh.Session, func() error, error) {
	if len(argv) == 0 {
		return nil, nil, errors.New("sshconn: empty command")
	}
	conn, err := c.connected()
	if err != nil {
		return nil, nil, err
	}
	sess, err := conn.NewSession()
	if err != nil {
		return nil, nil, fmt.Errorf("ssh %s: new session: %w", c.addr, err)
	}
	done := c.channels.opened()
	return sess, func() error { done(); return sess.Close() }, nil
}

// Stream runs argv on the host and returns its standard output as it
// comes. Closing the stream, or ctx ending, ends the command's session.
// The stream ends when the output does, whatever the command's exit
// status: for commands whose partial failure is expected.
func (c *Client) Stream(ctx context.Context, argv ...string) (io.ReadCloser, error) {
	return c.stream(ctx, argv, false)
}

// StreamChecked is Stream for a command whose failure matters: a command
// that exits non-zero ends its stream with its *ExitError, not io.EOF,
// after whatever output it gave.
func (c *Client) StreamChecked(ctx context.Context, argv ...string) (io.ReadCloser, error) {
	return c.stream(ctx, argv, true)
}

func (c *Client) stream(ctx context.Context, argv []string, checked bool) (io.ReadCloser, error) {
	sess, closeSession, err := c.session(argv)
	if err != nil {
		return nil, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		_ = closeSession()
		return nil, fmt.Errorf("ssh %s: %w", c.addr, err)
	}
	var stderr limitedBuffer
	if checked {
		sess.Stderr = &stderr
	}
	if err := sess.Start(shellQuote(argv)); err != nil {
		_ = closeSession()
		return nil, fmt.Errorf("ssh %s: %s: %w", c.addr, strings.Join(argv, " "), err)
	}
	stop := context.AfterFunc(ctx, func() { _ = closeSession() })
	s := &sessionStream{Reader: stdout, close: func() error { stop(); return closeSession() }}
	if checked {
		s.wait = func() error { return c.commandEnd(ctx, argv, sess.Wait(), &stderr) }
	}
	return s, nil
}

type sessionStream struct {
	io.Reader
	close func() error
	// wait, when set, is the command's end, asked for once its output
	// has ended: a failure ends the stream instead of io.EOF.
	wait  func() error
	ended error
}

func (s *sessionStream) Read(p []byte) (int, error) {
	if s.ended != nil {
		return 0, s.ended
	}
	n, err := s.Reader.Read(p)
	if err == io.EOF && s.wait != nil {
		if werr := s.wait(); werr != nil {
			err = werr
		}
		s.wait = nil
		s.ended = err
	}
	return n, err
}

func (s *sessionStream) Close() error { return s.close() }

// ExitError is a command that ran on the host and failed.
type ExitError struct {
	Argv   []string
	Status int
	Stderr string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s: exit status %d: %s", strings.Join(e.Argv, " "), e.Status, strings.TrimSpace(e.Stderr))
}

// maxOutput bounds what Output keeps of a command's stdout and stderr.
const maxOutput = 1 << 20

// Output runs argv on the host and returns its standard output; a non-zero
// exit is an *ExitError carrying the command's standard error.
func (c *Client) Output(ctx context.Context, argv ...string) ([]byte, error) {
	var stdout limitedBuffer
	err := c.OutputTo(ctx, &stdout, argv...)
	var exit *ExitError
	if err != nil && !errors.As(err, &exit) {
		return nil, err
	}
	return stdout.Bytes(), err
}

// OutputTo runs argv on the host, writing its standard output to stdout
// as it comes, all of it; a non-zero exit is an *ExitError carrying the
// command's standard error. For commands whose output has no useful bound.
func (c *Client) OutputTo(ctx context.Context, stdout io.Writer, argv ...string) error {
	return c.run(ctx, nil, stdout, argv)
}

// Input runs argv on the host with stdin as its standard input, which it
// reads to its end (closing the command's input then); a non-zero exit is
// an *ExitError carrying the command's standard error.
func (c *Client) Input(ctx context.Context, stdin io.Reader, argv ...string) error {
	var stdout limitedBuffer
	return c.run(ctx, stdin, &stdout, argv)
}

// run runs argv on the host to its end, with stdin (nil: none) and stdout.
func (c *Client) run(ctx context.Context, stdin io.Reader, stdout io.Writer, argv []string) error {
	sess, closeSession, err := c.session(argv)
	if err != nil {
		return err
	}
	defer closeSession()
	stop := context.AfterFunc(ctx, func() { _ = closeSession() })
	defer stop()
	var stderr limitedBuffer
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, &stderr
	return c.commandEnd(ctx, argv, sess.Run(shellQuote(argv)), &stderr)
}

// commandEnd is how the command argv ended, given its session's err: a
// non-zero exit is an *ExitError with its standard error.
func (c *Client) commandEnd(ctx context.Context, argv []string, err error, stderr *limitedBuffer) error {
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		return &ExitError{Argv: argv, Status: exit.ExitStatus(), Stderr: stderr.String()}
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("ssh %s: %s: %w", c.addr, strings.Join(argv, " "), ctx.Err())
	case err != nil:
		return fmt.Errorf("ssh %s: %s: %w", c.addr, strings.Join(argv, " "), err)
	}
	return nil
}

// limitedBuffer keeps the first maxOutput bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
