package loadtest

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"strings"
	"time"
)

// Options are a run's parameters. Each scenario reads the ones it needs;
// zero values take the defaults in withDefaults.
type Options struct {
	Nodes      []string // base URLs of the hub's nodes, such as http://127.0.0.1:8080
	AdminToken string   // for POST /v1/users when registration is closed

	Users     int    // users, each with one mailbox; default 100
	Devices   int    // devices per user; default 2
	Transport string // ws, poll, sse, or mix (the devices take turns); default ws

	Rate        int           // publishes per second; default 1000 (burst: 20,000)
	Duration    time.Duration // how long to publish; default 10s
	Messages    int           // burst, reconnect-storm, offline-drain: how many to publish
	PayloadSize int           // bytes of each payload; default 64 (at least the 40 the checker writes)
	Publishers  int           // publish requests in flight at most; default 64

	ConnectTimeout     time.Duration // for every device to connect; default 60s
	ConnectConcurrency int           // devices connecting (ticket to welcome) at once; default 256
	DrainTimeout       time.Duration // after publishing, for every device to get everything; default 60s

	// Connections: how many idle devices, over how many worker processes,
	// and how to start a worker (default: this executable with "worker").
	Conns   int
	Workers int
	Spawn   func() *exec.Cmd

	// Failover: the process to SIGKILL a third into the run (0: ask the
	// operator, on Log), or a function that does the killing (tests).
	KillPID int
	Kill    func() error

	Progress io.Writer // a line a second while publishing; nil: quiet
	Log      io.Writer // device and publish errors; nil: discarded
}

// maxDuration and maxMessages bound every run.
const (
	maxDuration = time.Hour
	maxMessages = 10_000_000
	maxUsers    = 1_000_000
)

func (o *Options) withDefaults(rate, messages int) error {
	if len(o.Nodes) == 0 {
		return errors.New("no nodes: give at least one base URL")
	}
	for i, n := range o.Nodes {
		u, err := url.Parse(n)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("node %q: want a base URL such as http://127.0.0.1:8080", n)
		}
		o.Nodes[i] = strings.TrimSuffix(n, "/")
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.Users, 100)
	def(&o.Devices, 2)
	def(&o.Rate, rate)
	def(&o.Messages, messages)
	def(&o.PayloadSize, 64)
	def(&o.Publishers, 64)
	def(&o.ConnectConcurrency, 256)
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 60 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 60 * time.Second
	}
	switch o.Transport {
	case "":
		o.Transport = WebSocket
	case WebSocket, LongPoll, SSE, "mix":
	default:
		return fmt.Errorf("transport %q: want ws, poll, sse or mix", o.Transport)
	}
	switch {
	case o.Duration > maxDuration:
		return fmt.Errorf("duration %s: at most %s", o.Duration, maxDuration)
	case o.Messages > maxMessages:
		return fmt.Errorf("messages %d: at most %d", o.Messages, maxMessages)
	case o.Users > maxUsers:
		return fmt.Errorf("users %d: at most %d", o.Users, maxUsers)
	case o.Devices > 100:
		return fmt.Errorf("devices %d per user: at most 100", o.Devices)
	}
	return nil
}

// transportFor is the transport of the k-th device.
func (o *Options) transportFor(k int) string {
	if o.Transport == "mix" {
		return [...]string{WebSocket, LongPoll, SSE}[k%3]
	}
	return o.Transport
}
