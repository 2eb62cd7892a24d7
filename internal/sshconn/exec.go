package sshconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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

// Stream runs argv on the host and returns its standard output as it
// comes. Closing the stream, or ctx ending, ends the command's session.
func (c *Client) Stream(ctx context.Context, argv ...string) (io.ReadCloser, error) {
	if len(argv) == 0 {
		return nil, errors.New("sshconn: empty command")
	}
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return nil, &Error{Reason: ReasonNotConnected, Addr: c.addr, Err: errors.New("no ssh connection")}
	}
	sess, err := conn.NewSession()
	if err != nil {
		return nil, fmt.Errorf("ssh %s: new session: %w", c.addr, err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("ssh %s: %w", c.addr, err)
	}
	if err := sess.Start(shellQuote(argv)); err != nil {
		sess.Close()
		return nil, fmt.Errorf("ssh %s: %s: %w", c.addr, strings.Join(argv, " "), err)
	}
	stop := context.AfterFunc(ctx, func() { _ = sess.Close() })
	return &sessionStream{Reader: stdout, close: func() error { stop(); return sess.Close() }}, nil
}

type sessionStream struct {
	io.Reader
	close func() error
}

func (s *sessionStream) Close() error { return s.close() }
