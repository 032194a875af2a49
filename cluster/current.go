package cluster

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
)

// Current reports, on the leader, whether this node's store holds every
// entry committed so far, so that a lookup that misses here misses for the
// whole cluster: nil when it does (having waited, if need be, for the
// store to apply up to the commit index), an error (ErrNotLeader,
// ErrNoQuorum, the context's) when that is not known. A newly elected
// leader may have entries of the previous term in its log that it does not
// know are committed: they commit with its first entry of its own term. So
// the commit index counts only once the entry there is of the current
// term. It costs no log entry.
func (n *Node) Current(ctx context.Context) error {
	term := n.raft.CurrentTerm()
	if !n.IsLeader() {
		return fmt.Errorf("cluster: current: %w", errNotHere)
	}
	ci := n.raft.CommitIndex()
	var l raft.Log
	if err := n.bolt.GetLog(ci, &l); err != nil || l.Term != term {
		return fmt.Errorf("cluster: current: %w: nothing of term %d committed yet", ErrNoQuorum, term)
	}
	if err := n.waitApplied(ctx, ci); err != nil {
		return fmt.Errorf("cluster: current: %w", err)
	}
	if !n.IsLeader() || n.raft.CurrentTerm() != term {
		return fmt.Errorf("cluster: current: %w", ErrNotLeader)
	}
	return nil
}
