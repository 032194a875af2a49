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

type deviceKey struct{ user, device string }

// acker gathers the cursors that sessions moved and proposes them as one
// Acks command at a time: the acks that arrive while a batch commits form
// the next one. An ack that cannot be proposed now is kept and tried again;
// if the node stops first, the device acks again on its next connect (its
// hello carries the ack), so nothing is lost but a little work.
type acker struct {
	log *slog.Logger

	mu      sync.Mutex
	pending map[deviceKey]mailbox.Seq
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
		pending:  make(map[deviceKey]mailbox.Seq),
		kick:     make(chan struct{}, 1),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

func (a *acker) add(user, device string, seq mailbox.Seq) {
	a.mu.Lock()
	k := deviceKey{user, device}
	if seq > a.pending[k] {
		a.pending[k] = seq
	}
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

// take empties pending into a batch.
func (a *acker) take() []mailbox.Ack {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return nil
	}
	batch := make([]mailbox.Ack, 0, len(a.pending))
	for k, seq := range a.pending {
		batch = append(batch, mailbox.Ack{UserID: k.user, DeviceID: k.device, Seq: seq})
	}
	clear(a.pending)
	return batch
}

func (a *acker) putBack(batch []mailbox.Ack) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ack := range batch {
		k := deviceKey{ack.UserID, ack.DeviceID}
		if ack.Seq > a.pending[k] {
			a.pending[k] = ack.Seq
		}
	}
}

func (a *acker) propose(ctx context.Context, p Proposer, batch []mailbox.Ack) error {
	res, err := p.Propose(ctx, &mailbox.Command{Kind: mailbox.KindAcks, Acks: &mailbox.Acks{Items: batch}})
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
