// Command rbn-kubelet serves every RemoteBuildNode of a cluster as a virtual Kubernetes node.
// `rbn-kubelet portal ...` is rbn-portal instead, which runs on every real node so that
// Services reach pods on remote build nodes (docs/services.md); `rbn-kubelet approver ...`
// is rbn-approver, which approves the client certificates of the nodes rbn-kubelet serves.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/remote-build-nodes/rbn/internal/app/approver"
	"github.com/remote-build-nodes/rbn/internal/app/kubelet"
	"github.com/remote-build-nodes/rbn/internal/app/portal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	name, run, args := "rbn-kubelet", kubelet.Run, os.Args[1:]
	switch {
	case len(args) > 0 && args[0] == "portal":
		name, run, args = "rbn-portal", portal.Run, args[1:]
	case len(args) > 0 && args[0] == "approver":
		name, run, args = "rbn-approver", approver.Run, args[1:]
	}
	if err := run(ctx, args, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
