//go:build !unix

package loadtest

// cpuTimes is not measured on this platform.
func cpuTimes() (self, children float64) { return 0, 0 }
