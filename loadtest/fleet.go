package loadtest

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// fleet is a run's users, their devices, and the goroutines that run them.
type fleet struct {
	nodes  []string
	client *client
	rec    *recorder
	log    io.Writer
	logMu  sync.Mutex

	users   []*user
	devices []*device
	gate    gate

	connecting chan struct{} // a slot per device between its ticket and its welcome

	connected     atomic.Int64  // devices past their welcome now
	disconnects   atomic.Uint64 // connections that ended
	connectErrors atomic.Uint64 // connections that ended before their welcome

	wg   sync.WaitGroup
	stop context.CancelFunc
}

func (f *fleet) logf(format string, args ...any) {
	if f.log == nil {
		return
	}
	f.logMu.Lock()
	defer f.logMu.Unlock()
	fmt.Fprintf(f.log, format+"\n", args...)
}

// newFleet registers o.Users users, each with a mailbox and o.Devices
// devices (not yet connected), spread over the nodes and the transports.
func newFleet(ctx context.Context, o *Options, rec *recorder) (*fleet, error) {
	f := &fleet{
		nodes:  o.Nodes,
		client: newClient(o.Nodes, o.Publishers+64),
		rec:    rec,
		log:    o.Log,
		users:  make([]*user, o.Users),

		connecting: make(chan struct{}, o.ConnectConcurrency),
	}
	f.gate.init()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range f.users {
		g.Go(func() error {
			u, err := f.client.newUser(gctx, o.AdminToken)
			if err != nil {
				return fmt.Errorf("user %d: %w", i, err)
			}
			f.users[i] = u
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	k := 0
	for _, u := range f.users {
		for j := range o.Devices {
			d := &device{
				fleet:     f,
				user:      u,
				id:        "hubload-" + strconv.Itoa(j),
				transport: o.transportFor(k),
				node:      k,
			}
			u.devices = append(u.devices, d)
			f.devices = append(f.devices, d)
			k++
		}
	}
	return f, nil
}

// start runs every device; they connect once the gate is open.
func (f *fleet) start(ctx context.Context) {
	ctx, f.stop = context.WithCancel(ctx)
	for _, d := range f.devices {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			d.run(ctx)
		}()
	}
}

// close stops every device and waits for them.
func (f *fleet) close() {
	if f.stop != nil {
		f.stop()
	}
	f.wg.Wait()
}

// waitFor polls cond every 20 ms until it holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// waitConnected waits until every device is past its welcome.
func (f *fleet) waitConnected(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n := int64(len(f.devices))
	return waitFor(ctx, "devices to connect", func() bool { return f.connected.Load() == n })
}

// drain waits until every device has every acknowledged message. When
// timeout passes first, what is missing counts as lost in the verdict, and
// a note on res says so; the error is only ctx's.
func (f *fleet) drain(ctx context.Context, timeout time.Duration, res *Result) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := waitFor(tctx, "devices to receive every message", func() bool { return outstanding(f.users) == 0 })
	if err != nil && ctx.Err() == nil {
		res.Notes = append(res.Notes, fmt.Sprintf("%d deliveries were still missing when the drain timeout (%s) passed: they count as lost",
			outstanding(f.users), timeout))
		return nil
	}
	return err
}

// gate holds devices offline while it is shut, and cuts their connections
// when it shuts.
type gate struct {
	mu      sync.Mutex
	open    chan struct{}   // closed while devices may connect
	drop    context.Context // cancelled when the gate shuts: ends the connections
	dropNow context.CancelFunc
}

func (g *gate) init() {
	g.open = make(chan struct{})
	close(g.open)
	g.drop, g.dropNow = context.WithCancel(context.Background())
}

// shut ends every connection and keeps devices from connecting again until
// reopen.
func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropNow()
	g.open = make(chan struct{})
	g.drop, g.dropNow = context.WithCancel(context.Background())
}

func (g *gate) reopen() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// enter waits until the gate is open and returns a context for one
// connection, cancelled when ctx ends or the gate shuts.
func (g *gate) enter(ctx context.Context) (context.Context, context.CancelFunc, error) {
	for {
		g.mu.Lock()
		open, drop := g.open, g.drop
		select {
		case <-open:
			g.mu.Unlock()
			c, cancel := context.WithCancel(ctx)
			stop := context.AfterFunc(drop, cancel)
			return c, func() { stop(); cancel() }, nil
		default:
		}
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-open:
		}
	}
}
