//go:build linux

package host_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// checkRecorder collects what the churn checks report.
type checkRecorder struct {
	t      *testing.T
	errors []string
}

func (r *checkRecorder) Helper() {}
func (r *checkRecorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *checkRecorder) Logf(format string, args ...any) { r.t.Logf(format, args...) }

// churnCase is a made-up run of the churn test: processes with their log
// events (at seconds after churnT0) and outputs.
type churnCase struct {
	procs  []*weirProc
	killed *weirProc
	pids   map[int64]*weirProc
	recs   []*kgo.Record
}

var churnT0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func churnAt(sec float64) time.Time { return churnT0.Add(time.Duration(sec * float64(time.Second))) }

func (c *churnCase) proc(name string, killedAt float64, evs ...logEvent) *weirProc {
	p := &weirProc{name: name, events: evs, end: churnAt(100)}
	if killedAt > 0 {
		p.killed, p.end = true, churnAt(killedAt)
		c.killed = p
	}
	c.procs = append(c.procs, p)
	return p
}

func churnEv(sec float64, msg, part string) logEvent {
	return logEvent{at: churnAt(sec), msg: msg, part: part}
}

func churnCommit(sec float64, part string, pos int) logEvent {
	return logEvent{at: churnAt(sec), msg: "committed", positions: map[string]string{part: strconv.Itoa(pos)}}
}

// out adds an output of id (key k<id%2>) written by p at sec.
func (c *churnCase) out(id int, p *weirProc, sec float64) {
	var pid int64
	for k, v := range c.pids {
		if v == p {
			pid = k
		}
	}
	c.recs = append(c.recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(id%2)), Value: []byte(strconv.Itoa(id)),
		ProducerID: pid, Timestamp: churnAt(sec)})
}

// check runs the churn checks on the case: n ids over 2 keys and 2
// partitions (id's partition is id%2; its input offset id/2).
func (c *churnCase) check(t *testing.T, n int) []string {
	r := &checkRecorder{t: t}
	own := ownershipFromLogs(r, c.procs)
	for _, p := range c.procs {
		p.checkNoCommitWithoutOwnership(r)
	}
	offs := make([]int64, n)
	for id := range offs {
		offs[id] = int64(id / 2)
	}
	checkChurnOutputs(r, c.recs, n, 2, 2, own, c.killed, offs, c.pids)
	return r.errors
}

// The churn test's checks find what they are there to find, and nothing in
// a run that is as it should be.
func TestChurnChecksCatchViolations(t *testing.T) {
	t.Run("a good run", func(t *testing.T) {
		c := &churnCase{pids: map[int64]*weirProc{}}
		a := c.proc("A", 0, churnEv(0, "partition assigned", "in/0"), churnEv(0, "partition assigned", "in/1"),
			churnCommit(5, "in/1", 0), churnEv(10, "partition revoked", "in/0"), churnEv(10, "partition revoked", "in/1"))
		b := c.proc("B", 15, churnEv(11, "partition assigned", "in/1"), churnCommit(12, "in/1", 0))
		cc := c.proc("C", 0, churnEv(11, "partition assigned", "in/0"), churnEv(20, "partition assigned", "in/1"),
			churnEv(30, "partition revoked", "in/0"), churnEv(30, "partition revoked", "in/1"))
		c.pids[100], c.pids[200], c.pids[300] = a, b, cc
		c.out(0, a, 1)
		c.out(1, a, 2)
		c.out(3, b, 13) // offset 1: B had committed 0 only
		c.out(2, cc, 21)
		c.out(3, cc, 22) // written again by the next owner
		if errs := c.check(t, 4); len(errs) > 0 {
			t.Errorf("a good run was reported:\n%s", strings.Join(errs, "\n"))
		}
	})

	t.Run("a bad run", func(t *testing.T) {
		c := &churnCase{pids: map[int64]*weirProc{}}
		a := c.proc("A", 0, churnEv(0, "partition assigned", "in/0"), churnEv(10, "partition revoked", "in/0"),
			churnCommit(11, "in/0", 5)) // a commit after the revoke
		b := c.proc("B", 8, churnEv(0, "partition assigned", "in/1"), churnCommit(2, "in/1", 3))
		cc := c.proc("C", 0, churnEv(5, "partition assigned", "in/0"), // while A owns it
			churnEv(9, "partition assigned", "in/1"), churnEv(20, "partition revoked", "in/0"), churnEv(20, "partition revoked", "in/1"))
		c.pids[100], c.pids[200], c.pids[300] = a, b, cc
		c.out(2, a, 1)
		c.out(0, a, 2)   // after 2 in key k0: order broken
		c.out(6, a, 3)   // id 4 never written: lost
		c.out(7, a, 4)   // partition 1, which A never owned
		c.out(1, b, 1)   //
		c.out(3, b, 3)   // offset 1, committed by B (up to 3) ...
		c.out(3, cc, 10) // ... yet written again
		c.out(5, cc, 12)
		c.out(5, cc, 13) // a duplicate from a process that was not killed
		errs := c.check(t, 8)
		for _, want := range []string{
			"two owners at once",
			"while it did not own it",
			"ids lost",
			"order broken",
			"was not its owner",
			"had committed up to",
			"only a record the killed process",
		} {
			found := false
			for _, e := range errs {
				found = found || strings.Contains(e, want)
			}
			if !found {
				t.Errorf("no report of %q; reports:\n%s", want, strings.Join(errs, "\n"))
			}
		}
	})
}
