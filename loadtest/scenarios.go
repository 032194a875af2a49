package loadtest

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Burst publishes o.Messages (default 20,000) due at o.Rate (default
// 20,000/s: far above what one node sustains for single publishes), with
// o.Publishers in flight, to connected devices, and reports how long the
// backlog takes to drain.
func Burst(ctx context.Context, o Options) (*Result, error) {
	if o.Publishers <= 0 {
		o.Publishers = 256
	}
	if err := o.withDefaults(20_000, 20_000); err != nil {
		return nil, err
	}
	o.Duration = time.Duration(int64(o.Messages) * int64(time.Second) / int64(o.Rate))
	return run(ctx, "burst", &o, func(ctx context.Context, f *fleet, res *Result) error {
		res.param("messages", o.Messages)
		res.param("publishes per second asked", o.Rate)
		res.param("publishes in flight at most", o.Publishers)
		start := time.Now()
		p := &publisher{f: f, o: &o}
		p.atRate(ctx, o.Rate, o.Duration)
		published := time.Now()
		if err := f.drain(ctx, o.DrainTimeout, res); err != nil {
			return err
		}
		drained := time.Now()
		res.figure("publish rate reached", float64(o.Messages)/published.Sub(start).Seconds(), "/s")
		res.figure("backlog drained after the last publish", drained.Sub(published).Seconds(), "s")
		res.figure("burst start to everything delivered", drained.Sub(start).Seconds(), "s")
		return nil
	})
}

// ReconnectStorm connects every device, drops them all at once, publishes
// o.Messages (default 10 per device's user) while they are away, and lets
// them all reconnect at the same moment.
func ReconnectStorm(ctx context.Context, o Options) (*Result, error) {
	if err := o.withDefaults(1000, 0); err != nil {
		return nil, err
	}
	if o.Messages <= 0 {
		o.Messages = 10 * o.Users
	}
	return run(ctx, "reconnect-storm", &o, func(ctx context.Context, f *fleet, res *Result) error {
		res.param("backlog messages", o.Messages)
		f.gate.shut()
		if err := waitFor(ctx, "devices to disconnect", func() bool { return f.connected.Load() == 0 }); err != nil {
			return err
		}
		p := &publisher{f: f, o: &o}
		if err := p.batches(ctx, o.Messages); err != nil {
			return err
		}
		start := time.Now()
		f.gate.reopen()
		if err := f.waitConnected(ctx, o.ConnectTimeout); err != nil {
			return err
		}
		connected := time.Now()
		if err := f.drain(ctx, o.DrainTimeout, res); err != nil {
			return err
		}
		drained := time.Now()
		n := float64(len(f.devices))
		res.figure("every device reconnected", connected.Sub(start).Seconds(), "s")
		res.figure("reconnects per second", n/connected.Sub(start).Seconds(), "/s")
		res.figure("backlog delivered", drained.Sub(start).Seconds(), "s")
		res.figure("backlog delivery rate", float64(o.Messages*o.Devices)/drained.Sub(start).Seconds(), "msgs/s")
		res.Notes = append(res.Notes, "deliver latencies count from the publish, so they include the time the devices were away")
		return nil
	})
}

// OfflineDrain connects every device once (so that the hub knows it and
// keeps its messages until it acks them), takes them all offline, publishes
// o.Messages (default 1,000,000) in batches, then lets the devices connect
// and reports the rate at which the stored messages reach them.
func OfflineDrain(ctx context.Context, o Options) (*Result, error) {
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Minute
	}
	if err := o.withDefaults(1000, 1_000_000); err != nil {
		return nil, err
	}
	return run(ctx, "offline-drain", &o, func(ctx context.Context, f *fleet, res *Result) error {
		res.param("stored messages", o.Messages)
		f.gate.shut()
		if err := waitFor(ctx, "devices to disconnect", func() bool { return f.connected.Load() == 0 }); err != nil {
			return err
		}
		start := time.Now()
		p := &publisher{f: f, o: &o}
		if err := p.batches(ctx, o.Messages); err != nil {
			return err
		}
		stored := time.Now()
		f.gate.reopen()
		if err := f.drain(ctx, o.DrainTimeout, res); err != nil {
			return err
		}
		drained := time.Now()
		res.figure("batch publish rate", float64(o.Messages)/stored.Sub(start).Seconds(), "msgs/s")
		res.figure("drain time", drained.Sub(stored).Seconds(), "s")
		res.figure("drain rate", float64(o.Messages*o.Devices)/drained.Sub(stored).Seconds(), "msgs/s")
		res.Notes = append(res.Notes, "deliver latencies count from the publish, so they include the time the messages waited for their devices")
		return nil
	})
}

// Failover publishes at o.Rate for o.Duration with an Idempotency-Key on
// every publish (retried across nodes) to devices spread over the nodes,
// and a third into the run kills a node: o.Kill, or SIGKILL to o.KillPID,
// or, with neither, asks the operator on o.Progress to kill one. It reports
// the time without accepted writes and the verdict.
func Failover(ctx context.Context, o Options) (*Result, error) {
	if err := o.withDefaults(1000, 0); err != nil {
		return nil, err
	}
	kill := o.Kill
	switch {
	case kill != nil:
	case o.KillPID > 0:
		kill = func() error { return syscall.Kill(o.KillPID, syscall.SIGKILL) }
	default:
		kill = func() error {
			if o.Progress == nil {
				return errors.New("no node to kill: give a pid, or a progress writer to ask the operator")
			}
			fmt.Fprintln(o.Progress, "hubload: kill a node now (the leader, for the worst case)")
			return nil
		}
	}
	return run(ctx, "failover", &o, func(ctx context.Context, f *fleet, res *Result) error {
		res.param("publishes per second", o.Rate)
		res.param("duration", o.Duration)
		p := &publisher{f: f, o: &o, keys: true}
		killAt := make(chan time.Time, 1)
		timer := time.AfterFunc(o.Duration/3, func() {
			now := time.Now()
			if err := kill(); err != nil {
				f.logf("kill: %v", err)
			}
			killAt <- now
		})
		defer timer.Stop()
		p.atRate(ctx, o.Rate, o.Duration)
		var at time.Time
		select {
		case at = <-killAt:
		default:
			return errors.New("the run ended before the kill")
		}
		if err := f.drain(ctx, o.DrainTimeout, res); err != nil {
			return err
		}
		longest, around := p.writeGaps(at)
		res.figure("time without accepted writes around the kill", around.Seconds(), "s")
		res.figure("longest time without accepted writes", longest.Seconds(), "s")
		return nil
	})
}
