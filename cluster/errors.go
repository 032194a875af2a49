package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Errors of the cluster layer. Callers test them with errors.Is; the
// transport maps them to wire codes (ErrNotLeader and ErrNoQuorum to 503 with
// Retry-After).
var (
	// ErrNotLeader: this node is not the raft leader (or lost leadership
	// while the command was in flight), so it cannot propose. The command was
	// not applied, unless leadership was lost after it was replicated: a
	// retry with the same Idempotency-Key is safe either way.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoQuorum: the command could not be committed in time: raft did not
	// take the entry, or the caller's deadline passed while it waited. The
	// command may still commit later.
	ErrNoQuorum = errors.New("no raft quorum")
	// ErrClosed: the node is closed or closing.
	ErrClosed = errors.New("cluster node closed")
)

// raftErr maps an error of raft to this package's sentinels. The raft error
// stays in the message but not in the chain: callers test our sentinels only.
func raftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w (%v)", ErrNotLeader, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w (%v)", ErrNoQuorum, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	}
	return err
}

// ctxErr is the error of a caller whose context ended: a passed deadline also
// reads as ErrNoQuorum, since nothing committed in the time the caller gave.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
	return err
}
