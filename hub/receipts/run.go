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
	"slices"
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
//
// An endpoint whose last POST failed is failing (a breaker): it has at most
// one POST in flight, a probe, until one succeeds, and probes take their
// slot among at most half of MaxInFlight. So endpoints that hang or fail
// hold few of the shared slots, and healthy endpoints keep the rest.
type endpoint struct {
	r    *run
	url  string
	kick chan struct{} // cap 1: a box became ready

	mu       sync.Mutex
	boxes    map[string]*box
	workers  int
	failing  bool          // the last POST failed
	probing  bool          // a worker sends while failing
	probeEnd chan struct{} // closed when that worker is done
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
		b, gen, probe, wait, probeEnd := e.pick()
		if b == nil && wait == 0 && probeEnd == nil {
			e.retire()
			return
		}
		if b == nil {
			var t *time.Timer
			var timeout <-chan time.Time
			if wait > 0 {
				t = time.NewTimer(wait)
				timeout = t.C
			}
			select {
			case <-e.kick:
			case <-timeout:
			case <-probeEnd:
			case <-e.r.ctx.Done():
			}
			if t != nil {
				t.Stop()
			}
			if e.r.ctx.Err() != nil {
				return
			}
			continue
		}
		empty := e.send(b, probe)
		e.release(b, gen, empty, probe)
		if e.r.ctx.Err() != nil {
			return
		}
	}
}

// pick takes a box that is ready to send; while the endpoint is failing,
// the box taken is its one probe. With none ready, it returns how long
// until one is, or the channel closed when the probe in flight is done, or
// neither when no box waits at all (the worker then ends; mark starts
// another when needed).
func (e *endpoint) pick() (b *box, gen uint64, probe bool, wait time.Duration, probeEnd <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	held := e.failing && e.probing
	for _, c := range e.boxes {
		if c.busy || !c.pending {
			continue
		}
		if held {
			return nil, 0, false, 0, e.probeEnd
		}
		if !c.next.After(now) {
			c.busy = true
			if e.failing {
				e.probing, e.probeEnd = true, make(chan struct{})
			}
			return c, c.gen, e.failing, 0, nil
		}
		if w := c.next.Sub(now); wait == 0 || w < wait {
			wait = w
		}
	}
	if wait == 0 {
		e.workers--
	}
	return nil, 0, false, wait, nil
}

// release gives a box back, and ends its probe. A box whose outbox was
// empty, and that got no new receipts meanwhile, is forgotten.
func (e *endpoint) release(b *box, gen uint64, empty, probe bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b.busy = false
	if probe {
		e.probing = false
		close(e.probeEnd)
	}
	if empty && b.gen == gen {
		delete(e.boxes, b.id)
	}
}

// setFailing records how the endpoint's last POST went.
func (e *endpoint) setFailing(failing bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failing = failing
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
// retry period. It reports whether the outbox had nothing left for b. A
// probe (the endpoint is failing) takes a probe slot before its slot.
func (e *endpoint) send(b *box, probe bool) (empty bool) {
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
	if probe {
		select {
		case d.probeSlots <- struct{}{}:
		case <-e.r.ctx.Done():
			return false
		}
		defer func() { <-d.probeSlots }()
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
		e.setFailing(true)
		d.errors.Add(1)
		e.backoff(b)
		d.log.Debug("receipts: POST failed", slog.String("url", e.url), slog.String("mailbox", b.id),
			slog.Int("attempt", b.attempt), slog.Time("retry_at", b.next), slog.Any("err", err))
		return false
	}
	e.setFailing(false)
	d.sent.Add(uint64(len(entries)))
	d.m.sent(entries, time.Now())
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
	start := time.Now()
	res, err := d.client.Do(req)
	if err != nil {
		d.m.postFailed.Observe(time.Since(start).Seconds())
		return err
	}
	_, rerr := io.Copy(io.Discard, io.LimitReader(res.Body, d.cfg.MaxResponse))
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		d.m.postFailed.Observe(time.Since(start).Seconds())
	} else {
		d.m.postOK.Observe(time.Since(start).Seconds())
	}
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
//
// One command is one badger transaction in the state machine, which refuses
// a command too large to apply (mailbox.ErrChangeTooLarge) on every node
// alike. So a command carries at most maxSettleItems ranges of at most
// maxSettleSpan seqs, maxSettleWork seqs in all; ranges are cut on the way
// in and never joined past the cap, also after a failed proposal. A command
// the state machine refuses anyway (a store with a small memtable) is not
// proposed again whole: the run's cap is halved and the ranges go back to
// the queue, so the next command is smaller. The cap stays halved for the
// run: the refusal depends on the store's size limit, which does not change.
type settler struct {
	r    *run
	kick chan struct{}

	mu    sync.Mutex
	items []mailbox.Settle // waiting, oldest first, each at most maxSettleSpan seqs
	work  uint64           // the most seqs one command carries in this run
}

// Bounds of one SettleReceipts command. A settled seq costs the state
// machine one key (a given-up one three), and a transaction holds about a
// hundred thousand with badger's default memtable.
const (
	maxSettleItems = 256  // ranges per command
	maxSettleSpan  = 1024 // seqs per range
	maxSettleWork  = 4096 // seqs per command
)

// settleTimeout bounds one proposal; settleRetry is the pause after a
// failed one.
const (
	settleTimeout = 10 * time.Second
	settleRetry   = 250 * time.Millisecond
)

func newSettler(r *run) *settler {
	return &settler{r: r, kick: make(chan struct{}, 1), work: maxSettleWork}
}

func span(it mailbox.Settle) uint64 { return it.Through - it.From + 1 }

func (s *settler) add(it mailbox.Settle) {
	s.mu.Lock()
	// Ranges of a mailbox arrive in order; join one to the last of its
	// kind, as far as that range has room.
	for i := len(s.items) - 1; i >= 0; i-- {
		p := &s.items[i]
		if p.MailboxID != it.MailboxID {
			continue
		}
		if p.Failed == it.Failed && p.Through+1 == it.From && span(*p) < maxSettleSpan {
			p.Through = min(it.Through, p.From+maxSettleSpan-1)
			it.From = p.Through + 1
		}
		break
	}
	for it.From <= it.Through {
		piece := it
		piece.Through = min(it.Through, it.From+maxSettleSpan-1)
		s.items = append(s.items, piece)
		if piece.Through == it.Through {
			break
		}
		it.From = piece.Through + 1
	}
	s.mu.Unlock()
	s.wake()
}

// take moves up to one command's worth of ranges into a new slice; a range
// that does not fit whole is cut, and its rest stays first in line.
func (s *settler) take() []mailbox.Settle {
	s.mu.Lock()
	defer s.mu.Unlock()
	var batch []mailbox.Settle
	var work uint64
	for len(s.items) > 0 && len(batch) < maxSettleItems && work < s.work {
		it := s.items[0]
		if room := s.work - work; span(it) > room {
			it.Through = it.From + room - 1
			s.items[0].From = it.Through + 1
		} else {
			s.items = s.items[1:]
		}
		batch = append(batch, it)
		work += span(it)
	}
	if len(s.items) == 0 {
		s.items = nil // let the old array go
	}
	return batch
}

// putBack returns a batch that was not settled to the front of the queue,
// in a new slice: the batch's own memory may still be read by the
// proposal that carried it.
func (s *settler) putBack(batch []mailbox.Settle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := make([]mailbox.Settle, 0, len(batch)+len(s.items))
	items = append(items, batch...)
	s.items = append(items, s.items...)
}

// refused halves the run's cap after the state machine refused a command
// of work seqs. It reports false when there is nothing left to halve.
func (s *settler) refused(work uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if work <= 1 {
		return false
	}
	s.work = min(s.work, work/2)
	return true
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
		batch := s.take()
		if len(batch) == 0 {
			continue
		}
		s.mu.Lock()
		more := len(s.items) > 0
		s.mu.Unlock()
		if !s.propose(batch) {
			return
		}
		if more {
			s.wake()
		}
	}
}

// propose settles one batch. It returns false when the run ended.
func (s *settler) propose(batch []mailbox.Settle) bool {
	var work uint64
	for _, it := range batch {
		work += span(it)
	}
	// The command gets its own copy: a proposal that timed out here may
	// still be encoded by the node, while batch goes back to the queue.
	cmd := &mailbox.Command{Kind: mailbox.KindSettleReceipts, SettleReceipts: &mailbox.SettleReceipts{Items: slices.Clone(batch)}}
	ctx, cancel := context.WithTimeout(s.r.ctx, settleTimeout)
	res, err := s.r.d.prop.Propose(ctx, cmd)
	cancel()
	// A refusal comes in res.Err (and, from *cluster.Node, as err too);
	// anything else in err is the cluster's: no leader, no quorum.
	switch {
	case res.Err != nil:
		// Refused on every node alike: the same command would be refused
		// again, so a smaller one is proposed.
		if s.refused(work) {
			s.r.d.log.Warn("receipts: settle refused; proposing smaller commands", slog.Uint64("seqs", work), slog.Any("err", res.Err))
			s.putBack(batch)
			s.wake()
			return true
		}
		// One seq refused is not a matter of size. The entry stays in the
		// outbox; the next leader's dispatcher sends it again.
		s.r.d.log.Error("receipts: settle refused", slog.String("mailbox", batch[0].MailboxID), slog.Uint64("seq", batch[0].From), slog.Any("err", res.Err))
		return true
	case err != nil:
		if s.r.ctx.Err() != nil {
			return false // no longer leading: the next leader sends these again
		}
		s.r.d.log.Warn("receipts: settle not committed; will retry", slog.Int("ranges", len(batch)), slog.Any("err", err))
		s.putBack(batch)
		select {
		case <-time.After(settleRetry):
		case <-s.r.ctx.Done():
			return false
		}
		s.wake()
		return true
	}
	for _, it := range batch {
		s.r.settled(it.MailboxID, it.Through)
	}
	return true
}
