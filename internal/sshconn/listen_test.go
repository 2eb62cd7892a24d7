package sshconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
)

// Tables as a little-endian Linux host prints them; the forward's port is
// 40000 (9C40), another listener holds 8080 (1F90) on every address.
const (
	tcpHeader  = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tcp6Header = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tail       = " 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n"

	v4Loopback     = "   0: 0100007F:9C40 00000000:0000 0A" + tail
	v4LoopbackBE   = "   0: 7F000001:9C40 00000000:0000 0A" + tail
	v4Any          = "   1: 00000000:9C40 00000000:0000 0A" + tail
	v4Public       = "   1: 0F02000A:9C40 00000000:0000 0A" + tail // 10.0.2.15
	v4Other        = "   2: 00000000:1F90 00000000:0000 0A" + tail
	v4Established  = "   3: 0F02000A:9C40 0202000A:D431 01" + tail // a connection from port 40000, not a listener
	v6Loopback     = "   0: 00000000000000000000000001000000:9C40 00000000000000000000000000000000:0000 0A" + tail
	v6LoopbackBE   = "   0: 00000000000000000000000000000001:9C40 00000000000000000000000000000000:0000 0A" + tail
	v6MappedLoop   = "   0: 0000000000000000FFFF00000100007F:9C40 00000000000000000000000000000000:0000 0A" + tail
	v6Any          = "   1: 00000000000000000000000000000000:9C40 00000000000000000000000000000000:0000 0A" + tail
	v6OtherAnyPort = "   2: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A" + tail
)

func TestLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		name, tables string
		want         error
		says         string
	}{
		{"GatewayPorts no", tcpHeader + v4Loopback + v4Other + v4Established + tcp6Header + v6OtherAnyPort, nil, ""},
		{"big-endian host", tcpHeader + v4LoopbackBE + tcp6Header + v6LoopbackBE, nil, ""},
		{"::1 and a mapped 127.0.0.1", tcpHeader + v4Loopback + tcp6Header + v6Loopback + v6MappedLoop, nil, ""},
		{"kernel without IPv6", tcpHeader + v4Loopback, nil, ""},
		{"GatewayPorts yes", tcpHeader + v4Any + v4Other + tcp6Header + v6Any, ErrForwardExposed, "0.0.0.0:40000, [::]:40000"},
		{"IPv6 wildcard only", tcpHeader + v4Loopback + tcp6Header + v6Any, ErrForwardExposed, "[::]:40000"},
		{"an interface's address", tcpHeader + v4Public, ErrForwardExposed, "10.0.2.15:40000"},
		{"port not listed", tcpHeader + v4Other + v4Established + tcp6Header, ErrForwardUnverified, "port 40000 is not among"},
		{"no IPv4 table", tcp6Header + v6Loopback, ErrForwardUnverified, "no IPv4"},
		{"nothing", "", ErrForwardUnverified, "no IPv4"},
		{"garbled address", tcpHeader + "   0: 0100zz7F:9C40 00000000:0000 0A" + tail, ErrForwardUnverified, "0100zz7F"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := loopbackOnly(strings.NewReader(tc.tables), 40000)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) || !strings.Contains(errString(err), tc.says) {
				t.Fatalf("err %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestListenLoopback(t *testing.T) {
	f := newFixture(t)
	f.srv.forwardPort = 40000
	var mu sync.Mutex
	var cmds []string
	tables := tcpHeader + v4Loopback + tcp6Header
	f.srv.exec = func(cmd string) (string, string, uint32) {
		mu.Lock()
		defer mu.Unlock()
		cmds = append(cmds, cmd)
		return tables, "", 0
	}
	c, _ := run(t, f.cfg)
	awaitState(t, c, "connected", connected)
	ctx := context.Background()

	ln, err := c.ListenLoopback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr().String() != "127.0.0.1:40000" {
		t.Errorf("listener on %s, want 127.0.0.1:40000", ln.Addr())
	}
	_ = ln.Close()
	if want := `'cat' '/proc/net/tcp' '/proc/net/tcp6'`; len(cmds) != 1 || cmds[0] != want {
		t.Errorf("commands %q, want one: %s", cmds, want)
	}

	// sshd with GatewayPorts yes: the port listens on every address.
	mu.Lock()
	tables = tcpHeader + v4Any + tcp6Header + v6Any
	mu.Unlock()
	ln, err = c.ListenLoopback(ctx)
	if !errors.Is(err, ErrForwardExposed) || ln != nil || !strings.Contains(err.Error(), "GatewayPorts") {
		t.Fatalf("ListenLoopback on an exposing sshd: %v, %v; want ErrForwardExposed naming GatewayPorts", ln, err)
	}
	// The forward is given back: both were asked on 127.0.0.1, both cancelled.
	st := f.srv.await(t, "two forwards cancelled", func(st serverStats) bool { return len(st.Cancels) == 2 })
	if strings.Join(st.Forwards, " ") != "127.0.0.1:0 127.0.0.1:0" {
		t.Errorf("forwards asked on %q, want 127.0.0.1:0 twice", st.Forwards)
	}

	// A host whose socket table cannot be read is not taken as safe.
	mu.Lock()
	tables = ""
	mu.Unlock()
	if _, err := c.ListenLoopback(ctx); !errors.Is(err, ErrForwardUnverified) {
		t.Fatalf("ListenLoopback without a socket table: %v, want ErrForwardUnverified", err)
	}
}

func TestListenLoopbackNotConnected(t *testing.T) {
	f := newFixture(t)
	c, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListenLoopback(context.Background()); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("err %v, want ErrNotConnected", err)
	}
}

// This machine's own tables, in the kernel's format and byte order: a
// listener on 127.0.0.1 passes, one on every address does not.
func TestLoopbackOnlyThisMachine(t *testing.T) {
	read := func() io.Reader {
		var b bytes.Buffer
		for _, p := range procNetTCP[1:] {
			data, err := os.ReadFile(p)
			if err != nil && p == "/proc/net/tcp" {
				t.Skipf("no %s here: %v", p, err)
			}
			b.Write(data)
		}
		return &b
	}
	for _, tc := range []struct {
		addr string
		want error
	}{{"127.0.0.1:0", nil}, {"0.0.0.0:0", ErrForwardExposed}, {"[::]:0", ErrForwardExposed}} {
		ln, err := net.Listen("tcp", tc.addr)
		if err != nil {
			t.Logf("listen on %s: %v", tc.addr, err) // no IPv6 here
			continue
		}
		err = loopbackOnly(read(), ln.Addr().(*net.TCPAddr).Port)
		_ = ln.Close()
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("listening on %s: %v, want %v", tc.addr, err, tc.want)
		}
	}
}
