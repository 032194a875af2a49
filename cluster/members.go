package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
)

// Membership: joins, removals and leadership transfers run on the leader;
// on a follower they are forwarded to it, like writes. Each is checked
// against raft's current configuration first and refused without a change
// when it would make no sense (ErrMemberExists, ErrMemberUnknown,
// ErrLastVoter). On the leader they run one at a time (Node.membership), so
// that two joins cannot both pass the checks. Should raft still answer that
// the configuration changed meanwhile (its prevIndex check, a change by a
// former leader), the change is checked and tried again on the new
// configuration, up to membershipTries times in all, and then refused with
// ErrMembershipBusy (503, retryable; hubd --join keeps trying).

// JoinRequest describes a node that asks to join.
type JoinRequest struct {
	ID       string `json:"id"`        // raft server id
	RaftAddr string `json:"raft_addr"` // raft TCP address, host:port
	APIAddr  string `json:"api_addr"`  // base URL of its HTTP API; may be empty (it announces itself later)
}

// Member is one server of the raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"` // "" until the node announced it
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// validNodeID reports whether s may be a node id: 1 to 64 characters of
// letters, digits, '.', '_' and '-'.
func validNodeID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validAPIAddr(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && (u.Path == "" || u.Path == "/")
}

func (req JoinRequest) validate() error {
	if !validNodeID(req.ID) {
		return fmt.Errorf("%w: id must be 1 to 64 characters of A-Z a-z 0-9 . _ -", ErrBadMember)
	}
	if host, port, err := net.SplitHostPort(req.RaftAddr); err != nil || host == "" || port == "" || port == "0" {
		return fmt.Errorf("%w: raft_addr must be host:port", ErrBadMember)
	}
	if req.APIAddr != "" && !validAPIAddr(req.APIAddr) {
		return fmt.Errorf("%w: api_addr must be an http(s) base URL", ErrBadMember)
	}
	return nil
}

// Join adds a node as a voter. Joining again with the same id and address
// changes nothing and succeeds (a join whose answer was lost is retried);
// an id, raft address or API address that another member has is
// ErrMemberExists.
func (n *Node) Join(ctx context.Context, req JoinRequest) error {
	if err := req.validate(); err != nil {
		return err
	}
	err := n.leaderOp(func() error { return n.joinLocal(req) }, func() error { return n.forwardJSON(ctx, "/internal/v1/join", req, nil) })
	if err != nil {
		return fmt.Errorf("cluster: join %s: %w", req.ID, err)
	}
	return nil
}

// leaderOp runs a leader-only operation here, or forwards it when this
// node is not the leader, again here when it became the leader while the
// forward waited for one (a re-election), as Publish does.
func (n *Node) leaderOp(here, there func() error) error {
	for range maxLeaderFlips {
		err := here()
		if !errors.Is(err, errNotHere) {
			return err
		}
		if err = there(); !errors.Is(err, errLeaderHere) {
			return err
		}
	}
	return fmt.Errorf("%w: leadership kept moving", ErrNotLeader)
}

// membershipTries bounds how often a membership change is tried on a
// configuration that keeps changing under it.
const membershipTries = 5

// changeMembership runs a membership change on the leader, alone, again on
// a fresh configuration while raft answers that the configuration changed.
func (n *Node) changeMembership(change func() error) error {
	n.membership.Lock()
	defer n.membership.Unlock()
	var err error
	for range membershipTries {
		if err = change(); !errors.Is(err, ErrMembershipBusy) {
			return err
		}
	}
	return err
}

// configuration reads raft's latest configuration on the leader. (raft
// v1.7.3's GetConfiguration leaves its Index 0, which turns raft's prevIndex
// check off: Node.membership is what keeps changes from racing here.)
func (n *Node) configuration() (raft.ConfigurationFuture, error) {
	if n.raft.State() != raft.Leader {
		return nil, errNotHere
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, raftErr(err)
	}
	return cf, nil
}

func (n *Node) joinLocal(req JoinRequest) error {
	if n.creds.none() {
		// It could never reach the new member, nor the new member it.
		return fmt.Errorf("%w: %v", ErrBadSecret, errNoCredentials)
	}
	return n.changeMembership(func() error { return n.joinOnce(req) })
}

func (n *Node) joinOnce(req JoinRequest) error {
	cf, err := n.configuration()
	if err != nil {
		return err
	}
	servers := cf.Configuration().Servers
	if err := n.apiTaken(servers, req.ID, req.APIAddr); err != nil {
		return err
	}
	for _, s := range servers {
		sameID, sameAddr := string(s.ID) == req.ID, string(s.Address) == req.RaftAddr
		switch {
		case sameID && sameAddr && s.Suffrage == raft.Voter:
			if req.APIAddr != "" && n.fsm.meta.get(req.ID) != req.APIAddr {
				return n.applyMeta(metaOp{Op: "set", ID: req.ID, API: req.APIAddr})
			}
			return nil
		case sameID:
			return fmt.Errorf("%w: id %s is the member at %s", ErrMemberExists, s.ID, s.Address)
		case sameAddr:
			return fmt.Errorf("%w: address %s is member %s's", ErrMemberExists, s.Address, s.ID)
		}
	}
	if err := n.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), cf.Index(), membershipTimeout).Error(); err != nil {
		return raftErr(err)
	}
	if req.APIAddr != "" {
		return n.applyMeta(metaOp{Op: "set", ID: req.ID, API: req.APIAddr})
	}
	return nil
}

// Remove removes a member. Removing the last voter is ErrLastVoter, an
// unknown id ErrMemberUnknown; neither changes anything. A removed node's
// raft shuts down (it refuses writes from then on); stop it and clear its
// data directory before it joins again.
func (n *Node) Remove(ctx context.Context, id string) error {
	err := n.leaderOp(func() error { return n.removeLocal(id) }, func() error { return n.forwardJSON(ctx, "/internal/v1/remove", removeRequest{ID: id}, nil) })
	if err != nil {
		return fmt.Errorf("cluster: remove %s: %w", id, err)
	}
	return nil
}

type removeRequest struct {
	ID string `json:"id"`
}

func (n *Node) removeLocal(id string) error {
	return n.changeMembership(func() error { return n.removeOnce(id) })
}

func (n *Node) removeOnce(id string) error {
	cf, err := n.configuration()
	if err != nil {
		return err
	}
	servers := cf.Configuration().Servers
	i := slices.IndexFunc(servers, func(s raft.Server) bool { return string(s.ID) == id })
	if i < 0 {
		return ErrMemberUnknown
	}
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	if servers[i].Suffrage == raft.Voter && voters == 1 {
		return ErrLastVoter
	}
	forget := func() error {
		if n.fsm.meta.get(id) == "" {
			return nil
		}
		return n.applyMeta(metaOp{Op: "del", ID: id})
	}
	if id == n.cfg.NodeID {
		// The metadata goes first: once the leader removed itself it can
		// no longer propose. If the removal then fails, the node announces
		// itself again.
		if err := forget(); err != nil {
			return err
		}
		return raftErr(n.raft.RemoveServer(raft.ServerID(id), cf.Index(), membershipTimeout).Error())
	}
	// Another node: the removal goes first, so that the node's announce
	// loop cannot record its address again between the two (announceLocal
	// refuses an id that is not a member). Should the leader lose its
	// leadership between the two, an entry for a node that is no member is
	// left: it is listed nowhere, and a join of that id replaces it.
	if err := raftErr(n.raft.RemoveServer(raft.ServerID(id), cf.Index(), membershipTimeout).Error()); err != nil {
		return err
	}
	return forget()
}

// apiTaken refuses an API address that a member other than id has: two
// members at one address would have writes forwarded to the wrong node.
func (n *Node) apiTaken(servers []raft.Server, id, api string) error {
	if api == "" {
		return nil
	}
	api = strings.TrimSuffix(api, "/")
	for _, s := range servers {
		if string(s.ID) != id && strings.TrimSuffix(n.fsm.meta.get(string(s.ID)), "/") == api {
			return fmt.Errorf("%w: api address %s is member %s's", ErrMemberExists, api, s.ID)
		}
	}
	return nil
}

// TransferLeadership hands leadership to the voter id, or to the most
// up-to-date other voter when id is "". It returns once the transfer
// finished (or failed); a cluster of one voter has nobody to hand it to
// (ErrMemberUnknown).
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	err := n.leaderOp(func() error { return n.transferLocal(id) }, func() error { return n.forwardJSON(ctx, "/internal/v1/transfer", removeRequest{ID: id}, nil) })
	if err != nil {
		return fmt.Errorf("cluster: transfer leadership: %w", err)
	}
	return nil
}

func (n *Node) transferLocal(id string) error {
	if n.raft.State() != raft.Leader {
		return errNotHere
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return raftErr(err)
	}
	var target *raft.Server
	others := 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage != raft.Voter || string(s.ID) == n.cfg.NodeID {
			continue
		}
		others++
		if string(s.ID) == id {
			target = &s
		}
	}
	switch {
	case id == n.cfg.NodeID:
		return nil // it leads already
	case id != "" && target == nil:
		return fmt.Errorf("%w: no other voter %s", ErrMemberUnknown, id)
	case others == 0:
		return fmt.Errorf("%w: no other voter to hand leadership to", ErrMemberUnknown)
	case target != nil:
		return raftErr(n.raft.LeadershipTransferToServer(target.ID, target.Address).Error())
	}
	return raftErr(n.raft.LeadershipTransfer().Error())
}

// Members returns the servers of the current raft configuration (as this
// node knows it) with their API addresses.
func (n *Node) Members() ([]Member, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, fmt.Errorf("cluster: members: %w", raftErr(err))
	}
	_, leader := n.raft.LeaderWithID()
	var out []Member
	for _, s := range cf.Configuration().Servers {
		out = append(out, Member{
			ID:       string(s.ID),
			RaftAddr: string(s.Address),
			APIAddr:  n.fsm.meta.get(string(s.ID)),
			Voter:    s.Suffrage == raft.Voter,
			Leader:   s.ID == leader,
		})
	}
	return out, nil
}

// announce records this node's API address in the replicated metadata.
func (n *Node) announce(ctx context.Context, api string) error {
	op := metaOp{Op: "set", ID: n.cfg.NodeID, API: api}
	return n.leaderOp(func() error { return n.announceLocal(op) }, func() error { return n.forwardJSON(ctx, "/internal/v1/announce", op, nil) })
}

// announceLocal records a member's API address on the leader. An id that is
// not a member is refused (ErrMemberUnknown): a node removed a moment ago
// must not leave an entry behind; so is an address another member has
// (ErrMemberExists).
func (n *Node) announceLocal(op metaOp) error {
	if n.raft.State() != raft.Leader {
		return errNotHere
	}
	if op.Op != "set" || !validNodeID(op.ID) || !validAPIAddr(op.API) {
		return fmt.Errorf("%w: announce %+v", ErrBadMember, op)
	}
	n.membership.Lock()
	defer n.membership.Unlock()
	cf, err := n.configuration()
	if err != nil {
		return err
	}
	servers := cf.Configuration().Servers
	if !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == op.ID }) {
		return fmt.Errorf("%w: %s announced its API address", ErrMemberUnknown, op.ID)
	}
	if err := n.apiTaken(servers, op.ID, op.API); err != nil {
		return err
	}
	return n.applyMeta(op)
}

// applyMeta commits a cluster entry on the leader.
func (n *Node) applyMeta(op metaOp) error {
	return raftErr(n.raft.Apply(encodeMeta(op), enqueueTimeout).Error())
}

// Sync makes every write that was acknowledged before the call visible in
// this node's store (a read barrier): it asks the leader, which confirms it
// still leads (a heartbeat round, no log entry), for the index it has
// applied, and waits until this node applied it too. On the leader it
// returns at once. It returns that index.
func (n *Node) Sync(ctx context.Context) (uint64, error) {
	index, err := n.syncLocal()
	if errors.Is(err, errNotHere) {
		var a answer
		if err = n.forwardJSON(ctx, "/internal/v1/sync", struct{}{}, &a); err == nil {
			index = a.Index
		}
	}
	if err == nil {
		err = n.waitApplied(ctx, index)
	}
	if err != nil {
		return 0, fmt.Errorf("cluster: sync: %w", err)
	}
	return index, nil
}

func (n *Node) syncLocal() (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, errNotHere
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, raftErr(err)
	}
	return n.fsm.index.Load(), nil
}

// IsLeader reports whether this node is the raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }
