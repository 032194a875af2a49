package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/mailbox"
)

// stream reads a user's whole stream from a store.
func stream(t *testing.T, s *mailbox.Store, user string) []string {
	t.Helper()
	msgs, err := s.Messages(user, 0, 0, time.Now().UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		if m.Seq != mailbox.Seq(i+1) {
			t.Fatalf("stream has seq %d at position %d", m.Seq, i)
		}
		out[i] = m.Data
	}
	return out
}

func memberIDs(t *testing.T, n *cluster.Node) []string {
	t.Helper()
	ms, err := n.Members()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestReplicationAndForwarding(t *testing.T) {
	c := clustertest.StartCluster(t, 3)
	f := c.Followers(t)[0]
	// Every kind of write works through a follower: it forwards to the leader.
	user, _ := clustertest.NewUser(t, f.Node)
	mbID, token := clustertest.NewMailbox(t, f.Node, user)
	res := clustertest.Publish(t, f.Node, token, "one", "two", "three")
	// Read-your-writes: the follower answered only after it applied them.
	for i, r := range res {
		if r.Status.Seq != mailbox.Seq(i+1) || r.Status.MailboxID != mbID {
			t.Errorf("result %d: %+v", i, r.Status)
		}
		if st, err := f.Store.Status(r.Status.ID); err != nil || st.Seq != r.Status.Seq {
			t.Errorf("the follower does not read its own write %d: %+v, %v", i, st, err)
		}
	}
	// Refusals come back as the same sentinels.
	items := []mailbox.PublishItem{clustertest.Item(mailbox.NewToken(), "nobody's")}
	out, err := f.Node.Publish(ctx(t), items)
	if err != nil || len(out) != 1 || !errors.Is(out[0].Err, mailbox.ErrTokenUnknown) {
		t.Errorf("unknown token through a follower: %+v, %v", out, err)
	}
	_, err = f.Node.Propose(ctx(t), &mailbox.Command{Kind: mailbox.KindCreateUser, CreateUser: &mailbox.CreateUser{UserID: user, SecretHash: mailbox.Hash("x")}})
	if !errors.Is(err, mailbox.ErrUserExists) {
		t.Errorf("duplicate user through a follower: %v, want ErrUserExists", err)
	}
	// An idempotent retry through another node returns the first message.
	it := clustertest.Item(token, "once")
	it.IdempotencyKey, it.RequestHash = "k1", []byte("h")
	first, err := f.Node.Publish(ctx(t), []mailbox.PublishItem{it})
	if err != nil {
		t.Fatal(err)
	}
	it.ID = mailbox.NewID()
	again, err := c.Leader(t).Node.Publish(ctx(t), []mailbox.PublishItem{it})
	if err != nil || !again[0].Duplicate || again[0].Status.ID != first[0].Status.ID {
		t.Errorf("retry: %+v, %v; first %+v", again, err, first[0].Status)
	}
	// Every node holds the same stream.
	c.Sync(t)
	want := []string{"one", "two", "three", "once"}
	for _, m := range c.Members {
		if got := stream(t, m.Store, user); !slices.Equal(got, want) {
			t.Errorf("%s holds %q, want %q", m.ID, got, want)
		}
	}
}

func TestJoinAndRemove(t *testing.T) {
	c := clustertest.StartCluster(t, 3)
	user, _ := clustertest.NewUser(t, c.Members[0].Node)
	_, token := clustertest.NewMailbox(t, c.Members[0].Node, user)
	clustertest.Publish(t, c.Members[0].Node, token, "before")

	m := c.Add(t)
	clustertest.Publish(t, m.Node, token, "after")
	if got := stream(t, m.Store, user); !slices.Equal(got, []string{"before", "after"}) {
		t.Errorf("the new node holds %q", got)
	}
	c.WaitMembers(t)
	if ids := memberIDs(t, c.Members[1].Node); !slices.Equal(ids, []string{"n0", "n1", "n2", "n3"}) {
		t.Errorf("members %v", ids)
	}

	// Removed through a follower, which forwards to the leader.
	f := c.Followers(t)[0]
	if f == m {
		f = c.Followers(t)[1]
	}
	if err := f.Node.Remove(ctx(t), m.ID); err != nil {
		t.Fatal(err)
	}
	c.Stop(t, m.Index)
	if ids := memberIDs(t, c.Leader(t).Node); !slices.Equal(ids, []string{"n0", "n1", "n2"}) {
		t.Errorf("members after remove %v", ids)
	}
	clustertest.Publish(t, f.Node, token, "three nodes again")
}

func TestMembershipRefusals(t *testing.T) {
	c := clustertest.StartCluster(t, 2)
	before := memberIDs(t, c.Members[0].Node)
	addr0 := c.Members[0].Node.Addr()
	f := c.Followers(t)[0].Node
	cases := []struct {
		name string
		req  cluster.JoinRequest
		want error
	}{
		{"duplicate id", cluster.JoinRequest{ID: "n1", RaftAddr: "127.0.0.1:1"}, cluster.ErrMemberExists},
		{"duplicate address", cluster.JoinRequest{ID: "n9", RaftAddr: addr0}, cluster.ErrMemberExists},
		{"bad id", cluster.JoinRequest{ID: "a/b", RaftAddr: "127.0.0.1:1"}, cluster.ErrBadMember},
		{"bad address", cluster.JoinRequest{ID: "n9", RaftAddr: "nowhere"}, cluster.ErrBadMember},
		{"bad api address", cluster.JoinRequest{ID: "n9", RaftAddr: "127.0.0.1:1", APIAddr: "ftp://x"}, cluster.ErrBadMember},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []*cluster.Node{c.Leader(t).Node, f} {
				if err := n.Join(ctx(t), tc.req); !errors.Is(err, tc.want) {
					t.Errorf("join on %s: %v, want %v", n.ID(), err, tc.want)
				}
			}
		})
	}
	// The same node joining again is no change, and no error.
	m1 := c.Members[1]
	if err := f.Join(ctx(t), cluster.JoinRequest{ID: m1.ID, RaftAddr: m1.Node.Addr(), APIAddr: m1.URL}); err != nil {
		t.Errorf("repeated join: %v", err)
	}
	if err := f.Remove(ctx(t), "nobody"); !errors.Is(err, cluster.ErrMemberUnknown) {
		t.Errorf("remove unknown: %v", err)
	}
	if err := f.TransferLeadership(ctx(t), "nobody"); !errors.Is(err, cluster.ErrMemberUnknown) {
		t.Errorf("transfer to unknown: %v", err)
	}
	// Remove down to one voter, then the last one is refused.
	l := c.Leader(t)
	other := c.Followers(t)[0]
	if err := l.Node.Remove(ctx(t), other.ID); err != nil {
		t.Fatal(err)
	}
	c.Stop(t, other.Index)
	if err := l.Node.Remove(ctx(t), l.ID); !errors.Is(err, cluster.ErrLastVoter) {
		t.Errorf("remove the last voter: %v, want ErrLastVoter", err)
	}
	if ids := memberIDs(t, l.Node); !slices.Equal(ids, []string{l.ID}) {
		t.Errorf("members %v (before %v)", ids, before)
	}
	user, _ := clustertest.NewUser(t, l.Node) // still takes writes
	_ = user
}

func TestWrongSecret(t *testing.T) {
	c := clustertest.StartCluster(t, 1)
	before := memberIDs(t, c.Members[0].Node)
	cctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	// A node of another cluster (another secret) cannot join through it.
	_, other := clustertest.Start(t, clustertest.WithConfig(func(cfg *cluster.Config) { cfg.Secret = "wrong" }))
	err := other.JoinVia(cctx, c.Members[0].Node.Addr(), cluster.JoinRequest{ID: "n5", RaftAddr: "127.0.0.1:1"})
	if !errors.Is(err, cluster.ErrBadSecret) {
		t.Errorf("join with a wrong secret: %v, want ErrBadSecret", err)
	}
	// The public port has no internal calls, and the raft port speaks TLS
	// to authenticated nodes only: a plain HTTP call gets no answer.
	for _, path := range []string{"/internal/v1/propose", "/internal/v1/join", "/internal/v1/remove", "/internal/v1/restore"} {
		resp, err := http.Post(c.Members[0].URL+path, "application/json", strings.NewReader(`{"id":"n0"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s on the public port: %d, want 404", path, resp.StatusCode)
		}
		resp, err = http.Post("http://"+c.Members[0].Node.Addr()+path, "application/json", strings.NewReader(`{"id":"n0"}`))
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s on the raft port without credentials: answered %d", path, resp.StatusCode)
		}
	}
	if after := memberIDs(t, c.Members[0].Node); !slices.Equal(before, after) {
		t.Errorf("members changed: %v -> %v", before, after)
	}
	// The right secret joins (the node is not running: raft only records it).
	_, same := clustertest.Start(t, clustertest.WithConfig(func(cfg *cluster.Config) { cfg.Secret = c.Secret }))
	err = same.JoinVia(cctx, c.Members[0].Node.Addr(), cluster.JoinRequest{ID: "n5", RaftAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatalf("join with the secret: %v", err)
	}
	if err := c.Members[0].Node.Remove(ctx(t), "n5"); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotInstallOnNewNode(t *testing.T) {
	recs := map[int]*recorder{}
	c := clustertest.StartCluster(t, 3,
		clustertest.WithConfig(func(cfg *cluster.Config) { cfg.TrailingLogs = 2 }),
		clustertest.WithWiring(func(i int, _ *mailbox.Store) (cluster.Applied, func(*clustertest.Member) http.Handler) {
			recs[i] = newRecorder()
			return recs[i], nil
		}))
	l := c.Leader(t)
	user, _ := clustertest.NewUser(t, l.Node)
	_, token := clustertest.NewMailbox(t, l.Node, user)
	var want []string
	for i := range 20 {
		d := fmt.Sprint(i)
		want = append(want, d)
		clustertest.Publish(t, l.Node, token, d)
	}
	c.Sync(t)
	for _, m := range c.Members {
		if err := m.Node.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	m := c.Add(t) // its log starts past the leader's first index: it must install the snapshot
	if _, restored := recs[m.Index].snapshot(); restored == 0 {
		t.Error("the new node did not install a snapshot")
	}
	if got := stream(t, m.Store, user); !slices.Equal(got, want) {
		t.Errorf("the new node holds %q, want %q", got, want)
	}
	// And the cluster metadata came with it: it forwards to the leader.
	clustertest.Publish(t, m.Node, token, "via the new node")
	c.WaitMembers(t)
}

func TestFailoverAndMinority(t *testing.T) {
	c := clustertest.StartCluster(t, 3)
	l := c.Leader(t)
	user, _ := clustertest.NewUser(t, l.Node)
	_, token := clustertest.NewMailbox(t, l.Node, user)
	clustertest.Publish(t, l.Node, token, "one")

	c.Stop(t, l.Index)
	nl := c.Leader(t)
	if nl == l {
		t.Fatal("the stopped leader still leads")
	}
	f := c.Followers(t)[0]
	clustertest.Publish(t, f.Node, token, "two")

	// Two of three down: the last one refuses writes, quickly and clearly.
	c.Stop(t, f.Index)
	_, err := nl.Node.Publish(ctx(t), []mailbox.PublishItem{clustertest.Item(token, "lost")})
	if !errors.Is(err, cluster.ErrNoQuorum) && !errors.Is(err, cluster.ErrNotLeader) {
		t.Errorf("publish on a minority: %v, want ErrNoQuorum or ErrNotLeader", err)
	}
	// The others come back; the minority catches up and takes writes again.
	c.Restart(t, l.Index)
	c.Restart(t, f.Index)
	clustertest.WaitReady(t, nl.Node)
	clustertest.Publish(t, nl.Node, token, "three")
	c.Sync(t)
	// The refused write may have committed after all (the minority leader
	// had it in its log, and the others took it when they came back): a
	// 503 promises nothing either way, a 201 does. Every node agrees.
	want := stream(t, c.Members[0].Store, user)
	if w := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "lost" }); !slices.Equal(w, []string{"one", "two", "three"}) {
		t.Errorf("stream %q, want one, two, three (and maybe lost)", want)
	}
	for _, m := range c.Members {
		if got := stream(t, m.Store, user); !slices.Equal(got, want) {
			t.Errorf("%s holds %q, %s holds %q", m.ID, got, c.Members[0].ID, want)
		}
	}
}

func TestTransferAndHandOverOnClose(t *testing.T) {
	c := clustertest.StartCluster(t, 3)
	l := c.Leader(t)
	to := c.Followers(t)[1]
	// Asked of a follower, carried out by the leader.
	if err := c.Followers(t)[0].Node.TransferLeadership(ctx(t), to.ID); err != nil {
		t.Fatal(err)
	}
	if got := c.Leader(t); got != to {
		t.Fatalf("leader %s after transfer to %s", got.ID, to.ID)
	}
	// A leader that closes hands over: the others have a leader without an
	// election timeout, and their term moved by one.
	term := to.Node.Stats().Term
	c.Stop(t, to.Index)
	nl := c.Leader(t)
	if nl == l && nl == to {
		t.Fatal("no new leader")
	}
	if st := nl.Node.Stats(); st.Term != term+1 {
		t.Logf("term %d after hand-over from term %d (an election happened instead)", st.Term, term)
	}
}

func TestBackupRestore(t *testing.T) {
	c := clustertest.StartCluster(t, 3)
	f := c.Followers(t)[0]
	user, _ := clustertest.NewUser(t, f.Node)
	_, token := clustertest.NewMailbox(t, f.Node, user)
	clustertest.Publish(t, f.Node, token, "kept")
	var backup bytes.Buffer
	if _, err := f.Node.Backup(&backup); err != nil {
		t.Fatal(err)
	}
	clustertest.Publish(t, f.Node, token, "undone")
	other, _ := clustertest.NewUser(t, f.Node)

	// A broken backup changes nothing.
	bad := append([]byte(nil), backup.Bytes()...)
	bad[len(bad)/2] ^= 0xff
	if err := f.Node.Restore(ctx(t), bytes.NewReader(bad)); !errors.Is(err, mailbox.ErrBadSnapshot) {
		t.Errorf("restore of a corrupt backup: %v", err)
	}
	if got := stream(t, f.Store, user); len(got) != 2 {
		t.Errorf("after a refused restore: %q", got)
	}

	if err := c.Followers(t)[1].Node.Restore(ctx(t), &backup); err != nil {
		t.Fatal(err)
	}
	c.Sync(t)
	for _, m := range c.Members {
		if got := stream(t, m.Store, user); !slices.Equal(got, []string{"kept"}) {
			t.Errorf("%s after restore: %q", m.ID, got)
		}
		if _, err := m.Store.User(other); !errors.Is(err, mailbox.ErrUserUnknown) {
			t.Errorf("%s still has the user made after the backup: %v", m.ID, err)
		}
	}
	// The cluster goes on from the restored state, past every seq it ever
	// issued: "undone" had 2, which devices may have seen and acked.
	res := clustertest.Publish(t, f.Node, token, "next")
	if res[0].Status.Seq != 3 {
		t.Errorf("next seq %d, want 3", res[0].Status.Seq)
	}
}

// TestConcurrentMembershipChanges: nodes that join at once, and removals
// asked at once through different members, all get through. raft refuses a
// change whose configuration moved on meanwhile ("configuration changed
// since"); the leader tries it again on the new configuration instead of
// answering an internal error (which made hubd --join give up).
func TestConcurrentMembershipChanges(t *testing.T) {
	c := clustertest.StartCluster(t, 2)
	added := c.AddConcurrently(t, 3)
	c.WaitMembers(t)
	if ids := memberIDs(t, c.Leader(t).Node); !slices.Equal(ids, []string{"n0", "n1", "n2", "n3", "n4"}) {
		t.Fatalf("members %v", ids)
	}

	via := c.Running()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, m := range added[:2] {
		wg.Go(func() { errs[i] = via[i].Node.Remove(ctx(t), m.ID) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("remove %s through %s: %v", added[i].ID, via[i].ID, err)
		}
	}
	for _, m := range added[:2] {
		c.Stop(t, m.Index)
	}
	if ids := memberIDs(t, c.Leader(t).Node); !slices.Equal(ids, []string{"n0", "n1", "n4"}) {
		t.Errorf("members after the removals %v", ids)
	}
}

// TestConcurrentJoinsOfOneID: joins of one id from different addresses,
// asked at once, cannot both pass the checks: one wins, the others are
// refused with ErrMemberExists, and the member keeps the winner's address.
func TestConcurrentJoinsOfOneID(t *testing.T) {
	c := clustertest.StartCluster(t, 2)
	l := c.Leader(t)
	const k = 8
	errs := make([]error, k)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range k {
		wg.Go(func() {
			<-start
			errs[i] = l.Node.Join(ctx(t), cluster.JoinRequest{ID: "n7", RaftAddr: fmt.Sprintf("127.0.0.1:%d", 20+i)})
		})
	}
	close(start)
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("joins %d and %d of n7 both succeeded", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, cluster.ErrMemberExists):
			t.Errorf("join %d: %v, want ErrMemberExists", i, err)
		}
	}
	ms, err := l.Node.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == "n7" && won >= 0 && m.RaftAddr != fmt.Sprintf("127.0.0.1:%d", 20+won) {
			t.Errorf("n7 is at %s, but the join from 127.0.0.1:%d won", m.RaftAddr, 20+won)
		}
	}
	if err := l.Node.Remove(ctx(t), "n7"); err != nil {
		t.Fatal(err)
	}
}

// TestAPIAddressRefusals: a member's API address belongs to it alone, and
// only members have one: a join or an announcement with another member's
// address is refused, and so is an announcement of a node that is not (or
// no longer) a member, which would leave an entry behind for it.
func TestAPIAddressRefusals(t *testing.T) {
	c := clustertest.StartCluster(t, 3)
	l, f := c.Leader(t), c.Followers(t)[0]
	other := c.Followers(t)[1]
	for _, n := range []*cluster.Node{l.Node, f.Node} {
		err := n.Join(ctx(t), cluster.JoinRequest{ID: "n9", RaftAddr: "127.0.0.1:19", APIAddr: other.URL + "/"})
		if !errors.Is(err, cluster.ErrMemberExists) {
			t.Errorf("join on %s with %s's API address: %v, want ErrMemberExists", n.ID(), other.ID, err)
		}
	}
	announce := func(id, api string) int {
		t.Helper()
		s, err := l.Node.PostInternal(ctx(t), f.Node.Addr(), "/internal/v1/announce", fmt.Sprintf(`{"op":"set","id":%q,"api":%q}`, id, api))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := announce("ghost", "http://127.0.0.1:9"); s != http.StatusNotFound {
		t.Errorf("announce of a non-member: %d, want 404", s)
	}
	if s := announce(f.ID, other.URL); s != http.StatusConflict {
		t.Errorf("announce of %s's API address by %s: %d, want 409", other.ID, f.ID, s)
	}
	// A member removed a moment ago cannot announce itself back.
	if err := l.Node.Remove(ctx(t), other.ID); err != nil {
		t.Fatal(err)
	}
	if s := announce(other.ID, other.URL); s != http.StatusNotFound {
		t.Errorf("announce of the removed %s: %d, want 404", other.ID, s)
	}
	c.Stop(t, other.Index)
	// Nothing was left behind: ids that join without an API address have none.
	for _, id := range []string{"ghost", other.ID} {
		if err := l.Node.Join(ctx(t), cluster.JoinRequest{ID: id, RaftAddr: "127.0.0.1:29"}); err != nil {
			t.Fatal(err)
		}
		ms, err := l.Node.Members()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.ID == id && m.APIAddr != "" {
				t.Errorf("%s joined again with the API address %s left behind", id, m.APIAddr)
			}
		}
		if err := l.Node.Remove(ctx(t), id); err != nil {
			t.Fatal(err)
		}
	}
	if ms, err := f.Node.Members(); err != nil || len(ms) != 2 {
		t.Errorf("members %+v, %v", ms, err)
	}
}

// TestCallPeerSaysWhy: a peer that cannot be reached is reported with the
// reason (the dial error), not as a forward to retry.
func TestCallPeerSaysWhy(t *testing.T) {
	_, n := clustertest.Start(t, clustertest.WithConfig(func(cfg *cluster.Config) { cfg.Secret = "s" }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	err = n.CallPeer(ctx(t), http.MethodGet, addr, "/internal/v1/status", nil)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "retry") {
		t.Errorf("status of a node that is down: %v, want its address and connection refused", err)
	}
}
