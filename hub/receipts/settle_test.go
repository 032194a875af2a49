package receipts_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/mailbox"
)

// gatedProposer is a node whose SettleReceipts proposals fail, as without a
// quorum, until opened; it records the size of every settle it lets through
// and whether the state machine refused it.
type gatedProposer struct {
	node *cluster.Node

	mu      sync.Mutex
	open    bool
	sizes   []uint64
	refused int
}

func (g *gatedProposer) Propose(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, error) {
	if cmd.Kind != mailbox.KindSettleReceipts {
		return g.node.Propose(ctx, cmd)
	}
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if !open {
		return mailbox.Result{}, errors.New("test: no quorum yet")
	}
	var n uint64
	for _, it := range cmd.SettleReceipts.Items {
		n += it.Through - it.From + 1
	}
	res, err := g.node.Propose(ctx, cmd)
	g.mu.Lock()
	g.sizes = append(g.sizes, n)
	if res.Err != nil {
		g.refused++
	}
	g.mu.Unlock()
	return res, err
}

func (g *gatedProposer) Leadership() (bool, <-chan struct{}) { return g.node.Leadership() }

// TestSettlerNeverJams: the endpoint always fails and every receipt is
// given up while no settle can commit, so the settler's queue holds
// thousands of given-up seqs of one mailbox, more than one transaction of
// this store holds (each rewrites its message's status). Once proposals
// commit again, the settler proposes commands of bounded size, proposes
// smaller ones after the state machine refuses one, and the outbox ends
// empty with every status marked failed.
func TestSettlerNeverJams(t *testing.T) {
	const n = 6000
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	var st lateStore
	cfg := fastConfig()
	cfg.BatchSize = 500
	cfg.RetryFor = 200 * time.Millisecond
	d := receipts.New(cfg, &st)
	// 8 MiB (the smallest badger opens with its default value threshold)
	// holds about 13,000 keys or 1.2 MiB a transaction: some 2,800 statuses.
	// 8 MiB is the smallest memtable badger opens with its defaults.
	store, node := clustertest.Start(t, clustertest.WithApplied(d), clustertest.WithMemTableSize(8<<20),
		clustertest.WithConfig(func(c *cluster.Config) { c.ExpireEvery = time.Hour }))
	st.Store = store
	g := &gatedProposer{node: node}
	d.Start(g, g)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("close dispatcher: %v", err)
		}
	})
	user, _ := clustertest.NewUser(t, node)
	r := &rig{t: t, node: node, store: store, d: d, user: user}
	mb := r.mailbox(rc.url())

	// Publish in pieces and deliver by acks in pieces: each command stays
	// well inside the store's limit.
	var ids []string
	for i := 0; i < n; i += 250 {
		data := make([]string, 250)
		for j := range data {
			data[j] = strconv.Itoa(i + j)
		}
		for _, p := range clustertest.Publish(t, node, mb.token, data...) {
			ids = append(ids, p.Status.ID)
		}
	}
	for seq := mailbox.Seq(250); seq <= mailbox.Seq(n); seq += 250 {
		if res := r.propose(&mailbox.Command{Kind: mailbox.KindAck, Ack: &mailbox.Ack{UserID: user, DeviceID: "laptop", Seq: seq}}); res.Err != nil {
			t.Fatalf("ack %d: %v", seq, res.Err)
		}
	}
	eventually(t, "every receipt given up", func() bool { return d.Stats().Failed >= n })
	if out, _ := store.Outbox(mb.id, 0, 0); len(out) != n {
		t.Fatalf("outbox before settling: %d entries, want %d", len(out), n)
	}

	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
	r.waitOutboxEmpty(mb)
	for _, id := range []string{ids[0], ids[n/2], ids[n-1]} {
		if st, err := store.Status(id); err != nil || st.Webhook != mailbox.WebhookFailed {
			t.Fatalf("status %s: %+v %v", id, st, err)
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	var total uint64
	for _, s := range g.sizes {
		if s > 4096 {
			t.Errorf("a settle of %d seqs: commands are bounded", s)
		}
		total += s
	}
	if g.refused == 0 {
		t.Errorf("no settle was refused: the test needs a store that refuses the largest command (sizes %v)", g.sizes)
	}
	if total < n {
		t.Errorf("settled %d seqs in %d commands, want at least %d", total, len(g.sizes), n)
	}
}

// TestRevokeOfAHugeMailboxSendsEveryReceipt: a mailbox with more pending
// messages than one transaction of this store holds is revoked (it was
// refused with change_too_large before); the leader's expiry loop drains
// it in steps it makes small enough for the store, and the endpoint gets
// one revoked receipt per message, in order.
func TestRevokeOfAHugeMailboxSendsEveryReceipt(t *testing.T) {
	const n = 5000
	rc := newReceiver(t, nil)
	cfg := fastConfig()
	cfg.BatchSize = 500
	r := newRig(t, cfg, clustertest.WithMemTableSize(8<<20),
		clustertest.WithConfig(func(c *cluster.Config) { c.ExpireEvery = 20 * time.Millisecond }))
	mb := r.mailbox(rc.url())
	rc.trust(mb)
	var ids []string
	for i := 0; i < n; i += 250 {
		data := make([]string, 250)
		for j := range data {
			data[j] = strconv.Itoa(i + j)
		}
		for _, p := range clustertest.Publish(t, r.node, mb.token, data...) {
			ids = append(ids, p.Status.ID)
		}
	}
	if res := r.propose(&mailbox.Command{Kind: mailbox.KindRevokeMailbox, RevokeMailbox: &mailbox.RevokeMailbox{TokenHash: mailbox.Hash(mb.token)}}); res.Err != nil {
		t.Fatalf("revoke: %v", res.Err)
	}
	got := rc.waitFor(mb, n)
	for _, id := range ids {
		if got[id].Status != "revoked" {
			t.Fatalf("receipt of %s: %+v", id, got[id])
		}
	}
	rc.checkInOrder(t, mb, n)
	r.waitOutboxEmpty(mb)
}
