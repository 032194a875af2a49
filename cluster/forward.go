package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/notifyhub/hub/mailbox"
)

// Forwarding: a write that reaches a follower goes to the leader over the
// cluster's internal HTTP (internal.go serves it), as the same bytes the
// leader would put in its log. The leader answers the command's result and
// the raft index it was applied at; the follower waits until it has applied
// that index too before it answers its own caller, so a client that got a
// 201 from any node reads its write back from that node.
//
// A forward is retried on another leader only when nothing was proposed: the
// leader could not be dialled, or it answered that it is not the leader. Any
// other failure is the caller's (ErrNoQuorum: it may have committed; a
// publisher retries with its Idempotency-Key). Every forward is bounded by
// Config.ForwardTimeout, and waiting for an unknown leader by
// Config.LeaderWait, so a node without a quorum answers ErrNoQuorum quickly
// instead of hanging.

// Headers of calls between nodes.
const (
	// hdrForwardedBy marks a call one node makes to another: the receiver
	// acts on it itself or refuses it, and never forwards it again.
	hdrForwardedBy = "Hub-Forwarded-By"
	// retryPause is how long a forward waits before it tries again, unless
	// raft reports a change first.
	retryPause = 50 * time.Millisecond
)

// errRetry marks a forward that did nothing and may go to another leader.
var errRetry = errors.New("forward: nothing done; retry")

// errLeaderHere: while a forward waited for a leader, this node became it.
var errLeaderHere = errors.New("forward: this node is the leader now")

func (n *Node) forwardPublish(ctx context.Context, items []mailbox.PublishItem) ([]mailbox.PublishedItem, error) {
	data, err := (&mailbox.Command{Kind: mailbox.KindPublish, Publish: &mailbox.Publish{Items: items}}).Encode()
	if err != nil {
		return nil, fmt.Errorf("cluster: publish: %w", err)
	}
	res, err := n.forwardCommand(ctx, data)
	if err == nil {
		err = res.Err
	}
	if err == nil && len(res.Published) != len(items) {
		err = fmt.Errorf("the leader answered %d results for %d items", len(res.Published), len(items))
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: publish: %w", err)
	}
	return res.Published, nil
}

func (n *Node) forwardPropose(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, error) {
	data, err := cmd.Encode() // At goes too, but the leader stamps its own
	if err == nil {
		var res mailbox.Result
		if res, err = n.forwardCommand(ctx, data); err == nil {
			return res, nil
		}
	}
	return mailbox.Result{}, fmt.Errorf("cluster: propose %v: %w", cmd.Kind, err)
}

// forwardCommand has the leader apply an encoded command, and waits until
// this node applied it too.
func (n *Node) forwardCommand(ctx context.Context, data []byte) (mailbox.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ForwardTimeout)
	defer cancel()
	var a answer
	if err := n.callLeader(ctx, "/internal/v1/propose", data, &a); err != nil {
		return mailbox.Result{}, err
	}
	if err := n.waitApplied(ctx, a.Index); err != nil {
		return mailbox.Result{}, err
	}
	if a.Result == nil {
		return mailbox.Result{}, nil
	}
	return a.Result.result(), nil
}

// forwardJSON sends in as JSON to the leader's path and decodes its answer
// into out (if not nil).
func (n *Node) forwardJSON(ctx context.Context, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ForwardTimeout)
	defer cancel()
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return n.callLeader(ctx, path, body, out)
}

// callLeader posts body to path on the leader, again on a new leader while
// nothing was done, until ctx ends.
func (n *Node) callLeader(ctx context.Context, path string, body []byte, out any) error {
	for {
		api, err := n.leaderAPI(ctx)
		if err != nil {
			return err
		}
		err = n.post(ctx, api+path, bytes.NewReader(body), out)
		if !errors.Is(err, errRetry) {
			return err
		}
		t := time.NewTimer(retryPause)
		select {
		case <-t.C:
		case <-n.changed.wait():
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctxErr(ctx)
		case <-n.closing:
			t.Stop()
			return ErrClosed
		}
	}
}

// leaderAPI returns the base URL of the leader's internal HTTP, which is
// served on its raft address (over nodeNet), waiting up to Config.LeaderWait
// for a leader to be known. The replicated API addresses play no part: they
// cannot redirect node-to-node traffic.
func (n *Node) leaderAPI(ctx context.Context) (string, error) {
	wait := time.NewTimer(n.cfg.LeaderWait)
	defer wait.Stop()
	for {
		ch := n.changed.wait()
		addr, id := n.raft.LeaderWithID()
		switch {
		case string(id) == n.cfg.NodeID:
			return "", errLeaderHere
		case addr != "":
			return internalURL(string(addr)), nil
		}
		select {
		case <-ch:
		case <-wait.C:
			return "", fmt.Errorf("%w: no leader known", ErrNoQuorum)
		case <-ctx.Done():
			return "", ctxErr(ctx)
		case <-n.closing:
			return "", ErrClosed
		}
	}
}

// internalURL is the base URL of the internal HTTP of the node at raftAddr:
// plain http in the URL, since the client's dialer (nodeNet) authenticates
// and encrypts the stream.
func internalURL(raftAddr string) string { return "http://" + raftAddr }

// post makes one call to another node. A failure to dial and an answer that
// the peer is not the leader are errRetry; an error answer is the peer's
// error, with its sentinel.
func (n *Node) post(ctx context.Context, url string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return err
	}
	n.authorizeRequest(req)
	return n.do(req, out)
}

// authorizeRequest marks req as forwarded by this node. The stream itself
// is what authenticates it (nodeNet): no secret travels.
func (n *Node) authorizeRequest(req *http.Request) {
	req.Header.Set(hdrForwardedBy, n.cfg.NodeID)
}

func (n *Node) do(req *http.Request, out any) error {
	ctx := req.Context()
	resp, err := n.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctxErr(ctx)
		}
		if errors.Is(err, ErrBadSecret) {
			return fmt.Errorf("call %s: %w", req.URL.Host, ErrBadSecret) // the cause is in nodeNet's log and err
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("%w: %w", errRetry, err) // the dial error stays for CallPeer
		}
		// The request may have reached the peer: no retry, the caller decides.
		return fmt.Errorf("%w: call %s: %v", ErrNoQuorum, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardBody))
	if err != nil {
		if ctx.Err() != nil {
			return ctxErr(ctx)
		}
		return fmt.Errorf("%w: read the answer of %s: %v", ErrNoQuorum, req.URL.Path, err)
	}
	if resp.StatusCode == http.StatusOK {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("cluster: answer of %s: %w", req.URL.Path, err)
		}
		return nil
	}
	var e struct {
		Error *wireError `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error == nil {
		if resp.StatusCode >= 500 {
			// Not a node's answer (a proxy, a node half started or
			// stopped): the write may or may not have been done, as
			// after a cut connection.
			return fmt.Errorf("%w: %s answered %d: %.200s", ErrNoQuorum, req.URL.Path, resp.StatusCode, b)
		}
		return fmt.Errorf("cluster: %s answered %d: %.200s", req.URL.Path, resp.StatusCode, b)
	}
	if resp.StatusCode == http.StatusMisdirectedRequest {
		return fmt.Errorf("%w: %s", errRetry, e.Error.Message)
	}
	return e.Error.err()
}

// waitApplied waits until this node has applied index.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch := n.changed.wait()
		if n.fsm.index.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctxErr(ctx)
		case <-n.closing:
			return ErrClosed
		}
	}
}

// CallPeer makes a call to the internal HTTP of the node at raftAddr (its
// raft address, as Members lists it), over the authenticated node-to-node
// transport, and decodes a 200 answer's JSON into out. Other answers are
// errors. The transport uses it to ask peers for their status.
func (n *Node) CallPeer(ctx context.Context, method, raftAddr, path string, out any) error {
	apiAddr := raftAddr
	req, err := http.NewRequestWithContext(ctx, method, internalURL(raftAddr)+path, nil)
	if err != nil {
		return err
	}
	n.authorizeRequest(req)
	err = n.do(req, out)
	var op *net.OpError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		err = fmt.Errorf("cluster: %s did not answer in time: %w", apiAddr, ctx.Err())
	case errors.Is(err, errRetry) && errors.As(err, &op):
		// Why the node is down ("connect: connection refused"), not that a
		// forward may be retried.
		err = fmt.Errorf("cluster: %s is unreachable: %w", apiAddr, op.Err)
	case errors.Is(err, ErrBadSecret):
		err = fmt.Errorf("cluster: %s did not authenticate: %w", apiAddr, err)
	}
	return err
}

// JoinVia asks the cluster that the node at seed (any member's raft
// address, host:port) belongs to, to add the node req describes (normally
// this one) as a voter. The call goes over the authenticated node-to-node
// transport, so this node needs the cluster's credentials. It tries again
// while the seed cannot be reached, has no leader or is busy with another
// membership change, until ctx ends; a refusal (credentials not accepted,
// an id or address taken) ends it at once. hubd --join calls it on a node's
// first start.
func (n *Node) JoinVia(ctx context.Context, seed string, req JoinRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	url := internalURL(seed) + "/internal/v1/join"
	for {
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		err = n.do(hreq, nil)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrBadSecret):
			return fmt.Errorf("cluster: join %s via %s: %w", req.ID, seed, err)
		case errors.Is(err, errRetry), errors.Is(err, ErrNoQuorum), errors.Is(err, ErrNotLeader), errors.Is(err, ErrMembershipBusy):
		default:
			return fmt.Errorf("cluster: join %s via %s: %w", req.ID, seed, err)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("cluster: join %s via %s: %w (last: %v)", req.ID, seed, ctx.Err(), err)
		case <-n.closing:
			return fmt.Errorf("cluster: join %s via %s: %w", req.ID, seed, ErrClosed)
		}
	}
}

// newClient makes the internal HTTP client: every connection is a stream
// of nn to a peer's raft address.
func newClient(nn *nodeNet) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil, // calls between nodes never go through a proxy
		DialContext:         nn.dialHTTP,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// WaitApplied blocks until this node has applied the raft index, ctx ends
// or the node closes.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	if err := n.waitApplied(ctx, index); err != nil {
		return fmt.Errorf("cluster: wait for index %d: %w", index, err)
	}
	return nil
}
