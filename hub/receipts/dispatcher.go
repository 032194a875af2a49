package receipts

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notifyhub/hub/mailbox"
)

// Store is what the dispatcher reads: the outbox. *mailbox.Store satisfies it.
type Store interface {
	// OutboxHeads returns the oldest entry of each mailbox after the given
	// mailbox id, up to limit mailboxes.
	OutboxHeads(after string, limit int) ([]mailbox.OutboxEntry, error)
	// Outbox returns a mailbox's entries with seq > after, up to limit.
	Outbox(mailboxID string, after uint64, limit int) ([]mailbox.OutboxEntry, error)
}

// Proposer is how the dispatcher takes receipts out of the outbox: a
// SettleReceipts command. *cluster.Node satisfies it.
type Proposer interface {
	Propose(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, error)
}

// Leadership tells the dispatcher when to run. *cluster.Node satisfies it.
// Leadership returns whether this node is the ready leader, and a channel
// closed at the next change that may alter that.
type Leadership interface {
	Leadership() (leader bool, changed <-chan struct{})
}

// Config configures a Dispatcher. Zero fields take the defaults.
type Config struct {
	// RetryFor is how long a receipt is retried after its fate was decided
	// before it is given up and marked failed; default 24h.
	RetryFor time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failed POST: it
	// doubles from MinBackoff (default 1s) up to MaxBackoff (default 5m),
	// with jitter.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one POST, from dial to the end of the response body;
	// default 10s.
	Timeout time.Duration
	// BatchSize is the most receipts in one POST; default 100.
	BatchSize int
	// PerEndpoint is the most POSTs in flight to one receipt URL; default 2.
	PerEndpoint int
	// MaxInFlight is the most POSTs in flight in all; default 64. It is
	// larger than PerEndpoint, so one slow endpoint cannot take every slot;
	// and an endpoint whose last POST failed has one POST in flight at
	// most, among at most half of MaxInFlight for all failing endpoints,
	// so many hanging endpoints cannot take every slot either.
	MaxInFlight int
	// MaxResponse is how much of a response body is read before the
	// connection is dropped; default 64 KiB.
	MaxResponse int64
	// URLs decides which addresses may be dialled.
	URLs URLPolicy
	// Logger receives failed POSTs (debug) and failed receipts (warn); nil
	// discards.
	Logger *slog.Logger
}

// The defaults of Config.
const (
	DefaultRetryFor    = 24 * time.Hour
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 5 * time.Minute
	DefaultTimeout     = 10 * time.Second
	DefaultBatchSize   = 100
	DefaultPerEndpoint = 2
	DefaultMaxInFlight = 64
	DefaultMaxResponse = 64 << 10
)

func (c *Config) setDefaults() {
	if c.RetryFor <= 0 {
		c.RetryFor = DefaultRetryFor
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = DefaultPerEndpoint
	}
	if c.MaxInFlight <= c.PerEndpoint {
		c.MaxInFlight = max(DefaultMaxInFlight, 2*c.PerEndpoint)
	}
	if c.MaxResponse <= 0 {
		c.MaxResponse = DefaultMaxResponse
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Dispatcher sends the outbox's receipts while this node leads, and wakes
// long-polls of receipts on every node. Its methods are safe for concurrent
// use.
type Dispatcher struct {
	cfg    Config
	store  Store
	prop   Proposer
	client *http.Client
	tr     *http.Transport
	log    *slog.Logger
	slots  chan struct{} // MaxInFlight
	// probeSlots (half of MaxInFlight) bound the POSTs of failing
	// endpoints, which also take one of slots.
	probeSlots chan struct{}

	mu      sync.Mutex
	run     *run // non-nil while leading
	started bool
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the leadership loop returns

	feed feed
	m    *dispatchMetrics // metrics.go

	sent     atomic.Uint64
	failed   atomic.Uint64
	attempts atomic.Uint64
	errors   atomic.Uint64
	leading  atomic.Bool
}

// New returns a dispatcher over store. It sends nothing before Start.
func New(cfg Config, store Store) *Dispatcher {
	cfg.setDefaults()
	dialer := cfg.URLs.Dialer(cfg.Timeout)
	tr := &http.Transport{
		// No proxy from the environment: a proxy would dial on our behalf,
		// past the address check.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   cfg.PerEndpoint,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Dispatcher{
		cfg:   cfg,
		store: store,
		tr:    tr,
		client: &http.Client{
			Transport: tr,
			// A redirect is a failure: following it would call a URL
			// nobody checked.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:        cfg.Logger,
		slots:      make(chan struct{}, cfg.MaxInFlight),
		probeSlots: make(chan struct{}, max(1, cfg.MaxInFlight/2)),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		feed:       feed{waiters: make(map[string]*waiter)},
		m:          newDispatchMetrics(),
	}
}

// Start follows l: the dispatcher sends while l says this node leads, and
// stops at once when it no longer does; it settles receipts through p. The
// dispatcher is built before the raft node it hears from (the node's
// Applied), and the node is both p and l, hence the two steps. Start is a
// no-op after the first call or after Close.
func (d *Dispatcher) Start(p Proposer, l Leadership) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return
	}
	d.started = true
	d.prop = p
	go d.follow(l)
}

// follow is the leadership loop: one run per term of leadership.
func (d *Dispatcher) follow(l Leadership) {
	defer close(d.done)
	for {
		leader, changed := l.Leadership()
		d.mu.Lock()
		cur := d.run
		d.mu.Unlock()
		switch {
		case leader && cur == nil:
			d.startRun()
		case !leader && cur != nil:
			d.stopRun()
		}
		select {
		case <-changed:
		case <-d.stop:
			d.stopRun()
			return
		}
	}
}

func (d *Dispatcher) startRun() {
	r := newRun(d)
	d.mu.Lock()
	d.run = r
	d.mu.Unlock()
	d.leading.Store(true)
	r.start()
	d.log.Info("receipts: dispatching as leader")
}

func (d *Dispatcher) stopRun() {
	d.mu.Lock()
	r := d.run
	d.run = nil
	d.mu.Unlock()
	if r == nil {
		return
	}
	d.leading.Store(false)
	r.halt()
	d.tr.CloseIdleConnections()
}

// Close stops dispatching and waits for the POSTs in flight to end (they are
// cancelled), until ctx ends. Receipts not yet settled stay in the outbox
// for the next leader. Close is idempotent.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	started := d.started
	d.started = true // no Start after Close
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	d.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-d.done:
		d.tr.CloseIdleConnections()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("receipts: close: %w", ctx.Err())
	}
}

// Applied takes the events of one applied entry, on raft's FSM goroutine.
// It never blocks: it wakes long-polls, and while leading it hands each new
// outbox entry's mailbox to its endpoint.
func (d *Dispatcher) Applied(events []mailbox.Event) {
	var r *run
	for i := range events {
		e := &events[i]
		if e.Kind != mailbox.EventFinal || e.Receipt == nil {
			continue
		}
		d.feed.wake(e.Receipt.MailboxID)
		if e.Mailbox == nil || e.Mailbox.ReceiptURL == "" {
			continue
		}
		if r == nil {
			d.mu.Lock()
			r = d.run
			d.mu.Unlock()
			if r == nil {
				// Not leading: the next run reads the outbox from the store.
				continue
			}
		}
		r.route(e.Receipt.MailboxID, e.Mailbox.ReceiptURL)
	}
}

// Restored is called after the store was replaced by a snapshot: the
// outbox is read again, and every long-poll looks again.
func (d *Dispatcher) Restored() {
	d.feed.wakeAll()
	d.mu.Lock()
	r := d.run
	d.mu.Unlock()
	if r != nil {
		r.rescan()
	}
}

// Changed returns a channel closed at the next receipt of the mailbox (or a
// restore), and a release function the caller must call when it no longer
// waits. Take the channel before reading the store, so nothing is missed.
func (d *Dispatcher) Changed(mailboxID string) (<-chan struct{}, func()) {
	return d.feed.changed(mailboxID)
}

// Stats is a point-in-time view of the dispatcher.
type Stats struct {
	Leading  bool   // dispatching now
	Sent     uint64 // receipts accepted by their endpoints (2xx), since start
	Failed   uint64 // receipts given up after RetryFor, since start
	Attempts uint64 // POSTs made, since start
	Errors   uint64 // POSTs that failed (network, timeout, non-2xx), since start
}

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() Stats {
	return Stats{
		Leading:  d.leading.Load(),
		Sent:     d.sent.Load(),
		Failed:   d.failed.Load(),
		Attempts: d.attempts.Load(),
		Errors:   d.errors.Load(),
	}
}

// feed wakes the long-polls of mailboxes' receipts.
type feed struct {
	mu      sync.Mutex
	waiters map[string]*waiter
}

type waiter struct {
	ch   chan struct{}
	refs int
}

func (f *feed) changed(mb string) (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.waiters[mb]
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		f.waiters[mb] = w
	}
	w.refs++
	var once sync.Once
	return w.ch, func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			w.refs--
			if w.refs == 0 && f.waiters[mb] == w {
				delete(f.waiters, mb)
			}
		})
	}
}

func (f *feed) wake(mb string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w := f.waiters[mb]; w != nil {
		close(w.ch)
		delete(f.waiters, mb)
	}
}

func (f *feed) wakeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for mb, w := range f.waiters {
		close(w.ch)
		delete(f.waiters, mb)
	}
}
