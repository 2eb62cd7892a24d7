// Command rbn-forward lets a pod on a build host reach cluster Services. It
// runs in an extra container of the pod, in the pod's network namespace,
// listens on the loopback addresses the pod's /etc/hosts gives the Services
// and relays every connection to a Unix socket that rbn-kubelet forwards over
// SSH into the cluster (see package podforward).
//
// rbn-kubelet starts it, with its arguments, when it creates a pod whose
// annotation names Services; operators never run it. It is a static binary
// with no dependencies because its image is podman's pause image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/remote-build-nodes/rbn/internal/podforward"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// run returns the exit code: 2 for bad arguments, 1 for a failed run.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("rbn-forward", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "Unix socket to relay connections to (required)")
	var listen []string
	fs.Func("listen", "loopback IPv4 address:port to accept on (repeatable, at least one)", func(s string) error {
		listen = append(listen, s)
		return nil
	})
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(err error) int {
		fmt.Fprintln(stderr, "rbn-forward:", err)
		return 2
	}
	if fs.NArg() > 0 {
		return usage(fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usage(fmt.Errorf("--log-level %q: want debug, info, warn or error", *level))
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	f, err := podforward.New(podforward.Config{Socket: *socket, Listen: listen, Logger: log})
	if err != nil {
		return usage(err)
	}
	if err := f.Run(ctx); err != nil {
		log.Error("forwarding failed", "err", err)
		return 1
	}
	return 0
}
