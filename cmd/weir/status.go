package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirhq/weir/host"
	"github.com/weirhq/weir/host/config"
)

func newStatusCmd() *cobra.Command {
	var (
		addr    string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running weir's pipelines, lanes and breakers (from its admin server's /status)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := fetchStatus(cmd.Context(), addr, timeout)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			var st host.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("reading /status from %s: %w", addr, err)
			}
			return printStatus(cmd.OutOrStdout(), &st)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", config.DefaultAdminAddr, "the admin server's host:port (admin.addr in the config file)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the /status JSON as it is")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}

func fetchStatus(ctx context.Context, addr string, timeout time.Duration) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + "/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("--addr %q: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("getting %s (is weir running, with admin.addr %s?): %w", url, addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("getting %s: %s", url, resp.Status)
	}
	return body, nil
}

// printStatus writes st as a few aligned tables: one line per pipeline,
// then its breakers and lanes.
func printStatus(w io.Writer, st *host.Status) error {
	ready := "yes"
	if !st.Ready {
		ready = "no: " + st.Reason
	}
	fmt.Fprintf(w, "host %s  ready %s\n", st.Host, ready)
	for _, p := range st.Pipelines {
		c := p.Counters
		fmt.Fprintf(w, "\npipeline %s (%s)\n", p.Name, p.State)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  RECORDS IN\tCOMPLETED\tOUTPUTS\tFAILURES\tDLQ\tRETRIES\tBATCHES\tIN-FLIGHT\tPAUSED\tPLUGIN\tRESTARTS")
		fmt.Fprintf(tw, "  %d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s x%d\t%d\n",
			c.RecordsIn, c.Completed, c.Outputs, c.Failures, p.DLQ, c.Retries, c.Batches,
			humanBytes(p.InflightBytes), len(p.Paused), p.Plugin.Name, p.Plugin.Instances, p.Plugin.Restarts)
		if err := tw.Flush(); err != nil {
			return err
		}
		var bs []string
		for _, b := range p.Breakers {
			bs = append(bs, b.Name+"="+b.State)
		}
		fmt.Fprintf(w, "  breakers: %s\n", strings.Join(bs, "  "))
		source := "connected"
		if !p.Source.Connected {
			source = "not connected: " + p.Source.Error
		}
		fmt.Fprintf(w, "  plugin processes up: %d of %d  source: %s\n", p.Plugin.Up, p.Plugin.Instances, source)
		fmt.Fprintf(w, "  lag: %d (drainable %d, blocked %d)", p.Lag.Lag, p.Lag.Drainable, p.Lag.Blocked)
		if p.Lag.MaxMillisBehind > 0 {
			fmt.Fprintf(w, "  max %s behind (kinesis)", time.Duration(p.Lag.MaxMillisBehind)*time.Millisecond)
		}
		fmt.Fprintln(w)
		if len(p.Lanes) == 0 {
			fmt.Fprintln(w, "  no partitions assigned")
			continue
		}
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  TOPIC\tPARTITION\tCOMMITTED\tLAG\tDRAINABLE\tBLOCKED\tOLDEST\tPAUSED")
		for _, l := range p.Lanes {
			committed := l.Committed
			if committed == "" {
				committed = "-"
			}
			paused := ""
			if l.Paused {
				paused = "paused"
			}
			lag, drainable, blocked := "-", "-", "-"
			if l.Lag.Known {
				lag, drainable, blocked = strconv.FormatInt(l.Lag.Lag, 10), strconv.FormatInt(l.Lag.Drainable, 10), strconv.FormatInt(l.Lag.Blocked, 10)
				if l.Lag.BlockedBy != "" {
					blocked += " (" + l.Lag.BlockedBy + ")"
				}
			} else if !l.Lag.BehindAt.IsZero() { // a Kinesis shard: lag in time only
				lag = (time.Duration(l.Lag.MillisBehind) * time.Millisecond).String() + " behind"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%.1fs\t%s\n", l.Topic, l.Partition, committed, lag, drainable, blocked, l.OldestSeconds, paused)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
