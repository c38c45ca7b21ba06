package loadtest

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resources is what a load test cost this process and its children.
type Resources struct {
	// PeakRSSSelfBytes is this process's peak resident set (VmHWM).
	PeakRSSSelfBytes int64 `json:"peak_rss_self_bytes"`
	// PeakRSSChildrenBytes is the largest sum of the children's resident
	// sets (VmRSS) seen while sampling (plugin processes; a redis-server
	// this process started is excluded).
	PeakRSSChildrenBytes int64 `json:"peak_rss_children_bytes"`
	// PeakRSSBytes is the sum of the two (an upper bound of the peak of
	// the whole process tree).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// Children is how many child processes were seen.
	Children int `json:"children_seen"`
	// CPUSeconds is user+system time of this process and its reaped
	// children (getrusage RUSAGE_SELF + RUSAGE_CHILDREN) during the test.
	CPUSeconds         float64 `json:"cpu_s"`
	CPUSelfSeconds     float64 `json:"cpu_self_s"`
	CPUChildrenSeconds float64 `json:"cpu_children_s"`
}

// ProcSampler samples the resident set of this process's children until
// stopped. Its methods are safe for concurrent use.
type ProcSampler struct {
	mu        sync.Mutex
	exclude   map[int]bool
	peakSum   int64
	seen      map[int]bool
	stop      chan struct{}
	done      chan struct{}
	cpuSelf0  float64
	cpuChild0 float64
}

// StartProcSampler starts sampling every interval, and notes the CPU time
// used so far (so Stop reports what was used since).
func StartProcSampler(interval time.Duration) *ProcSampler {
	s := &ProcSampler{exclude: map[int]bool{}, seen: map[int]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	s.cpuSelf0, s.cpuChild0 = cpuTimes()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Exclude leaves the child pid out of the sums (a redis-server, say).
func (s *ProcSampler) Exclude(pid int) {
	s.mu.Lock()
	s.exclude[pid] = true
	s.mu.Unlock()
}

func (s *ProcSampler) sample() {
	self := os.Getpid()
	var sum int64
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pid := range childrenOf(self) {
		if s.exclude[pid] {
			continue
		}
		s.seen[pid] = true
		sum += statusBytes(filepath.Join("/proc", strconv.Itoa(pid), "status"), "VmRSS:")
	}
	s.peakSum = max(s.peakSum, sum)
}

// Stop ends sampling and returns the resources used. Call it after the
// children have exited (so their CPU time is counted).
func (s *ProcSampler) Stop() Resources {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	self, child := cpuTimes()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Resources{
		PeakRSSSelfBytes:     statusBytes("/proc/self/status", "VmHWM:"),
		PeakRSSChildrenBytes: s.peakSum,
		Children:             len(s.seen),
		CPUSelfSeconds:       self - s.cpuSelf0,
		CPUChildrenSeconds:   child - s.cpuChild0,
	}
	r.PeakRSSBytes = r.PeakRSSSelfBytes + r.PeakRSSChildrenBytes
	r.CPUSeconds = r.CPUSelfSeconds + r.CPUChildrenSeconds
	return r
}

// childrenOf lists the processes whose parent is pid (empty where /proc is
// missing).
func childrenOf(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// statusBytes reads a "Name:   N kB" line of a /proc status file (0 when
// unavailable).
func statusBytes(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, field) {
			continue
		}
		fs := strings.Fields(line[len(field):])
		if len(fs) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		return n * 1024
	}
	return 0
}

// CPUTimes returns the user+system seconds used so far by this process and
// by its children that have exited (and been waited for).
func CPUTimes() (self, children float64) { return cpuTimes() }

// StatusBytes returns a size field of /proc/PID/status ("VmRSS:",
// "VmHWM:") in bytes; 0 if the process or the field is gone.
func StatusBytes(pid int, field string) int64 {
	return statusBytes(filepath.Join("/proc", strconv.Itoa(pid), "status"), field)
}

// Children returns the pids of pid's child processes.
func Children(pid int) []int { return childrenOf(pid) }
