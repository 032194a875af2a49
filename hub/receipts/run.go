package receipts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/notifyhub/hub/mailbox"
)

// scanPage is how many mailboxes one read of the outbox's heads returns.
const scanPage = 512

// run is one term of leadership: it owns the endpoints' workers and the
// settler, and halt stops and waits for all of them.
//
// Lock order: run.mu, then endpoint.mu.
type run struct {
	d      *Dispatcher
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // cap 1: read the outbox's heads again
	settle *settler

	mu        sync.Mutex
	stopped   bool
	endpoints map[string]*endpoint // by URL
	// floors hold, per mailbox, the highest seq handed to the settler and
	// not yet known settled, so that a mailbox that went idle and comes
	// back is not sent again what is on its way out of the outbox.
	floors map[string]uint64
}

func newRun(d *Dispatcher) *run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{
		d:         d,
		ctx:       ctx,
		cancel:    cancel,
		kick:      make(chan struct{}, 1),
		endpoints: make(map[string]*endpoint),
		floors:    make(map[string]uint64),
	}
	r.settle = newSettler(r)
	return r
}

func (r *run) start() {
	r.kick <- struct{}{}
	r.goFunc(r.scanLoop)
	r.goFunc(r.settle.loop)
}

// goFunc runs f on a goroutine that halt waits for; it does nothing once
// halt has begun. The caller must not hold r.mu.
func (r *run) goFunc(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.goLocked(f)
}

func (r *run) goLocked(f func()) {
	if r.stopped {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

// halt cancels every POST and proposal of the run and waits for its
// goroutines. What was sent and not yet settled is sent again by the next
// leader: receipts are delivered at least once.
func (r *run) halt() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

func (r *run) rescan() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// scanLoop reads the outbox's heads at the start of the run and after a
// restore, and hands every mailbox with receipts to its endpoint.
func (r *run) scanLoop() {
	for {
		select {
		case <-r.kick:
		case <-r.ctx.Done():
			return
		}
		after := ""
		for r.ctx.Err() == nil {
			heads, err := r.d.store.OutboxHeads(after, scanPage)
			if err != nil {
				r.d.log.Warn("receipts: read outbox", slog.Any("err", err))
				r.rescanLater()
				break
			}
			for _, h := range heads {
				r.route(h.MailboxID, h.URL)
			}
			if len(heads) < scanPage {
				break
			}
			after = heads[len(heads)-1].MailboxID
		}
	}
}

func (r *run) rescanLater() {
	r.goFunc(func() {
		select {
		case <-time.After(r.d.cfg.MinBackoff):
			r.rescan()
		case <-r.ctx.Done():
		}
	})
}

// route tells the endpoint of url that mailbox mb has receipts to send. It
// never blocks: it runs on the FSM goroutine too.
func (r *run) route(mb, url string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	e := r.endpoints[url]
	if e == nil {
		e = &endpoint{r: r, url: url, boxes: make(map[string]*box), kick: make(chan struct{}, 1)}
		r.endpoints[url] = e
	}
	e.mark(mb)
}

func (r *run) floor(mb string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.floors[mb]
}

func (r *run) raiseFloor(mb string, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq > r.floors[mb] {
		r.floors[mb] = seq
	}
}

// settled forgets a floor once the outbox itself is past it.
func (r *run) settled(mb string, through uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.floors[mb]; ok && f <= through {
		delete(r.floors, mb)
	}
}

// endpoint is one receipt URL: its mailboxes with receipts to send, and up
// to PerEndpoint workers sending them. A mailbox is sent by one worker at a
// time, oldest receipts first, and a failed batch is retried before anything
// after it: receipts reach an endpoint in order per mailbox.
type endpoint struct {
	r    *run
	url  string
	kick chan struct{} // cap 1: a box became ready

	mu      sync.Mutex
	boxes   map[string]*box
	workers int
}

// box is one mailbox's sending state at its endpoint.
type box struct {
	id      string
	pending bool      // the outbox may hold entries after sent
	busy    bool      // a worker has it
	gen     uint64    // bumped by every mark
	sent    uint64    // highest seq sent (or given up) in this run
	attempt int       // failed POSTs in a row
	next    time.Time // no POST before this
}

// mark notes new receipts for mailbox mb, and starts a worker if there is
// room. Called with r.mu held.
func (e *endpoint) mark(mb string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.boxes[mb]
	if b == nil {
		b = &box{id: mb}
		e.boxes[mb] = b
	}
	b.pending = true
	b.gen++
	if e.workers < e.r.d.cfg.PerEndpoint {
		e.workers++
		e.r.goLocked(e.work)
	} else {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// work sends boxes until none is left to send or waiting for a retry.
func (e *endpoint) work() {
	for {
		b, gen, wait := e.pick()
		if b == nil && wait == 0 {
			e.retire()
			return
		}
		if b == nil {
			t := time.NewTimer(wait)
			select {
			case <-e.kick:
			case <-t.C:
			case <-e.r.ctx.Done():
				t.Stop()
				return
			}
			t.Stop()
			continue
		}
		empty := e.send(b)
		e.release(b, gen, empty)
		if e.r.ctx.Err() != nil {
			return
		}
	}
}

// pick takes a box that is ready to send. With none ready, it returns how
// long until one is, or 0 when no box waits at all (the worker then ends;
// mark starts another when needed).
func (e *endpoint) pick() (b *box, gen uint64, wait time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	for _, c := range e.boxes {
		if c.busy || !c.pending {
			continue
		}
		if !c.next.After(now) {
			c.busy = true
			return c, c.gen, 0
		}
		if w := c.next.Sub(now); wait == 0 || w < wait {
			wait = w
		}
	}
	if wait == 0 {
		e.workers--
	}
	return nil, 0, wait
}

// release gives a box back. A box whose outbox was empty, and that got no
// new receipts meanwhile, is forgotten.
func (e *endpoint) release(b *box, gen uint64, empty bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b.busy = false
	if empty && b.gen == gen {
		delete(e.boxes, b.id)
	}
}

// retire forgets the endpoint once its last worker has ended with nothing
// left; a mark in between started a new worker, and then it stays.
func (e *endpoint) retire() {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.workers == 0 && len(e.boxes) == 0 && e.r.endpoints[e.url] == e {
		delete(e.r.endpoints, e.url)
	}
}

// send posts the next batch of b's receipts, or gives up those past their
// retry period. It reports whether the outbox had nothing left for b.
func (e *endpoint) send(b *box) (empty bool) {
	d := e.r.d
	after := max(b.sent, e.r.floor(b.id))
	entries, err := d.store.Outbox(b.id, after, d.cfg.BatchSize)
	if err != nil {
		d.log.Warn("receipts: read outbox", slog.String("mailbox", b.id), slog.Any("err", err))
		e.backoff(b)
		return false
	}
	if len(entries) == 0 {
		return true
	}
	now := time.Now()
	if b.attempt > 0 {
		// Give up what is past its retry period, once it has failed in
		// this run too: a receipt whose leader was down all that time
		// still gets its try.
		n := 0
		for n < len(entries) && now.Sub(time.Unix(0, entries[n].At)) >= d.cfg.RetryFor {
			n++
		}
		if n > 0 {
			first, last := entries[0].Seq, entries[n-1].Seq
			d.failed.Add(uint64(n))
			d.log.Warn("receipts: giving up", slog.String("mailbox", b.id), slog.String("url", e.url),
				slog.Uint64("from", first), slog.Uint64("through", last), slog.Duration("retried_for", d.cfg.RetryFor))
			e.settled(b, first, last, true)
			return false
		}
	}
	select {
	case d.slots <- struct{}{}:
	case <-e.r.ctx.Done():
		return false
	}
	err = e.post(entries)
	<-d.slots
	if err != nil {
		if e.r.ctx.Err() != nil {
			return false // the run ended, not the endpoint
		}
		d.errors.Add(1)
		e.backoff(b)
		d.log.Debug("receipts: POST failed", slog.String("url", e.url), slog.String("mailbox", b.id),
			slog.Int("attempt", b.attempt), slog.Time("retry_at", b.next), slog.Any("err", err))
		return false
	}
	d.sent.Add(uint64(len(entries)))
	b.attempt, b.next = 0, time.Time{}
	e.settled(b, entries[0].Seq, entries[len(entries)-1].Seq, false)
	return false
}

// settled moves b past [from, through] and hands the range to the settler.
func (e *endpoint) settled(b *box, from, through uint64, failed bool) {
	b.sent = through
	e.r.raiseFloor(b.id, through)
	e.r.settle.add(mailbox.Settle{MailboxID: b.id, From: from, Through: through, Failed: failed})
}

// backoff schedules b's next try: MinBackoff doubled per failure up to
// MaxBackoff, less up to half of it at random, so that endpoints that fail
// together do not retry together.
func (e *endpoint) backoff(b *box) {
	cfg := e.r.d.cfg
	b.attempt++
	d := cfg.MinBackoff
	for i := 1; i < b.attempt && d < cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, cfg.MaxBackoff)
	d -= time.Duration(rand.Int64N(int64(d)/2 + 1))
	b.next = time.Now().Add(d)
}

// post sends one signed batch. Any answer but 2xx is an error; at most
// MaxResponse bytes of the body are read, within the same timeout.
func (e *endpoint) post(entries []mailbox.OutboxEntry) error {
	d := e.r.d
	d.attempts.Add(1)
	if _, err := d.cfg.URLs.Parse(e.url); err != nil {
		return err // allowed when the mailbox was made, not under today's policy
	}
	body := Body{Receipts: make([]JSON, len(entries))}
	for i := range entries {
		body.Receipts[i] = Wire(entries[i].Receipt)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("receipts: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(e.r.ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("receipts: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "notifyhub-receipts/1")
	req.Header.Set(MailboxHeader, entries[0].MailboxID)
	req.Header.Set(SignatureHeader, Sign(entries[0].Secret, time.Now(), b))
	res, err := d.client.Do(req)
	if err != nil {
		return err
	}
	_, rerr := io.Copy(io.Discard, io.LimitReader(res.Body, d.cfg.MaxResponse))
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("receipts: %s answered %d", e.url, res.StatusCode)
	}
	if rerr != nil {
		// The endpoint said 2xx; a body cut short does not undo that.
		d.log.Debug("receipts: reading a 2xx body", slog.String("url", e.url), slog.Any("err", rerr))
	}
	return nil
}

// settler proposes SettleReceipts commands, one in flight at a time: what
// arrives while one commits forms the next, as the hub's acker does for
// device acks.
type settler struct {
	r    *run
	kick chan struct{}

	mu    sync.Mutex
	items []mailbox.Settle
}

// settleTimeout bounds one proposal; settleRetry is the pause after a
// failed one.
const (
	settleTimeout = 10 * time.Second
	settleRetry   = 250 * time.Millisecond
)

func newSettler(r *run) *settler { return &settler{r: r, kick: make(chan struct{}, 1)} }

func (s *settler) add(it mailbox.Settle) {
	s.mu.Lock()
	// Ranges of a mailbox arrive in order; join one to the last of its kind.
	for i := len(s.items) - 1; i >= 0; i-- {
		p := &s.items[i]
		if p.MailboxID != it.MailboxID {
			continue
		}
		if p.Failed == it.Failed && p.Through+1 == it.From {
			p.Through = it.Through
			s.mu.Unlock()
			s.wake()
			return
		}
		break
	}
	s.items = append(s.items, it)
	s.mu.Unlock()
	s.wake()
}

func (s *settler) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *settler) loop() {
	for {
		select {
		case <-s.kick:
		case <-s.r.ctx.Done():
			return
		}
		s.mu.Lock()
		batch := s.items
		s.items = nil
		s.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(s.r.ctx, settleTimeout)
		_, err := s.r.d.prop.Propose(ctx, &mailbox.Command{Kind: mailbox.KindSettleReceipts, SettleReceipts: &mailbox.SettleReceipts{Items: batch}})
		cancel()
		if err != nil {
			if s.r.ctx.Err() != nil {
				return // no longer leading: the next leader sends these again
			}
			s.r.d.log.Warn("receipts: settle not committed; will retry", slog.Int("ranges", len(batch)), slog.Any("err", err))
			s.mu.Lock()
			s.items = append(batch, s.items...)
			s.mu.Unlock()
			select {
			case <-time.After(settleRetry):
			case <-s.r.ctx.Done():
				return
			}
			s.wake()
			continue
		}
		for _, it := range batch {
			s.r.settled(it.MailboxID, it.Through)
		}
	}
}
