package sshconn

import (
	"context"
	"testing"
)

func TestPoolSharesOneConnectionPerConfig(t *testing.T) {
	f := newFixture(t)
	p := NewPool()

	a, releaseA, err := p.Acquire(f.cfg)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	// The same host, user, key and trust, given as a fresh copy of the
	// material (as two RemoteBuildNodes reading one Secret do).
	same := f.cfg
	same.PrivateKey = append([]byte(nil), f.cfg.PrivateKey...)
	same.KnownHosts = append([]byte(nil), f.cfg.KnownHosts...)
	b, releaseB, err := p.Acquire(same)
	if err != nil {
		t.Fatalf("second Acquire: %v", err)
	}
	if a != b {
		t.Fatal("two users of one Config got different Clients")
	}
	awaitState(t, a, "connected", connected)
	if got := p.Len(); got != 1 {
		t.Errorf("Len = %d, want 1", got)
	}
	f.srv.await(t, "one handshake", func(s serverStats) bool { return s.Handshakes == 1 })

	// Releasing one user keeps the connection for the other.
	releaseA()
	releaseA() // twice: no effect
	if st := b.State(); !st.Connected {
		t.Fatalf("release by one user closed the connection the other holds: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := b.Dial(ctx, "tcp", tcpEcho(t))
	if err != nil {
		t.Fatalf("Dial after the other user released: %v", err)
	}
	echo(t, conn, "still here")
	conn.Close()

	// The last release closes it, and the next Acquire starts a new one.
	releaseB()
	if st := b.State(); st.Connected {
		t.Errorf("connection still up after the last release: %+v", st)
	}
	if got := p.Len(); got != 0 {
		t.Errorf("Len after the last release = %d, want 0", got)
	}
	c, releaseC, err := p.Acquire(f.cfg)
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	defer releaseC()
	if c == b {
		t.Error("a released Client was handed out again")
	}
	awaitState(t, c, "connected again", connected)
	f.srv.await(t, "a second handshake", func(s serverStats) bool { return s.Handshakes == 2 })
}

func TestPoolKeepsDifferentConfigsApart(t *testing.T) {
	f := newFixture(t)
	_, otherPEM := newEd25519Key(t)
	changes := map[string]func(*Config){
		"port":        func(c *Config) { c.Port++ },
		"user":        func(c *Config) { c.User = "someone-else" },
		"key":         func(c *Config) { c.PrivateKey = otherPEM },
		"known_hosts": func(c *Config) { c.KnownHosts = append(append([]byte(nil), c.KnownHosts...), '\n') },
		"address":     func(c *Config) { c.Host = "127.0.0.2" },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			p := NewPool()
			a, releaseA, err := p.Acquire(f.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer releaseA()
			cfg := f.cfg
			change(&cfg)
			b, releaseB, err := p.Acquire(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer releaseB()
			if a == b {
				t.Errorf("Configs differing in %s share a Client", name)
			}
			if got := p.Len(); got != 2 {
				t.Errorf("Len = %d, want 2", got)
			}
		})
	}
}

func TestPoolAcquireRejectsInvalidConfig(t *testing.T) {
	f := newFixture(t)
	p := NewPool()
	bad := f.cfg
	bad.PrivateKey = []byte("not a key")
	if _, _, err := p.Acquire(bad); err == nil {
		t.Fatal("Acquire with an unparsable key succeeded")
	}
	if got := p.Len(); got != 0 {
		t.Errorf("Len after a failed Acquire = %d, want 0", got)
	}
}
