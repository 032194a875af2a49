package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"github.com/notifyhub/hub/mailbox"
)

// expireLoop runs on every node but works only on a ready leader: every
// ExpireEvery it asks the store for its next deadline and, when it has
// passed, proposes Expire commands until no work remains.
func (n *Node) expireLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.ExpireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.closing:
			return
		case <-t.C:
		}
		if n.raft.State() != raft.Leader || !n.Ready() {
			continue
		}
		n.keepClock(ctx)
		n.expire(ctx)
	}
}

// maxTicks bounds the Ticks of one round of the loop: 1,000 steps of 30 s
// catch up eight hours a second.
const maxTicks = 1000

// keepClock proposes Ticks while the state machine's clock lags this
// leader's by more than half of the step one command may move it
// (mailbox.Policy.MaxClockStep): on an idle cluster, so that the next real
// command finds the clock within a step and its stamp is taken whole; after
// an outage, to bring the clock up to real time, a step each.
func (n *Node) keepClock(ctx context.Context) {
	half := int64(n.store.Policy().MaxClockStep / 2)
	for range maxTicks {
		if ctx.Err() != nil || time.Now().UnixNano()-n.store.Clock() <= half {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := n.Propose(cctx, &mailbox.Command{Kind: mailbox.KindTick, Tick: &mailbox.Tick{}})
		cancel()
		if err != nil {
			n.cfg.logger().Warn("cluster: tick", "err", err)
			return
		}
	}
}

// expire proposes Expire commands while the store has due work: expired
// messages, records past their keeping window, and the drains of revoked
// mailboxes and deleted users (NextDeadline says "now" while one is left).
func (n *Node) expire(ctx context.Context) {
	at, ok, err := n.store.NextDeadline()
	if err != nil {
		n.cfg.logger().Warn("cluster: next expiry deadline", "err", err)
		return
	}
	if !ok || at > time.Now().UnixNano() {
		return
	}
	limit := expireLimit
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := n.Propose(cctx, &mailbox.Command{Kind: mailbox.KindExpire, Expire: &mailbox.Expire{Limit: limit}})
		cancel()
		if errors.Is(err, mailbox.ErrChangeTooLarge) && limit > 1 {
			// Refused on every node alike (a store with a small
			// memtable): the same Expire would be refused again, and the
			// drains of revoked mailboxes and deleted users wait on it.
			limit /= 2
			continue
		}
		if err != nil {
			n.cfg.logger().Warn("cluster: expire", "err", err)
			return
		}
		if !res.More {
			return
		}
	}
}
