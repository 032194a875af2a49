package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

	// ErrMemberExists: a join names an id, a raft address or an API
	// address that another member already has, or a member announces
	// another's API address. Nothing changed.
	ErrMemberExists = errors.New("a member with this id or address exists")
	// ErrMemberUnknown: no member has that id. Nothing changed.
	ErrMemberUnknown = errors.New("no member with this id")
	// ErrLastVoter: removing the member would leave the cluster without a
	// voter. Nothing changed.
	ErrLastVoter = errors.New("cannot remove the last voter")
	// ErrMembershipBusy: other membership changes kept committing while this
	// one waited, so raft refused it each time it was tried on the newest
	// configuration. Nothing changed; a retry is safe.
	ErrMembershipBusy = errors.New("the membership is changing; retry")
	// ErrBadMember: a join's id, raft address or API address is malformed.
	ErrBadMember = errors.New("bad member id or address")
	// ErrBadSecret: a node-to-node connection did not authenticate (a wrong
	// cluster secret, a certificate the cluster CA did not sign, a relay in
	// between), or this node has no credentials. Nothing changed.
	ErrBadSecret = errors.New("wrong or missing cluster secret")
)

// errNotHere is what a local proposal answers on a follower, before
// anything was proposed: the caller may forward the command to the leader.
var errNotHere = fmt.Errorf("%w: this node is not the leader", ErrNotLeader)

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
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w (%v)", ErrNoQuorum, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case strings.HasPrefix(err.Error(), raftConfigChanged):
		return fmt.Errorf("%w (%v)", ErrMembershipBusy, err)
	}
	return err
}

// raftConfigChanged starts the error raft answers a membership change whose
// prevIndex is no longer the latest configuration's (it has no sentinel).
const raftConfigChanged = "configuration changed since"

// ctxErr is the error of a caller whose context ended: a passed deadline also
// reads as ErrNoQuorum, since nothing committed in the time the caller gave.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
	return err
}
