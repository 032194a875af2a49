package transport

import (
	"context"
	"net/http"
	"time"
)

// Reads are served from this node's store. On a follower that store may
// trail the leader by a few entries, so a client that made something
// through one node and at once uses it through another (a user, then a
// mailbox; a publish, then its status) could be told it does not exist.
// Where a lookup misses, a follower therefore catches up with the leader
// once (Sync: a heartbeat round to the leader, no log entry) and looks
// again. Hits cost nothing; a miss on the leader is final.

// syncer is optional in a Cluster; *cluster.Node has it.
type syncer interface {
	Sync(ctx context.Context) (uint64, error)
	IsLeader() bool
}

// syncTimeout bounds a catch-up; past it the miss stands.
const syncTimeout = 2 * time.Second

// caughtUp catches this node up with the leader after a lookup missed. It
// reports whether the lookup is worth making again.
func (s *Server) caughtUp(r *http.Request) bool {
	sy, ok := s.cluster.(syncer)
	if !ok || sy.IsLeader() {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), syncTimeout)
	defer cancel()
	_, err := sy.Sync(ctx)
	return err == nil
}
