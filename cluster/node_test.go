package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/mailbox"
)

// recorder is an Applied that keeps every event and counts restores.
type recorder struct {
	mu       sync.Mutex
	events   []mailbox.Event
	restored int
	notify   chan struct{} // a token after every call, never blocking
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) Applied(events []mailbox.Event) {
	r.mu.Lock()
	r.events = append(r.events, events...)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Restored() {
	r.mu.Lock()
	r.restored++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() (events []mailbox.Event, restored int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]mailbox.Event(nil), r.events...), r.restored
}

// waitFor waits until cond holds over the recorded events.
func (r *recorder) waitFor(t *testing.T, what string, cond func([]mailbox.Event) bool) {
	t.Helper()
	failsafe := time.After(clustertest.Timeout)
	for {
		if ev, _ := r.snapshot(); cond(ev) {
			return
		}
		select {
		case <-r.notify:
		case <-failsafe:
			t.Fatalf("no %s", what)
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	t.Cleanup(cancel)
	return c
}

func TestPublishSingleNode(t *testing.T) {
	rec := newRecorder()
	store, n := clustertest.Start(t, clustertest.WithApplied(rec))
	user, _ := clustertest.NewUser(t, n)
	mbID, token := clustertest.NewMailbox(t, n, user)

	items := []mailbox.PublishItem{
		clustertest.Item(token, "one"),
		clustertest.Item(mailbox.NewToken(), "nobody's"),
		clustertest.Item(token, "two"),
	}
	res, err := n.Publish(ctx(t), items)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("%d results for 3 items", len(res))
	}
	if !errors.Is(res[1].Err, mailbox.ErrTokenUnknown) {
		t.Errorf("item with an unknown token: err %v, want ErrTokenUnknown", res[1].Err)
	}
	for i, want := range map[int]mailbox.Seq{0: 1, 2: 2} {
		r := res[i]
		if r.Err != nil || r.Status == nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		if r.Status.ID != items[i].ID || r.Status.Seq != want || r.Status.MailboxID != mbID || r.Status.State != mailbox.StatePending {
			t.Errorf("item %d: status %+v, want id %s seq %d pending", i, r.Status, items[i].ID, want)
		}
		st, err := store.Status(items[i].ID)
		if err != nil || st != *r.Status {
			t.Errorf("store status of item %d: %+v, %v; want %+v", i, st, err, *r.Status)
		}
	}
	msgs, err := store.Messages(user, 0, 10, time.Now().UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Data != "one" || msgs[1].Data != "two" {
		t.Errorf("stream: %+v", msgs)
	}
	// The events reached Applied on the FSM goroutine before Publish returned.
	ev, _ := rec.snapshot()
	var published int
	for _, e := range ev {
		if e.Kind == mailbox.EventPublished {
			published++
		}
	}
	if published != 2 {
		t.Errorf("%d published events, want 2", published)
	}
	if st := n.Stats(); st.State != "Leader" || st.LeaderID != "node1" || st.AppliedIndex != store.Applied() || st.Term == 0 {
		t.Errorf("stats %+v, store applied %d", st, store.Applied())
	}
}

func TestProposeRefusal(t *testing.T) {
	_, n := clustertest.Start(t)
	user, secret := clustertest.NewUser(t, n)
	res, err := n.Propose(ctx(t), &mailbox.Command{Kind: mailbox.KindCreateUser, CreateUser: &mailbox.CreateUser{
		UserID: user, SecretHash: mailbox.Hash(secret),
	}})
	if !errors.Is(err, mailbox.ErrUserExists) || !errors.Is(res.Err, mailbox.ErrUserExists) {
		t.Errorf("second create: err %v, result err %v; want ErrUserExists in both", err, res.Err)
	}
}

func TestGroupCommit(t *testing.T) {
	store, n := clustertest.Start(t)
	user, _ := clustertest.NewUser(t, n)
	_, token := clustertest.NewMailbox(t, n, user)
	before := n.Stats().LastIndex

	const N = 200
	c := ctx(t)
	var wg sync.WaitGroup
	results := make([]mailbox.PublishedItem, N)
	errs := make([]error, N)
	start := make(chan struct{})
	for i := range N {
		wg.Go(func() {
			<-start
			res, err := n.Publish(c, []mailbox.PublishItem{clustertest.Item(token, fmt.Sprint(i))})
			if err == nil {
				results[i] = res[0]
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()

	seen := make(map[mailbox.Seq]int)
	for i := range N {
		if errs[i] != nil || results[i].Err != nil {
			t.Fatalf("publish %d: %v, %v", i, errs[i], results[i].Err)
		}
		seen[results[i].Status.Seq]++
	}
	for s := mailbox.Seq(1); s <= N; s++ {
		if seen[s] != 1 {
			t.Errorf("seq %d given %d times", s, seen[s])
		}
	}
	if u, err := store.User(user); err != nil || u.LastSeq != N {
		t.Errorf("user %+v, %v; want last seq %d", u, err, N)
	}
	entries := n.Stats().LastIndex - before
	t.Logf("%d publishes in %d raft entries", N, entries)
	if entries >= N {
		t.Errorf("%d publishes took %d raft entries: no group commit", N, entries)
	}
}

func TestPublishSplitsLargeRequests(t *testing.T) {
	store, n := clustertest.Start(t, clustertest.WithConfig(func(c *cluster.Config) { c.MaxBatch = 8 }))
	user, _ := clustertest.NewUser(t, n)
	_, token := clustertest.NewMailbox(t, n, user)
	before := n.Stats().LastIndex
	data := make([]string, 20)
	for i := range data {
		data[i] = fmt.Sprint(i)
	}
	res := clustertest.Publish(t, n, token, data...)
	for i, r := range res {
		if r.Status.Seq != mailbox.Seq(i+1) {
			t.Errorf("item %d got seq %d", i, r.Status.Seq)
		}
	}
	if got := n.Stats().LastIndex - before; got != 3 {
		t.Errorf("20 items with MaxBatch 8 took %d entries, want 3", got)
	}
	msgs, err := store.Messages(user, 0, 100, time.Now().UnixNano())
	if err != nil || len(msgs) != 20 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	for i, m := range msgs {
		if m.Data != data[i] {
			t.Errorf("message %d: %q, want %q", i, m.Data, data[i])
		}
	}
}

func TestExpiryLoop(t *testing.T) {
	rec := newRecorder()
	store, n := clustertest.Start(t, clustertest.WithApplied(rec),
		clustertest.WithConfig(func(c *cluster.Config) { c.ExpireEvery = 20 * time.Millisecond }))
	user, _ := clustertest.NewUser(t, n)
	_, token := clustertest.NewMailbox(t, n, user)
	it := clustertest.Item(token, "now or never")
	it.TTL = 0
	if _, err := n.Publish(ctx(t), []mailbox.PublishItem{it}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "expiry of a TTL 0 message", func(ev []mailbox.Event) bool {
		for _, e := range ev {
			if e.Kind == mailbox.EventFinal && e.Status != nil && e.Status.ID == it.ID {
				return true
			}
		}
		return false
	})
	if st, err := store.Status(it.ID); err != nil || st.State != mailbox.StateExpired {
		t.Errorf("status %+v, %v; want expired", st, err)
	}
}

func TestClosed(t *testing.T) {
	store, n := clustertest.Start(t)
	user, _ := clustertest.NewUser(t, n)
	_, token := clustertest.NewMailbox(t, n, user)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := n.Publish(ctx(t), []mailbox.PublishItem{clustertest.Item(token, "late")}); !errors.Is(err, cluster.ErrClosed) {
		t.Errorf("publish after close: %v, want ErrClosed", err)
	}
	if _, err := n.Propose(ctx(t), &mailbox.Command{Kind: mailbox.KindExpire, Expire: &mailbox.Expire{Limit: 1}}); !errors.Is(err, cluster.ErrClosed) {
		t.Errorf("propose after close: %v, want ErrClosed", err)
	}
	if err := n.WaitReady(ctx(t)); !errors.Is(err, cluster.ErrClosed) {
		t.Errorf("wait ready after close: %v, want ErrClosed", err)
	}
	if err := n.Snapshot(); !errors.Is(err, cluster.ErrClosed) {
		t.Errorf("snapshot after close: %v, want ErrClosed", err)
	}
	if _, err := store.User(user); err != nil {
		t.Errorf("the store must stay open: %v", err)
	}
}

func TestCloseUnderLoad(t *testing.T) {
	store, n := clustertest.Start(t)
	user, _ := clustertest.NewUser(t, n)
	_, token := clustertest.NewMailbox(t, n, user)

	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok int
	firstDone := make(chan struct{})
	var once sync.Once
	for range 8 {
		wg.Go(func() {
			for {
				_, err := n.Publish(context.Background(), []mailbox.PublishItem{clustertest.Item(token, "x")})
				if errors.Is(err, cluster.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
				once.Do(func() { close(firstDone) })
			}
		})
	}
	<-firstDone
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// Every publish answered with success is in the store.
	u, err := store.User(user)
	if err != nil {
		t.Fatal(err)
	}
	if int(u.LastSeq) < ok {
		t.Errorf("%d publishes succeeded, but the stream holds %d", ok, u.LastSeq)
	}
}

func TestNotLeader(t *testing.T) {
	dir := t.TempDir()
	store, err := mailbox.Open(filepath.Join(dir, "badger"), mailbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Not bootstrapped and alone: it never learns of a leader.
	n, err := cluster.Open(cluster.Config{RaftAddr: "127.0.0.1:0", Dir: filepath.Join(dir, "raft")}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Ready() {
		t.Error("ready without a leader")
	}
	_, err = n.Publish(ctx(t), []mailbox.PublishItem{clustertest.Item(mailbox.NewToken(), "x")})
	if !errors.Is(err, cluster.ErrNoQuorum) {
		t.Errorf("publish on a follower that knows no leader: %v, want ErrNoQuorum", err)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.WaitReady(c); !errors.Is(err, context.Canceled) {
		t.Errorf("wait ready: %v, want context.Canceled", err)
	}
}

func TestContextEnded(t *testing.T) {
	_, n := clustertest.Start(t)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Publish(c, []mailbox.PublishItem{clustertest.Item(mailbox.NewToken(), "x")}); !errors.Is(err, context.Canceled) {
		t.Errorf("publish with a cancelled context: %v", err)
	}
	c, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := n.Publish(c, []mailbox.PublishItem{clustertest.Item(mailbox.NewToken(), "x")})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cluster.ErrNoQuorum) {
		t.Errorf("publish past its deadline: %v, want DeadlineExceeded and ErrNoQuorum", err)
	}
}

// ---- restarts ----

// place is where a node keeps its state, so that it can be reopened.
type place struct {
	badger, raft, addr string
}

func newPlace(t *testing.T) *place {
	dir := t.TempDir()
	return &place{badger: filepath.Join(dir, "badger"), raft: filepath.Join(dir, "raft"), addr: "127.0.0.1:0"}
}

// open opens store and node at p and waits until the node is ready. The
// returned stop closes both (idempotent).
func (p *place) open(t *testing.T, applied cluster.Applied) (*mailbox.Store, *cluster.Node, func()) {
	t.Helper()
	store, err := mailbox.Open(p.badger, mailbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Open(cluster.Config{
		RaftAddr: p.addr, Dir: p.raft, Bootstrap: true, HeartbeatTimeout: 200 * time.Millisecond,
	}, store, applied)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	p.addr = n.Addr() // reopen on the same address, as a restarted server would
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := n.Close(); err != nil {
				t.Errorf("close node: %v", err)
			}
			if err := store.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	clustertest.WaitReady(t, n)
	return store, n, stop
}

// state is everything a test compares across a restart.
type state struct {
	applied  uint64
	user     mailbox.User
	messages []mailbox.Message
	statuses map[string]mailbox.MessageStatus
}

func readState(t *testing.T, store *mailbox.Store, user string, ids []string, now int64) state {
	t.Helper()
	s := state{applied: store.Applied(), statuses: map[string]mailbox.MessageStatus{}}
	var err error
	if s.user, err = store.User(user); err != nil {
		t.Fatal(err)
	}
	if s.messages, err = store.Messages(user, 0, 1<<20, now); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if s.statuses[id], err = store.Status(id); err != nil {
			t.Fatalf("status of %s: %v", id, err)
		}
	}
	return s
}

// publishMany publishes count messages in batches of 10 and returns their ids.
func publishMany(t *testing.T, n *cluster.Node, token string, count int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < count; i += 10 {
		data := make([]string, min(10, count-i))
		for j := range data {
			data[j] = fmt.Sprintf("m%d", i+j)
		}
		for _, r := range clustertest.Publish(t, n, token, data...) {
			ids = append(ids, r.Status.ID)
		}
	}
	return ids
}

func TestReplayAfterSnapshot(t *testing.T) {
	testRestart(t, false)
}

func TestRebuildAfterBadgerLost(t *testing.T) {
	testRestart(t, true)
}

// testRestart publishes, snapshots, publishes more, stops the node and
// reopens it (with a fresh badger if loseBadger), and checks that the state
// is what it was.
func testRestart(t *testing.T, loseBadger bool) {
	const N, M = 50, 30
	p := newPlace(t)
	store, n, stop := p.open(t, nil)
	user, _ := clustertest.NewUser(t, n)
	_, token := clustertest.NewMailbox(t, n, user)
	ids := publishMany(t, n, token, N)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, publishMany(t, n, token, M)...)
	now := time.Now().UnixNano()
	before := readState(t, store, user, ids, now)
	if before.user.LastSeq != N+M {
		t.Fatalf("last seq %d before restart, want %d", before.user.LastSeq, N+M)
	}
	stop()

	if loseBadger {
		if err := os.RemoveAll(p.badger); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder()
	store, n, _ = p.open(t, rec)
	// Ready means replay is done: the store is back where it was.
	after := readState(t, store, user, ids, now)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("state after restart differs:\nbefore %+v\nafter  %+v", before, after)
	}
	if after.user.LastSeq != N+M {
		t.Errorf("last seq %d after restart, want %d (an entry applied twice?)", after.user.LastSeq, N+M)
	}
	events, restored := rec.snapshot()
	var published int
	for _, e := range events {
		if e.Kind == mailbox.EventPublished {
			published++
		}
	}
	if restored != 1 {
		t.Errorf("Restored called %d times, want 1", restored)
	}
	wantPublished := 0 // badger kept everything: the replay skips every entry
	if loseBadger {
		wantPublished = M // the snapshot brings N back, the log the M after it
	}
	if published != wantPublished {
		t.Errorf("%d published events during replay, want %d", published, wantPublished)
	}

	// The node goes on from there.
	res := clustertest.Publish(t, n, token, "after")
	if res[0].Status.Seq != N+M+1 {
		t.Errorf("next seq %d, want %d", res[0].Status.Seq, N+M+1)
	}
}

func TestRaftStateLost(t *testing.T) {
	p := newPlace(t)
	_, n, stop := p.open(t, nil)
	user, _ := clustertest.NewUser(t, n)
	_, token := clustertest.NewMailbox(t, n, user)
	clustertest.Publish(t, n, token, "one")
	stop()
	if err := os.RemoveAll(p.raft); err != nil {
		t.Fatal(err)
	}
	store, err := mailbox.Open(p.badger, mailbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	n, err = cluster.Open(cluster.Config{RaftAddr: p.addr, Dir: p.raft, Bootstrap: true}, store, nil)
	if err == nil {
		n.Close()
		t.Fatal("opened a node whose store is ahead of its raft log")
	}
	t.Log(err)
}
