package framework

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// commandWaitDelay bounds how long Wait waits for a process's output once
// it has been killed: a grandchild that inherited the pipe (podman under
// hack/hosts.sh, ssh under scp) must not keep a test waiting forever.
const commandWaitDelay = 10 * time.Second

// Command is exec.CommandContext for the tools the tests run (kubectl, ssh,
// scp, hack/ scripts): the process leads a group of its own, the whole
// group is killed when ctx ends, and Wait returns at most commandWaitDelay
// later even if something still holds its stdout or stderr. A test that
// runs a tool therefore fails at its deadline instead of hanging the
// suite until go test's own timeout. On a pseudo-terminal (setsid, which
// makes the process a group leader too) clear SysProcAttr.Setpgid: the
// kernel refuses setpgid after setsid.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = commandWaitDelay
	return cmd
}
