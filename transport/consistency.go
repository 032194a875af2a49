package transport

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Reads are served from this node's store. On a follower that store may
// trail the leader by a few entries, so a client that made something
// through one node and at once uses it through another (a user, then a
// mailbox; a publish, then its status) could be told it does not exist.
// Where a lookup misses, a follower therefore catches up with the leader
// once (Sync: a heartbeat round to the leader, no log entry) and looks
// again. Hits cost nothing; a miss on the leader is final.
//
// Misses are also what a stranger's flood of made-up tokens produces, so
// catch-ups are coalesced (catchups below): at most one is in flight per
// node, and every miss that happens while one runs shares the next.

// syncer is optional in a Cluster; *cluster.Node has it. Current tells a
// leader whether its store holds every committed entry (a new leader may
// not have applied its predecessor's last ones yet).
type syncer interface {
	Sync(ctx context.Context) (uint64, error)
	Current(ctx context.Context) error
	IsLeader() bool
}

// syncTimeout bounds a catch-up; past it the miss stands.
const syncTimeout = 2 * time.Second

// caughtUp catches this node up with the leader after a lookup missed. It
// reports whether the lookup is worth making again.
func (s *Server) caughtUp(r *http.Request) bool {
	again, _ := s.afterMiss(r.Context())
	return again
}

// afterMiss catches this node up with the leader after a lookup missed.
// again reports whether the lookup is worth making again (a follower that
// caught up); final whether the next miss is conclusive: false when a
// follower could not catch up (no leader, or it did not answer in time), so
// that the thing may exist and only the log can tell.
func (s *Server) afterMiss(ctx context.Context) (again, final bool) {
	sy, ok := s.cluster.(syncer)
	if !ok {
		return false, true
	}
	if sy.IsLeader() {
		ctx, cancel := context.WithTimeout(ctx, syncTimeout)
		defer cancel()
		return false, sy.Current(ctx) == nil
	}
	err := s.catchups.do(ctx, func(ctx context.Context) error {
		_, err := sy.Sync(ctx)
		return err
	})
	return err == nil, err == nil
}

// catchups coalesces catch-ups. A miss must be followed by a sync that
// starts after it (one already under way may have asked the leader before
// the thing looked for was made), so a miss joins the pending round: the
// one that starts once the running one is done. All who joined it share
// its result. Rounds run one at a time, by the first of their members to
// get the turn, so N concurrent misses cost one or two syncs, not N.
type catchups struct {
	mu      sync.Mutex
	pending *syncRound
	turn    chan struct{} // a token: held by the member running a round
	once    sync.Once
	joined  int // members who joined a round; for tests
}

type syncRound struct {
	done     chan struct{} // closed when the round ran
	finished bool          // under catchups.mu
	err      error         // set before done is closed
}

// do runs sync in a round that starts after this call, shared with every
// concurrent caller, and returns its error (or ctx's, if ctx ends first).
func (c *catchups) do(ctx context.Context, sync func(context.Context) error) error {
	c.once.Do(func() { c.turn = make(chan struct{}, 1) })
	c.mu.Lock()
	rd := c.pending
	if rd == nil {
		rd = &syncRound{done: make(chan struct{})}
		c.pending = rd
	}
	c.joined++
	c.mu.Unlock()

	select {
	case c.turn <- struct{}{}:
		defer func() { <-c.turn }()
	case <-rd.done:
		return rd.err
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	if rd.finished {
		c.mu.Unlock()
		return rd.err
	}
	if c.pending == rd {
		c.pending = nil // from here on, a miss waits for the next round
	}
	c.mu.Unlock()
	// The round is everyone's: it is not cut short by this caller leaving.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), syncTimeout)
	err := sync(sctx)
	cancel()
	c.mu.Lock()
	rd.err, rd.finished = err, true
	c.mu.Unlock()
	close(rd.done)
	return err
}
