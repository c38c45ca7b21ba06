//go:build linux

package plugins

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill a handler process when the host dies
// (even by SIGKILL), so no orphaned handler outlives its host.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
