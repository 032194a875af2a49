package hub_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// rig is a real node (raft over loopback, badger in a temp dir) whose
// applied events go to a hub.
type rig struct {
	hub   *hub.Hub
	node  *cluster.Node
	store *mailbox.Store
	user  string
	token string
}

type lateStore struct{ *mailbox.Store }

func newRig(t *testing.T, cfg hub.Config) *rig {
	t.Helper()
	return newRigVia(t, cfg, nil)
}

// newRigVia is newRig with the hub proposing through via(node) when via is
// not nil.
func newRigVia(t *testing.T, cfg hub.Config, via func(*cluster.Node) hub.Proposer) *rig {
	t.Helper()
	var st lateStore
	h := hub.New(cfg, &st)
	store, node := clustertest.Start(t, clustertest.WithApplied(h), clustertest.WithConfig(func(c *cluster.Config) {
		c.ExpireEvery = time.Hour
	}))
	st.Store = store
	if via != nil {
		h.Start(via(node))
	} else {
		h.Start(node)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		h.Close(ctx)
	})
	user, _ := clustertest.NewUser(t, node)
	_, token := clustertest.NewMailbox(t, node, user)
	return &rig{hub: h, node: node, store: store, user: user, token: token}
}

func (r *rig) publish(t *testing.T, n int) {
	t.Helper()
	items := make([]mailbox.PublishItem, n)
	for i := range items {
		items[i] = mailbox.PublishItem{ID: mailbox.NewID(), TokenHash: mailbox.Hash(r.token), Data: fmt.Sprint(i), TTL: 3600, Urgency: mailbox.UrgencyNormal}
	}
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	res, err := r.node.Publish(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res {
		if p.Err != nil {
			t.Fatal(p.Err)
		}
	}
}

// wakes counts a session's wake calls and lets a test wait for the next.
type wakes struct{ ch chan struct{} }

func newWakes() *wakes { return &wakes{ch: make(chan struct{}, 1)} }

func (w *wakes) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// takeUntil takes from s in batches of batch until it has handed out seq
// last, waiting for wakes in between, and returns every seq taken.
func takeUntil(t *testing.T, s *hub.Session, w *wakes, batch int, last mailbox.Seq) []mailbox.Seq {
	t.Helper()
	var got []mailbox.Seq
	timeout := time.After(clustertest.Timeout)
	for len(got) == 0 || got[len(got)-1] < last {
		msgs, err := s.Take(batch)
		if err != nil {
			t.Fatalf("take: %v", err)
		}
		for _, m := range msgs {
			got = append(got, m.Seq)
		}
		if len(msgs) == 0 {
			select {
			case <-w.ch:
			case <-timeout:
				t.Fatalf("took up to %v, want %d", got, last)
			}
		}
	}
	return got
}

func checkRun(t *testing.T, got []mailbox.Seq, from, to mailbox.Seq) {
	t.Helper()
	if len(got) != int(to-from) {
		t.Fatalf("got %d seqs %v, want %d..%d", len(got), got, from+1, to)
	}
	for i, s := range got {
		if s != from+mailbox.Seq(i)+1 {
			t.Fatalf("seq %d at %d: gap or duplicate in %v", s, i, got)
		}
	}
}

// A session that attaches with a backlog reads it from the store, while live
// messages arrive in a queue too small to hold them; then it goes live. It
// hands out every seq once, in order.
func TestCatchUpAndLiveWithoutGapOrDuplicate(t *testing.T) {
	r := newRig(t, hub.Config{QueueLen: 4})
	r.publish(t, 50)
	w := newWakes()
	s, err := r.hub.Attach(r.user, "laptop", 10, w.wake)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Take(3)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		r.publish(t, 5) // 4 are queued, the rest dropped: the store has them
	}
	got := []mailbox.Seq{first[0].Seq, first[1].Seq, first[2].Seq}
	got = append(got, takeUntil(t, s, w, 3, 100)...)
	r.publish(t, 3) // live now: straight from the queue
	got = append(got, takeUntil(t, s, w, 3, 103)...)
	checkRun(t, got, 10, 103)
	if err := s.Err(); err != nil {
		t.Fatalf("a session catching up must not end when its queue overflows: %v", err)
	}
}

func TestTooSlowSessionEnds(t *testing.T) {
	r := newRig(t, hub.Config{QueueLen: 2})
	w := newWakes()
	s, err := r.hub.Attach(r.user, "laptop", 0, w.wake)
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := s.Take(10); err != nil || len(msgs) != 0 {
		t.Fatalf("empty stream: %v %v", msgs, err)
	}
	other := newWakes()
	fast, _ := r.hub.Attach(r.user, "phone", 0, other.wake)
	fast.Take(10)
	r.publish(t, 2)
	checkRun(t, takeUntil(t, fast, other, 10, 2), 0, 2)
	r.publish(t, 1) // the third queued message: over QueueLen for the idle one
	<-s.Done()
	if !errors.Is(s.Err(), hub.ErrTooSlow) {
		t.Fatalf("err %v", s.Err())
	}
	if _, err := s.Take(1); !errors.Is(err, hub.ErrTooSlow) {
		t.Fatalf("take after the end: %v", err)
	}
	checkRun(t, takeUntil(t, fast, other, 10, 3), 2, 3)
	if st := r.hub.Stats(); st.TooSlow != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestAcksReachTheStoreInBatches(t *testing.T) {
	r := newRig(t, hub.Config{})
	r.publish(t, 5)
	w := newWakes()
	s, _ := r.hub.Attach(r.user, "laptop", 0, w.wake)
	takeUntil(t, s, w, 2, 5)
	if err := s.Ack(6); !errors.Is(err, hub.ErrAckBeyondSent) {
		t.Fatalf("ack beyond sent: %v", err)
	}
	for seq := mailbox.Seq(1); seq <= 5; seq++ {
		if err := s.Ack(seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Ack(3); !errors.Is(err, hub.ErrAckBackwards) {
		t.Fatalf("ack backwards: %v", err)
	}
	deadline := time.Now().Add(clustertest.Timeout)
	for {
		devs, err := r.store.Devices(r.user)
		if err != nil {
			t.Fatal(err)
		}
		// The acker counts a batch once its proposal returns, which may be
		// just after the store shows it.
		st := r.hub.Stats()
		if len(devs) == 1 && devs[0].Cursor == 5 && st.Acks > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices: %+v, stats %+v", devs, st)
		}
		time.Sleep(5 * time.Millisecond) // polling the store
	}
	// Five acks of one device: at most five items, however they were batched.
	if st := r.hub.Stats(); st.Acks > 5 || st.AckBatches > st.Acks {
		t.Fatalf("stats: %+v", st)
	}
}

func TestDeletesEndSessions(t *testing.T) {
	r := newRig(t, hub.Config{})
	w := newWakes()
	laptop, _ := r.hub.Attach(r.user, "laptop", 0, w.wake)
	phone, _ := r.hub.Attach(r.user, "phone", 0, w.wake)
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	// The device must exist in the store to be deleted.
	if _, err := r.node.Propose(ctx, &mailbox.Command{Kind: mailbox.KindTouchDevice, TouchDevice: &mailbox.TouchDevice{UserID: r.user, DeviceID: "laptop"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.node.Propose(ctx, &mailbox.Command{Kind: mailbox.KindDeleteDevice, DeleteDevice: &mailbox.DeleteDevice{UserID: r.user, DeviceID: "laptop"}}); err != nil {
		t.Fatal(err)
	}
	<-laptop.Done()
	if !errors.Is(laptop.Err(), hub.ErrDeviceDeleted) || phone.Err() != nil {
		t.Fatalf("laptop %v, phone %v", laptop.Err(), phone.Err())
	}
	if _, err := r.node.Propose(ctx, &mailbox.Command{Kind: mailbox.KindDeleteUser, DeleteUser: &mailbox.DeleteUser{UserID: r.user}}); err != nil {
		t.Fatal(err)
	}
	<-phone.Done()
	if !errors.Is(phone.Err(), hub.ErrUserDeleted) {
		t.Fatalf("phone %v", phone.Err())
	}
}

func TestCloseEndsSessionsAndRefusesNew(t *testing.T) {
	r := newRig(t, hub.Config{})
	w := newWakes()
	s, _ := r.hub.Attach(r.user, "laptop", 0, w.wake)
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	r.hub.Close(ctx)
	<-s.Done()
	if !errors.Is(s.Err(), hub.ErrClosed) {
		t.Fatalf("err %v", s.Err())
	}
	if _, err := r.hub.Attach(r.user, "phone", 0, w.wake); !errors.Is(err, hub.ErrClosed) {
		t.Fatalf("attach after close: %v", err)
	}
}

// ackRecorder passes commands on to the node and keeps the Acks ones.
type ackRecorder struct {
	*cluster.Node
	mu   sync.Mutex
	acks [][]mailbox.Ack
}

func (p *ackRecorder) Propose(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, error) {
	if cmd.Kind == mailbox.KindAcks {
		p.mu.Lock()
		p.acks = append(p.acks, slices.Clone(cmd.Acks.Items))
		p.mu.Unlock()
	}
	return p.Node.Propose(ctx, cmd)
}

// TestALongAckIsProposedInSteps: a device that acks thousands of messages
// at once (back from a long absence) moves its cursor in steps of at most
// 1024 seqs a command, so that no command outgrows a badger transaction,
// and ends where it acked, with the stream trimmed.
func TestALongAckIsProposedInSteps(t *testing.T) {
	rec := &ackRecorder{}
	r := newRigVia(t, hub.Config{}, func(n *cluster.Node) hub.Proposer { rec.Node = n; return rec })
	for range 6 {
		r.publish(t, 500)
	}
	w := newWakes()
	s, err := r.hub.Attach(r.user, "laptop", 0, w.wake)
	if err != nil {
		t.Fatal(err)
	}
	takeUntil(t, s, w, 1000, 3000)
	if err := s.Ack(3000); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(clustertest.Timeout)
	for {
		devs, err := r.store.Devices(r.user)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) == 1 && devs[0].Cursor == 3000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices: %+v", devs)
		}
		time.Sleep(5 * time.Millisecond) // polling the store
	}
	rec.mu.Lock()
	var steps []mailbox.Seq
	for _, batch := range rec.acks {
		for _, a := range batch {
			steps = append(steps, a.Seq)
		}
	}
	rec.mu.Unlock()
	if want := []mailbox.Seq{1024, 2048, 3000}; !slices.Equal(steps, want) {
		t.Fatalf("acks proposed: %v, want %v", steps, want)
	}
	if msgs, err := r.store.Messages(r.user, 0, 0, time.Now().UnixNano()); err != nil || len(msgs) != 0 {
		t.Fatalf("stream after the only device acked everything: %d messages, %v", len(msgs), err)
	}
}

// refuseFirst passes commands on to the node, except that it answers the
// first Acks command with a refusal of the whole command (as the state
// machine answers one too large to apply), and keeps every Acks batch.
type refuseFirst struct {
	ackRecorder
}

func (p *refuseFirst) Propose(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, error) {
	if cmd.Kind == mailbox.KindAcks {
		p.mu.Lock()
		first := len(p.acks) == 0
		p.acks = append(p.acks, slices.Clone(cmd.Acks.Items))
		p.mu.Unlock()
		if first {
			res := mailbox.Result{Err: mailbox.ErrChangeTooLarge}
			return res, res.Err
		}
	}
	return p.Node.Propose(ctx, cmd)
}

// TestARefusedAckBatchIsNotProposedAgain: a batch the state machine refuses
// whole would be refused again; the acker drops it (the devices ack again
// in their next hello) instead of proposing it forever, and goes on with
// the next acks.
func TestARefusedAckBatchIsNotProposedAgain(t *testing.T) {
	rec := &refuseFirst{}
	r := newRigVia(t, hub.Config{}, func(n *cluster.Node) hub.Proposer { rec.Node = n; return rec })
	r.publish(t, 1)
	w1, w2 := newWakes(), newWakes()
	a, _ := r.hub.Attach(r.user, "a", 0, w1.wake)
	b, _ := r.hub.Attach(r.user, "b", 0, w2.wake)
	takeUntil(t, a, w1, 10, 1)
	takeUntil(t, b, w2, 10, 1)
	if err := a.Ack(1); err != nil {
		t.Fatal(err)
	}
	waitBatches := func(n int) [][]mailbox.Ack {
		t.Helper()
		deadline := time.Now().Add(clustertest.Timeout)
		for {
			rec.mu.Lock()
			got := slices.Clone(rec.acks)
			rec.mu.Unlock()
			if len(got) >= n {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("ack batches: %v, want %d", got, n)
			}
			time.Sleep(5 * time.Millisecond) // polling the recorder
		}
	}
	waitBatches(1) // a's, refused
	if err := b.Ack(1); err != nil {
		t.Fatal(err)
	}
	got := waitBatches(2)
	want := []mailbox.Ack{{UserID: r.user, DeviceID: "b", Seq: 1}}
	if !slices.Equal(got[1], want) {
		t.Fatalf("second batch %v, want only b's ack %v (a's refused one must not come back)", got[1], want)
	}
}
