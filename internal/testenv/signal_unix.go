//go:build unix

package testenv

import "syscall"

// The signals of RedisServer.Pause and Resume.
var sigPause, sigResume = syscall.SIGSTOP, syscall.SIGCONT
