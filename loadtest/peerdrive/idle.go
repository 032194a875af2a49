package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// runIdle reads the hub's VmRSS fresh (0), once every user of the last step
// is provisioned (users and mailboxes are hub state that Centrifugo has no
// counterpart of), and after each step of devices has connected and settled.
// KiB/conn (vs 0) is the figure to compare with Centrifugo's; vs provisioned
// leaves the users' own state out.
func runIdle(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.pid == 0 {
		return errors.New("-pid is required in idle mode")
	}
	cfg.devices = 1
	pid := strconv.Itoa(cfg.pid)
	var steps []int
	for _, f := range strings.Split(cfg.steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || (len(steps) > 0 && n < steps[len(steps)-1]) {
			return fmt.Errorf("bad -steps %q: want rising positive counts", cfg.steps)
		}
		steps = append(steps, n)
	}
	most := steps[len(steps)-1]
	if most > maxDevices {
		return fmt.Errorf("-steps: at most %d connections", maxDevices)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := newStats()
	users := make([]user, most)
	d := &devices{clients: make([]*client, most)}
	defer d.close()

	base := vmRSSKiB(pid)
	t0 := time.Now()
	if err := provisionRange(ctx, cfg, users, 0, most); err != nil {
		return err
	}
	pt := time.Since(t0)
	if err := sleep(ctx, cfg.settle); err != nil {
		return err
	}
	prov := vmRSSKiB(pid)
	fmt.Fprintf(out, "provisioned %d users and mailboxes in %.1f s: server VmRSS %d KiB (+%d KiB, %.1f KiB/user)\n",
		most, pt.Seconds(), prov, prov-base, float64(prov-base)/float64(most))
	fmt.Fprintf(out, "| connections | server VmRSS KiB | delta KiB | KiB/conn (vs 0) | KiB/conn (vs provisioned) | connect time s | driver VmRSS KiB |\n")
	fmt.Fprintf(out, "|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(out, "| 0 | %d | - | - | - | - | %d |\n", base, vmRSSKiB("self"))
	have := 0
	for _, n := range steps {
		t0 := time.Now()
		if err := d.connectRange(ctx, cfg, s, users, have, n); err != nil {
			return err
		}
		ct := time.Since(t0)
		have = n
		if err := sleep(ctx, cfg.settle); err != nil {
			return err
		}
		if n := s.disconnects.Load(); n > 0 {
			return fmt.Errorf("%d connections dropped", n)
		}
		rss := vmRSSKiB(pid)
		fmt.Fprintf(out, "| %d | %d | %d | %.1f | %.1f | %.1f | %d |\n", n, rss, rss-base, float64(rss-base)/float64(n),
			float64(rss-prov)/float64(n), ct.Seconds(), vmRSSKiB("self"))
	}
	if cfg.hold > 0 {
		if err := sleep(ctx, cfg.hold); err != nil {
			return err
		}
		if n := s.disconnects.Load(); n > 0 {
			return fmt.Errorf("%d connections dropped", n)
		}
		rss := vmRSSKiB(pid)
		fmt.Fprintf(out, "| %d (+%s) | %d | %d | %.1f | %.1f | - | %d |\n", have, cfg.hold, rss, rss-base, float64(rss-base)/float64(have),
			float64(rss-prov)/float64(have), vmRSSKiB("self"))
	}
	return nil
}

// sleep waits d, or less if ctx ends first (then it returns ctx's error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
