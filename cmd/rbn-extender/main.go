// Command rbn-extender is a kube-scheduler extender for remote build nodes:
// it keeps pods off build hosts that would fail them and prefers hosts that
// already have the pod's image, from the facts rbn-kubelet publishes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/remote-build-nodes/rbn/internal/app/extender"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := extender.Run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rbn-extender:", err)
		os.Exit(1)
	}
}
