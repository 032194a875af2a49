package hub

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notifyhub/hub/mailbox"
)

// ackTimeout bounds one batch's proposal; ackRetry is the pause after a
// failed one (no leader, no quorum) before the acks are proposed again.
const (
	ackTimeout = 10 * time.Second
	ackRetry   = 250 * time.Millisecond
)

// Bounds of one Acks command. Each newly acknowledged message costs the
// state machine a few keys (its status, its receipt, its removal), and one
// command is one badger transaction, which holds about a hundred thousand:
// a device back from a long absence that acks a million messages at once
// has its ack proposed in steps.
const (
	maxAckItems = 512  // devices per command
	maxAckSpan  = 1024 // seqs one device's ack moves its cursor per command
	maxAckWork  = 4096 // seqs all of a command's acks move cursors, together
)

type deviceKey struct{ user, device string }

// ackRange is a device's cursor move not yet proposed: from the seq it
// was known to have acked to the newest ack.
type ackRange struct{ from, to mailbox.Seq }

// acker gathers the cursors that sessions moved and proposes them as one
// Acks command at a time: the acks that arrive while a batch commits form
// the next one. An ack that cannot be proposed now is kept and tried again;
// if the node stops first, the device acks again on its next connect (its
// hello carries the ack), so nothing is lost but a little work.
type acker struct {
	log *slog.Logger

	mu      sync.Mutex
	pending map[deviceKey]ackRange
	kick    chan struct{} // cap 1: there is something pending

	stopping chan struct{} // closed by stop: drain and return
	done     chan struct{} // closed when the goroutine returns
	started  bool
	drainCtx context.Context

	batches atomic.Uint64
	count   atomic.Uint64
}

func newAcker(log *slog.Logger) *acker {
	return &acker{
		log:      log,
		pending:  make(map[deviceKey]ackRange),
		kick:     make(chan struct{}, 1),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// add records that the device acked up to seq, having acked up to prev
// before (the cursor is at least prev).
func (a *acker) add(user, device string, prev, seq mailbox.Seq) {
	a.mu.Lock()
	k := deviceKey{user, device}
	r, ok := a.pending[k]
	if !ok {
		r.from = prev
	}
	r.to = max(r.to, seq)
	a.pending[k] = r
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *acker) start(p Proposer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return
	}
	a.started = true
	go a.loop(p)
}

// stop proposes what is pending, within ctx, and stops the goroutine.
func (a *acker) stop(ctx context.Context) {
	a.mu.Lock()
	started := a.started
	a.started = true // no start after stop
	a.drainCtx = ctx
	a.mu.Unlock()
	select {
	case <-a.stopping:
	default:
		close(a.stopping)
	}
	if started {
		<-a.done
	}
}

func (a *acker) loop(p Proposer) {
	defer close(a.done)
	for {
		select {
		case <-a.kick:
		case <-a.stopping:
			a.mu.Lock()
			ctx := a.drainCtx
			a.mu.Unlock()
			if batch := a.take(); len(batch) > 0 {
				a.propose(ctx, p, batch)
			}
			return
		}
		batch := a.take()
		if len(batch) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		err := a.propose(ctx, p, batch)
		cancel()
		if err != nil {
			a.putBack(batch)
			select {
			case <-time.After(ackRetry):
			case <-a.stopping:
			}
			select {
			case a.kick <- struct{}{}:
			default:
			}
		}
	}
}

// pendingAck is one device's part of a batch.
type pendingAck struct {
	key deviceKey
	ackRange
}

// take moves up to one command's worth of pending acks into a batch (see
// maxAckItems and friends); a device whose ack moves its cursor further
// than maxAckSpan is acked that far, and the rest stays pending.
func (a *acker) take() []pendingAck {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return nil
	}
	batch := make([]pendingAck, 0, min(len(a.pending), maxAckItems))
	work := mailbox.Seq(0)
	for k, r := range a.pending {
		if len(batch) == maxAckItems || work >= maxAckWork {
			break
		}
		to := min(r.to, r.from+min(maxAckSpan, maxAckWork-work))
		work += to - r.from
		batch = append(batch, pendingAck{k, ackRange{r.from, to}})
		if to == r.to {
			delete(a.pending, k)
		} else {
			a.pending[k] = ackRange{from: to, to: r.to}
		}
	}
	if len(a.pending) > 0 {
		select { // the rest in the next round
		case a.kick <- struct{}{}:
		default:
		}
	}
	return batch
}

// putBack returns a batch that could not be proposed to pending.
func (a *acker) putBack(batch []pendingAck) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range batch {
		r, ok := a.pending[p.key]
		if !ok {
			r = p.ackRange
		}
		r.from, r.to = min(r.from, p.from), max(r.to, p.to)
		a.pending[p.key] = r
	}
}

func (a *acker) propose(ctx context.Context, p Proposer, pending []pendingAck) error {
	batch := make([]mailbox.Ack, len(pending))
	for i, pa := range pending {
		batch[i] = mailbox.Ack{UserID: pa.key.user, DeviceID: pa.key.device, Seq: pa.to}
	}
	res, err := p.Propose(ctx, &mailbox.Command{Kind: mailbox.KindAcks, Acks: &mailbox.Acks{Items: batch}})
	if res.Err != nil {
		// Refused whole (mailbox.ErrChangeTooLarge; Propose returns the
		// refusal as its error too). Proposing it again would be refused
		// again: it is dropped, and the devices ack again in their next
		// hello.
		a.log.Error("hub: ack batch refused", slog.Int("acks", len(batch)), slog.Any("err", res.Err))
		return nil
	}
	if err != nil {
		a.log.Warn("hub: ack batch not committed; will retry", slog.Int("acks", len(batch)), slog.Any("err", err))
		return err
	}
	a.batches.Add(1)
	a.count.Add(uint64(len(batch)))
	for i, rerr := range res.Refused {
		if rerr != nil {
			// The user or device went away meanwhile: nothing to keep.
			a.log.Debug("hub: ack refused", slog.String("user", batch[i].UserID), slog.String("device", batch[i].DeviceID), slog.Any("err", rerr))
		}
	}
	return nil
}
