package testenv

import "syscall"

// sysProcAttr makes the kernel kill redis-server if the test process dies
// first (a test binary killed by a timeout must not leave servers behind).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
