package cluster

import "github.com/hashicorp/raft"

// Leadership reports whether this node is the leader and ready (its log
// replayed), and returns a channel that is closed at the next change that
// may alter the answer: a change of raft state or leader, the end of replay,
// or Close. Work that must run on the leader only (the receipt dispatcher)
// starts when it turns true and stops when it turns false:
//
//	for {
//		leader, changed := n.Leadership()
//		... start or stop ...
//		<-changed
//	}
//
// The channel is taken before the state is read, so no change is missed.
func (n *Node) Leadership() (leader bool, changed <-chan struct{}) {
	changed = n.changed.wait()
	return n.raft.State() == raft.Leader && n.Ready(), changed
}
