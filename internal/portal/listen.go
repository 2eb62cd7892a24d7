package portal

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenTransparent listens on addr ("ip:port") with IP_TRANSPARENT. The
// kernel's tproxy assigns only to transparent sockets, and the connections
// accepted keep their original destination (an address no interface
// holds) as their local address, which they may answer from.
func ListenTransparent(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set IP_TRANSPARENT: %w", serr)
		}
		return nil
	}}
	ln, err := lc.Listen(ctx, "tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
