package cluster

import (
	"sync/atomic"

	"github.com/notifyhub/hub/diskguard"
	"github.com/notifyhub/hub/mailbox"
)

// A full disk (see package diskguard). With a guard set, a node refuses
// the writes that bring new data (publishes, new users, new mailboxes)
// while its disk is below the reserve: where the write enters (Publish,
// Propose) and where it is proposed (the leader's committer, also for
// writes other nodes forwarded), with an error wrapping
// diskguard.ErrDiskFull, which crosses a forward as itself. The small
// bookkeeping commands still commit (tickets, device touches and acks, so
// devices still connect and catch up; revocations, deletions and expiry,
// which are how space comes back). Below the
// floor the FSM also stops applying entries (a follower whose disk filled
// while the leader's did not keeps them in its raft log, whose writes fail
// cleanly when it is full) and goes on once there is room again.

// diskHook is what the node and its FSM ask.
type diskHook struct {
	g       *diskguard.Guard
	closing <-chan struct{}
}

// diskHooks holds each node's guard, by FSM: the FSM is the part of a node
// that both the committer and raft's apply goroutine reach.
type diskHooks = atomic.Pointer[diskHook]

// SetDiskGuard makes the node refuse writes and pause applying as g says.
// Call it right after Open (a start below the floor waits before Open:
// diskguard.WaitForRoom); nil removes the guard.
func (n *Node) SetDiskGuard(g *diskguard.Guard) {
	if g == nil {
		n.fsm.disk.Store(nil)
		return
	}
	n.fsm.disk.Store(&diskHook{g: g, closing: n.closing})
}

// diskCheck refuses a write of kind while the disk is below the reserve.
func (n *Node) diskCheck(kind mailbox.Kind) error {
	switch kind {
	case mailbox.KindPublish, mailbox.KindCreateUser, mailbox.KindCreateMailbox:
	default:
		return nil
	}
	if h := n.fsm.disk.Load(); h != nil {
		return h.g.Check()
	}
	return nil
}

// waitDisk holds the FSM while the disk is below the floor. It reports
// false when the node began closing meanwhile: the entry must then be left
// unapplied (the store's applied index stays before it, so the next start
// applies it).
func (f *fsm) waitDisk() bool {
	h := f.disk.Load()
	return h == nil || h.g.WaitRoom(h.closing)
}

// DiskFull reports whether the node refuses writes for want of disk space
// now (its /readyz answers 503 while it does).
func (n *Node) DiskFull() bool { return n.diskCheck(mailbox.KindPublish) != nil }
