package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/notifyhub/hub/mailbox"
)

// request is one caller's share of the pipeline: publish items, or one other
// command.
type request struct {
	ctx   context.Context
	items []mailbox.PublishItem // a publish, at most MaxBatch items
	cmd   *mailbox.Command      // any other command; nil for a publish
	reply chan reply            // buffered: the waiter never blocks on it
}

type reply struct {
	published []mailbox.PublishedItem
	result    mailbox.Result
	index     uint64 // the entry's raft index
	err       error
}

// entry is one proposed raft entry and the requests it carries, in order.
type entry struct {
	future raft.ApplyFuture
	reqs   []*request
	items  int // publish items in the entry; 0 for another command
}

// Publish proposes items through group commit and returns one result per
// item, in order. An item refused by the state machine (unknown or revoked
// token, reused Idempotency-Key) has its error in PublishedItem.Err; the
// returned error means the call as a whole failed: ErrNotLeader, ErrNoQuorum,
// ErrClosed, or the context's. More than MaxBatch items are split across
// entries, and then a failed call may have committed some of them. Items
// whose context ended may still commit: see the package doc.
//
// On a follower, Publish forwards the items to the leader (forward.go) and
// returns once this node has applied them too.
func (n *Node) Publish(ctx context.Context, items []mailbox.PublishItem) ([]mailbox.PublishedItem, error) {
	if err := n.diskCheck(mailbox.KindPublish); err != nil {
		return nil, fmt.Errorf("cluster: publish: %w", err)
	}
	for range maxLeaderFlips {
		out, _, err := n.publishLocal(ctx, items)
		if !errors.Is(err, errNotHere) {
			return out, err
		}
		out, err = n.forwardPublish(ctx, items)
		if !errors.Is(err, errLeaderHere) {
			return out, err
		}
		// This node became the leader while the forward waited for one.
	}
	return nil, fmt.Errorf("cluster: publish: %w: leadership kept moving", ErrNotLeader)
}

// maxLeaderFlips bounds how often a write goes back and forth between
// proposing here and forwarding while leadership moves.
const maxLeaderFlips = 3

// publishLocal is Publish on this node's own raft: it returns errNotHere,
// having proposed nothing, when this node is not the leader. index is the
// raft index of the last entry the items went into.
func (n *Node) publishLocal(ctx context.Context, items []mailbox.PublishItem) (out []mailbox.PublishedItem, index uint64, err error) {
	if len(items) == 0 {
		return nil, 0, nil
	}
	out = make([]mailbox.PublishedItem, 0, len(items))
	// The items may stay queued after Publish returned (ctx ended): keep our
	// own slice of them.
	items = append([]mailbox.PublishItem(nil), items...)
	var reqs []*request
	for len(items) > 0 {
		k := min(len(items), n.cfg.MaxBatch)
		reqs = append(reqs, &request{ctx: ctx, items: items[:k:k], reply: make(chan reply, 1)})
		items = items[k:]
	}
	for i, r := range reqs {
		if err := n.enqueue(ctx, r); err != nil {
			if i > 0 && errors.Is(err, errNotHere) {
				// Part of the call is proposed: it must not be forwarded.
				err = fmt.Errorf("%w (after %d of %d entries)", ErrNotLeader, i, len(reqs))
			}
			return nil, 0, fmt.Errorf("cluster: publish: %w", err)
		}
	}
	for _, r := range reqs {
		rep, err := n.await(ctx, r)
		if err == nil {
			err = rep.err
		}
		if err != nil {
			return nil, 0, fmt.Errorf("cluster: publish: %w", err)
		}
		out = append(out, rep.published...)
		index = max(index, rep.index)
	}
	return out, index, nil
}

// Propose proposes one command other than a publish, in its own entry, and
// returns its result once applied. The leader stamps the command's time when
// it builds the entry (cmd itself is not modified). A refusal by the state
// machine is both in Result.Err and the returned error; the other errors are
// ErrNotLeader, ErrNoQuorum, ErrClosed and the context's. The command's
// body must not change after the call, even when it returned early because
// ctx ended: it may still be proposed.
//
// On a follower, Propose forwards the command to the leader (forward.go)
// and returns once this node has applied it too.
func (n *Node) Propose(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, error) {
	if cmd == nil {
		return mailbox.Result{}, errors.New("cluster: propose: nil command")
	}
	if err := n.diskCheck(cmd.Kind); err != nil {
		return mailbox.Result{}, fmt.Errorf("cluster: propose %v: %w", cmd.Kind, err)
	}
	for range maxLeaderFlips {
		res, _, err := n.proposeLocal(ctx, cmd)
		if errors.Is(err, errNotHere) {
			res, err = n.forwardPropose(ctx, cmd)
			if errors.Is(err, errLeaderHere) {
				continue // this node became the leader while the forward waited
			}
		}
		if err != nil {
			return mailbox.Result{}, err
		}
		return res, res.Err
	}
	return mailbox.Result{}, fmt.Errorf("cluster: propose %v: %w: leadership kept moving", cmd.Kind, ErrNotLeader)
}

// proposeLocal is Propose on this node's own raft: it returns errNotHere,
// having proposed nothing, when this node is not the leader. Its error is
// the cluster's only; a refusal is in the Result alone.
func (n *Node) proposeLocal(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, uint64, error) {
	c := *cmd
	r := &request{ctx: ctx, cmd: &c, reply: make(chan reply, 1)}
	if err := n.enqueue(ctx, r); err != nil {
		return mailbox.Result{}, 0, fmt.Errorf("cluster: propose %v: %w", cmd.Kind, err)
	}
	rep, err := n.await(ctx, r)
	if err == nil {
		err = rep.err
	}
	if err != nil {
		return mailbox.Result{}, 0, fmt.Errorf("cluster: propose %v: %w", cmd.Kind, err)
	}
	return rep.result, rep.index, nil
}

// enqueue hands r to the committer.
func (n *Node) enqueue(ctx context.Context, r *request) error {
	if n.isClosed() {
		return ErrClosed
	}
	if n.raft.State() != raft.Leader {
		return errNotHere
	}
	kind := mailbox.KindPublish
	if r.cmd != nil {
		kind = r.cmd.Kind
	}
	if err := n.diskCheck(kind); err != nil {
		return err // the leader's disk, also for writes forwarded to it
	}
	select {
	case n.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-n.closing:
		return ErrClosed
	}
}

// await waits for r's reply.
func (n *Node) await(ctx context.Context, r *request) (reply, error) {
	select {
	case rep := <-r.reply:
		return rep, nil
	case <-ctx.Done():
		return reply{}, ctxErr(ctx)
	case <-n.pipeDone:
		// The waiter may have answered just before it returned.
		select {
		case rep := <-r.reply:
			return rep, nil
		default:
			return reply{}, ErrClosed
		}
	}
}

// commitLoop is the committer: it turns queued requests into raft entries,
// at most maxInflight at a time, until Close begins.
func (n *Node) commitLoop() {
	defer close(n.toWaiter)
	var carry *request // taken from the queue but not fitting the last entry
	for {
		select {
		case n.slots <- struct{}{}:
		case <-n.closing:
			return
		}
		first := carry
		carry = nil
		for first == nil {
			select {
			case r := <-n.reqs:
				if r.ctx.Err() == nil {
					first = r
				}
			case <-n.closing:
				return
			}
		}
		e := &entry{reqs: []*request{first}}
		var cmd *mailbox.Command
		if first.cmd != nil {
			cmd = first.cmd
		} else {
			carry = n.gather(e)
			cmd = &mailbox.Command{Kind: mailbox.KindPublish, Publish: &mailbox.Publish{Items: batchItems(e)}}
		}
		cmd.At = time.Now().UnixNano()
		data, err := encodeChecked(cmd)
		if err != nil {
			e.future = errFuture{err}
		} else {
			e.future = n.raft.Apply(data, enqueueTimeout)
		}
		n.toWaiter <- e // never blocks: the slot we hold guarantees room
	}
}

// encodeChecked encodes cmd for the log and decodes it back: the leader
// never appends an entry that every node's FSM would refuse to decode (and
// stop at, see fsm.go). A command that fails is refused here, with
// mailbox.ErrBadCommand, and nothing is proposed.
func encodeChecked(cmd *mailbox.Command) ([]byte, error) {
	data, err := cmd.Encode()
	if err == nil {
		_, err = mailbox.DecodeCommand(data)
	}
	if err != nil {
		if !errors.Is(err, mailbox.ErrBadCommand) {
			err = fmt.Errorf("%w: %w", mailbox.ErrBadCommand, err)
		}
		return nil, fmt.Errorf("cluster: refused to propose %v: %w", cmd.Kind, err)
	}
	return data, nil
}

// gather adds queued publish requests to e without blocking, while they fit.
// It returns a request it took that does not fit, to start the next entry.
func (n *Node) gather(e *entry) (carry *request) {
	e.items = len(e.reqs[0].items)
	size := itemsSize(e.reqs[0].items)
	for e.items < n.cfg.MaxBatch && size < maxBatchBytes {
		select {
		case r := <-n.reqs:
			if r.ctx.Err() != nil {
				continue // its caller is gone: propose nothing for it
			}
			sz := itemsSize(r.items)
			if r.cmd != nil || e.items+len(r.items) > n.cfg.MaxBatch || size+sz > maxBatchBytes {
				return r
			}
			e.reqs = append(e.reqs, r)
			e.items += len(r.items)
			size += sz
		default:
			return nil
		}
	}
	return nil
}

func batchItems(e *entry) []mailbox.PublishItem {
	if len(e.reqs) == 1 {
		return e.reqs[0].items
	}
	items := make([]mailbox.PublishItem, 0, e.items)
	for _, r := range e.reqs {
		items = append(items, r.items...)
	}
	return items
}

// itemsSize estimates the encoded size of items.
func itemsSize(items []mailbox.PublishItem) int {
	const overhead = 256 // field names, id, hashes
	n := 0
	for i := range items {
		n += overhead + len(items[i].Data) + len(items[i].Topic) + len(items[i].IdempotencyKey)
	}
	return n
}

// waitLoop is the waiter: it waits for each entry in log order and answers
// its requests. It returns once the committer has stopped and every entry
// has been answered.
func (n *Node) waitLoop() {
	defer close(n.pipeDone)
	for e := range n.toWaiter {
		n.finish(e)
		<-n.slots
	}
}

func (n *Node) finish(e *entry) {
	err := raftErr(e.future.Error())
	var res mailbox.Result
	if err == nil {
		var ok bool
		res, ok = e.future.Response().(mailbox.Result)
		if !ok {
			err = fmt.Errorf("cluster: entry %d answered %T", e.future.Index(), e.future.Response())
		}
	}
	if err != nil {
		for _, r := range e.reqs {
			r.reply <- reply{err: err}
		}
		return
	}
	index := e.future.Index()
	if e.reqs[0].cmd != nil {
		e.reqs[0].reply <- reply{result: res, index: index}
		return
	}
	if res.Err == nil && len(res.Published) != e.items {
		res.Err = fmt.Errorf("cluster: entry %d: %d results for %d items", e.future.Index(), len(res.Published), e.items)
	}
	if res.Err != nil {
		for _, r := range e.reqs {
			r.reply <- reply{err: res.Err}
		}
		return
	}
	pub := res.Published
	for _, r := range e.reqs {
		k := len(r.items)
		r.reply <- reply{published: pub[:k:k], index: index}
		pub = pub[k:]
	}
}

// errFuture is an ApplyFuture that failed before it reached raft.
type errFuture struct{ err error }

func (f errFuture) Error() error  { return f.err }
func (f errFuture) Index() uint64 { return 0 }
func (f errFuture) Response() any { return nil }
