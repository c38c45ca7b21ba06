//go:build !unix

package testenv

import "os"

// Without SIGSTOP, Pause kills; tests of hangs run on unix.
var sigPause, sigResume = os.Kill, os.Interrupt
