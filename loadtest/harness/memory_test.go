package harness

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMemoryMeasuresAWeirProcess builds weir, runs the memory measurement
// briefly over a small backlog, and checks that it measured the child
// process (not this one), that weir made progress and stopped cleanly, and
// that the ratio is the peak over the budget. Whether the peak is within the
// budget is the benchmark's to say, not a test's.
func TestMemoryMeasuresAWeirProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds weir and runs it for seconds")
	}
	exe := filepath.Join(t.TempDir(), "weir")
	build := exec.Command("go", "build", "-o", exe, "github.com/weirhq/weir/cmd/weir")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building weir: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Memory(ctx, MemoryOptions{Exe: exe, Records: 50_000, Duration: 4 * time.Second,
		Sleep: 5 * time.Millisecond, MaxInflightBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BudgetBytes != 8<<20+MemoryHeadroomBudget {
		t.Errorf("budget %d, want max_inflight_bytes + 64 MiB", rep.BudgetBytes)
	}
	if rep.PeakRSSBytes < 10<<20 || rep.MedianRSSBytes <= 0 || rep.MedianRSSBytes > rep.PeakRSSBytes {
		t.Errorf("implausible resident sets: peak %d, median %d", rep.PeakRSSBytes, rep.MedianRSSBytes)
	}
	if rep.HandlersPeakRSSBytes <= 0 {
		t.Error("no handler process was sampled")
	}
	if rep.Committed <= 0 || rep.Committed > 50_000 {
		t.Errorf("committed %d of 50000 records", rep.Committed)
	}
	if want := float64(rep.PeakRSSBytes) / float64(rep.BudgetBytes); rep.Ratio != want {
		t.Errorf("ratio %v, want %v", rep.Ratio, want)
	}
}
