// Command peerdrive is the hub's side of the side-by-side comparison with
// Centrifugo (loadtest/peers.sh): it measures a running hubd exactly the way
// the peer's driver (../shared/peers/centrifugo/driver, built at run time,
// never part of this repository) measures Centrifugo, so that the two run in
// one session on one machine, alternated, and compare as ratios.
//
// It is the hub driver of ../shared/peers/hub-driver brought into the
// project, section by section: the same flags (where they mean the same),
// the same scheduler, workers, batch sizes, warm-up, window and drain, the
// same latency clock (a driver timestamp in the payload), the same per-user
// loss and per-device gap/duplicate accounting (by seq here, by offset
// there), the same /proc sampling and the same output lines, which
// loadtest/peers.sh reads. What differs is only the hub's protocol
// (docs/protocol.md):
//
//   - Provisioning. A Centrifugo user is a name in a JWT the driver signs; a
//     hub user is state: POST /v1/users, then POST /v1/mailboxes (one mailbox
//     per user, whose token the publisher addresses). This happens before the
//     devices connect and is timed separately (provision_s).
//   - Connecting. A device takes a single-use ticket (POST /v1/tickets), dials
//     /v1/ws, sends {"type":"hello","ticket":…,"device":"d<k>"} and waits for
//     the welcome: the counterpart of Centrifugo's connect+subscribe.
//   - Publishing. POST /v1/push with {"messages":[{"token":…,"data":…}]}: one
//     item per user message, R/100 per request at a fixed rate R (the batch
//     the Centrifugo driver sends to /api/batch). data is a string: the same
//     ~100-byte JSON text Centrifugo gets as its publication's data. The
//     items carry no idempotency key, as the peer's publications carry none;
//     that is why the request is built here and not with hubclient, which
//     gives every item a key (and the hub a key record to write).
//   - Acks. Each device acks every message after handling it,
//     {"type":"ack","seq":N} (cumulative; hub.js acks when its queue of
//     received messages is empty, which at these rates is after every
//     message). Centrifugo clients send nothing back. The acks make the hub do
//     its whole durable job per message: commit the publish, deliver it,
//     commit the ack (status delivered, receipt, trim).
//   - Pings. The hub sends {"type":"ping"} and the device answers
//     {"type":"pong"} (Centrifugo: {} and {}).
//
// Timestamps are taken from this process's clock when a batch is built and
// compared with the same clock when the message arrives, so the driver and
// the hub share a machine: -base must be a loopback address.
//
// Modes:
//
//	idle  provision -steps' last count of users, then connect -steps devices
//	      (cumulative, one per user) and print the hub's VmRSS after each
//	      step has settled.
//	load  provision -users users, connect -devices devices each, publish at
//	      -rate msgs/s (0 = as fast as -workers closed-loop publishers can)
//	      for -warmup + -duration, drain, then print latency percentiles,
//	      delivered rate, losses and CPU use.
//
// Every run is bounded: by its flags (at most an hour of publishing, 100,000
// devices) and by -timeout as a whole; Ctrl-C ends it early.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type config struct {
	mode       string
	base       string
	adminToken string
	pid        int
	steps      string
	settle     time.Duration
	hold       time.Duration
	users      int
	devices    int
	rate       int
	duration   time.Duration
	warmup     time.Duration
	tick       time.Duration
	batch      int
	workers    int
	dialers    int
	pad        int
	drain      time.Duration
	label      string
	timeout    time.Duration
}

// Bounds of one run, so that a mistyped flag cannot start a flood.
const (
	maxDevices = 100_000
	maxPublish = time.Hour
	maxRate    = 1_000_000
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerdrive:", err)
		os.Exit(1)
	}
}

// run parses args and carries out one run, printing its result lines to out.
func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("peerdrive", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&cfg.mode, "mode", "load", "idle or load")
	fs.StringVar(&cfg.base, "base", "http://127.0.0.1:23080", "hub base URL, on loopback (the WebSocket is ws://…/v1/ws)")
	fs.StringVar(&cfg.adminToken, "admin-token", "", "admin token, when the hub's registration is closed")
	fs.IntVar(&cfg.pid, "pid", 0, "hubd pid, for VmRSS and CPU from /proc")
	fs.StringVar(&cfg.steps, "steps", "5000,10000,15000", "idle: cumulative connection counts (one device per user)")
	fs.DurationVar(&cfg.settle, "settle", 5*time.Second, "idle: wait after each step before reading RSS")
	fs.DurationVar(&cfg.hold, "hold", 0, "idle: after the last step, keep the connections this long more and read RSS again (0: no)")
	fs.IntVar(&cfg.users, "users", 5000, "load: users")
	fs.IntVar(&cfg.devices, "devices", 1, "load: WebSocket devices per user")
	fs.IntVar(&cfg.rate, "rate", 1000, "load: publish rate in msgs/s; 0 = max (closed loop)")
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "load: measured window")
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "load: publishing before the measured window")
	fs.DurationVar(&cfg.tick, "tick", 10*time.Millisecond, "load: fixed-rate scheduler tick (one batch per tick)")
	fs.IntVar(&cfg.batch, "batch", 200, "load: messages per batch request in max mode, and the cap per request at fixed rates")
	fs.IntVar(&cfg.workers, "workers", 4, "load: concurrent HTTP publishers")
	fs.IntVar(&cfg.dialers, "dialers", 64, "concurrent provisioning requests and WebSocket dials")
	fs.IntVar(&cfg.pad, "pad", 64, "load: filler bytes in each payload")
	fs.DurationVar(&cfg.drain, "drain", 10*time.Second, "load: longest wait for in-flight messages after publishing stops")
	fs.StringVar(&cfg.label, "label", "", "free text echoed in the result line")
	fs.DurationVar(&cfg.timeout, "timeout", 15*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.base = strings.TrimRight(cfg.base, "/")
	if err := cfg.check(); err != nil {
		return err
	}
	raiseNoFile()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	switch cfg.mode {
	case "idle":
		return runIdle(ctx, cfg, out)
	case "load":
		return runLoad(ctx, cfg, out)
	default:
		return fmt.Errorf("unknown -mode %q (idle or load)", cfg.mode)
	}
}

// check refuses flags that would leave loopback or exceed a run's bounds.
func (cfg *config) check() error {
	u, err := url.Parse(cfg.base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-base %q: want http://HOST:PORT", cfg.base)
	}
	if !isLoopback(u.Hostname()) {
		return fmt.Errorf("-base %q: the driver measures latency with its own clock and targets loopback only (127.0.0.0/8, ::1, localhost)", cfg.base)
	}
	switch {
	case cfg.users <= 0 || cfg.devices <= 0:
		return errors.New("-users and -devices must be positive")
	case cfg.users*cfg.devices > maxDevices:
		return fmt.Errorf("-users × -devices is at most %d", maxDevices)
	case cfg.rate < 0 || cfg.rate > maxRate:
		return fmt.Errorf("-rate is 0 (closed loop) to %d", maxRate)
	case cfg.duration <= 0 || cfg.warmup < 0 || cfg.duration+cfg.warmup > maxPublish:
		return fmt.Errorf("-duration must be positive and -warmup + -duration at most %s", maxPublish)
	case cfg.tick <= 0 || cfg.batch <= 0 || cfg.workers <= 0 || cfg.dialers <= 0 || cfg.pad < 0:
		return errors.New("-tick, -batch, -workers and -dialers must be positive, -pad not negative")
	case cfg.drain < 0 || cfg.settle < 0 || cfg.hold < 0 || cfg.timeout <= 0:
		return errors.New("-drain, -settle and -hold must not be negative, -timeout positive")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// raiseNoFile lifts the soft open-file limit to the hard one.
func raiseNoFile() {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err == nil && r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}
