// Command hubload puts a hub under load and checks that nothing was lost on
// the way: every scenario ends with a table of latencies and figures and a
// verdict (lost, duplicated and out-of-order messages), and writes a JSON
// result and an HTML report with charts.
//
//	hubload throughput --nodes http://127.0.0.1:8080 --users 5000 --devices 2 --rate 5000 --duration 60s
//
// Run it with --help for the scenarios and flags. Targets are the nodes
// named on the command line; every scenario stops by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/notifyhub/hub/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitPass  = 0
	exitFail  = 1 // the verdict found lost, duplicated or out-of-order messages
	exitError = 2 // bad flags, or the run could not be carried out
)

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: hubload <scenario> [flags]")
	fmt.Fprintln(w, "\nscenarios:")
	for _, s := range loadtest.Scenarios {
		fmt.Fprintf(w, "  %-16s %s\n", s.Name, s.Help)
	}
	fmt.Fprintln(w, "\nhubload <scenario> --help lists the flags.")
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitError
		}
		return exitPass
	}
	name := args[0]
	if name == "worker" { // a connections worker, started by hubload itself
		if err := loadtest.RunWorker(ctx, stdin, stdout, stderr); err != nil {
			fmt.Fprintln(stderr, "hubload worker:", err)
			return exitError
		}
		return exitPass
	}
	known := false
	for _, s := range loadtest.Scenarios {
		known = known || s.Name == name
	}
	if !known {
		fmt.Fprintf(stderr, "hubload: unknown scenario %q\n\n", name)
		usage(stderr)
		return exitError
	}

	var o loadtest.Options
	fs := flag.NewFlagSet("hubload "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.String("nodes", "http://127.0.0.1:8080", "comma-separated base URLs of the hub's nodes")
	fs.StringVar(&o.AdminToken, "admin-token", "", "admin token, when the hub's registration is closed")
	fs.IntVar(&o.Users, "users", 0, "users, each with a mailbox (default 100)")
	fs.IntVar(&o.Devices, "devices", 0, "devices per user (default 2; connections: 3)")
	fs.StringVar(&o.Transport, "transport", "ws", "device transport: ws, poll, sse or mix")
	fs.IntVar(&o.Rate, "rate", 0, "publishes per second (default 1000; burst 20000)")
	fs.DurationVar(&o.Duration, "duration", 0, "how long to publish (default 10s)")
	fs.IntVar(&o.Messages, "messages", 0, "burst, reconnect-storm, offline-drain: messages to publish")
	fs.IntVar(&o.PayloadSize, "size", 0, "payload bytes (default 64)")
	fs.IntVar(&o.Publishers, "publishers", 0, "publish requests in flight at most (default 64; burst 256)")
	fs.IntVar(&o.Conns, "conns", 0, "connections: idle devices to open (default 1000)")
	fs.IntVar(&o.Workers, "workers", 0, "connections: worker processes (default: one per 10,000 connections)")
	fs.IntVar(&o.KillPID, "kill-pid", 0, "failover: pid of the node to SIGKILL a third into the run (0: you are asked to)")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", 0, "for every device to connect (default 60s)")
	fs.IntVar(&o.ConnectConcurrency, "connect-concurrency", 0, "devices connecting (ticket to welcome) at once (default 256)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 0, "after publishing, for every message to arrive (default 60s; offline-drain 10m)")
	report := fs.String("report", "hubload-"+name, "write PREFIX.json and PREFIX.html (empty: neither)")
	quiet := fs.Bool("quiet", false, "no progress line")
	verbose := fs.Bool("verbose", false, "log device and publish errors to stderr")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitPass
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hubload: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	o.Nodes = strings.Split(*nodes, ",")
	if !*quiet {
		o.Progress = stderr
	}
	if *verbose {
		o.Log = stderr
	}

	started := time.Now()
	res, err := loadtest.Run(ctx, name, o)
	if err != nil {
		fmt.Fprintf(stderr, "hubload: %v (after %s)\n", err, time.Since(started).Round(time.Millisecond))
		return exitError
	}
	if err := res.WriteText(stdout); err != nil {
		return exitError
	}
	if *report != "" {
		for _, out := range []struct {
			ext   string
			write func(io.Writer) error
		}{{".json", res.WriteJSON}, {".html", res.WriteHTML}} {
			if err := writeFile(*report+out.ext, out.write); err != nil {
				fmt.Fprintln(stderr, "hubload:", err)
				return exitError
			}
		}
		fmt.Fprintf(stdout, "report: %s.json, %s.html\n", *report, *report)
	}
	if !res.Pass() {
		return exitFail
	}
	return exitPass
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
