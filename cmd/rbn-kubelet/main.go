// Command rbn-kubelet serves every RemoteBuildNode of a cluster as a virtual Kubernetes node.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/remote-build-nodes/rbn/internal/app/kubelet"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := kubelet.Run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rbn-kubelet:", err)
		os.Exit(1)
	}
}
