package receipts_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/mailbox"
)

// rig is a real node (raft over loopback, badger in a temp dir) whose
// applied events go to a dispatcher.
type rig struct {
	t     *testing.T
	node  *cluster.Node
	store *mailbox.Store
	d     *receipts.Dispatcher
	user  string
}

type lateStore struct{ *mailbox.Store }

// fastConfig retries quickly and lets the dispatcher call loopback http
// receivers.
func fastConfig() receipts.Config {
	return receipts.Config{
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Timeout:    clustertest.Timeout,
		URLs:       receipts.URLPolicy{AllowHTTP: true, AllowPrivate: true},
	}
}

func newRig(t *testing.T, cfg receipts.Config, opts ...clustertest.Option) *rig {
	t.Helper()
	var st lateStore
	d := receipts.New(cfg, &st)
	opts = append([]clustertest.Option{clustertest.WithApplied(d), clustertest.WithConfig(func(c *cluster.Config) {
		c.ExpireEvery = time.Hour
	})}, opts...)
	store, node := clustertest.Start(t, opts...)
	st.Store = store
	d.Start(node, node)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("close dispatcher: %v", err)
		}
	})
	user, _ := clustertest.NewUser(t, node)
	return &rig{t: t, node: node, store: store, d: d, user: user}
}

func (r *rig) propose(cmd *mailbox.Command) mailbox.Result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	res, err := r.node.Propose(ctx, cmd)
	if err != nil {
		r.t.Fatalf("propose %v: %v", cmd.Kind, err)
	}
	return res
}

// mailbox is a mailbox with a receipt URL.
type testMailbox struct {
	id, token, secret string
}

func (r *rig) mailbox(url string) testMailbox {
	r.t.Helper()
	mb := testMailbox{id: mailbox.NewID(), token: mailbox.NewToken(), secret: mailbox.NewToken()}
	r.propose(&mailbox.Command{Kind: mailbox.KindCreateMailbox, CreateMailbox: &mailbox.CreateMailbox{
		MailboxID: mb.id, UserID: r.user, Label: "app", TokenHash: mailbox.Hash(mb.token),
		ReceiptURL: url, ReceiptSecret: mb.secret,
	}})
	return mb
}

// publish posts n messages to mb and returns their ids.
func (r *rig) publish(mb testMailbox, n int) []string {
	r.t.Helper()
	data := make([]string, n)
	for i := range data {
		data[i] = strconv.Itoa(i)
	}
	var ids []string
	for _, p := range clustertest.Publish(r.t, r.node, mb.token, data...) {
		ids = append(ids, p.Status.ID)
	}
	return ids
}

func (r *rig) revoke(mb testMailbox) {
	r.t.Helper()
	r.propose(&mailbox.Command{Kind: mailbox.KindRevokeMailbox, RevokeMailbox: &mailbox.RevokeMailbox{TokenHash: mailbox.Hash(mb.token)}})
}

// waitOutboxEmpty waits until every receipt of mb was settled.
func (r *rig) waitOutboxEmpty(mb testMailbox) {
	r.t.Helper()
	eventually(r.t, "outbox of "+mb.id+" empty", func() bool {
		out, err := r.store.Outbox(mb.id, 0, 1)
		return err == nil && len(out) == 0
	})
}

// eventually polls cond until it holds, failing t after clustertest.Timeout
// (a failsafe, not a timing assertion).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(clustertest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receiver is an app's webhook endpoint: it verifies every request's
// signature and records the receipts it accepted.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	// fail decides, for the n-th request (from 1), whether to refuse it; it
	// may also block. nil accepts everything.
	fail func(n int, w http.ResponseWriter, r *http.Request) bool

	mu       sync.Mutex
	secrets  map[string]string // mailbox id -> secret
	requests int
	got      map[string]receipts.JSON // accepted, by receipt id
	seqs     map[string][]uint64      // accepted seqs per mailbox, in arrival order
	badSigs  int
	arrived  chan struct{}
}

func newReceiver(t *testing.T, fail func(n int, w http.ResponseWriter, r *http.Request) bool) *receiver {
	rc := &receiver{t: t, fail: fail, secrets: map[string]string{}, got: map[string]receipts.JSON{},
		seqs: map[string][]uint64{}, arrived: make(chan struct{}, 1)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hooks/receipts" }

func (rc *receiver) trust(mb testMailbox) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets[mb.id] = mb.secret
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	defer func() {
		select {
		case rc.arrived <- struct{}{}:
		default:
		}
	}()
	// Read the body first: only then does net/http watch the connection
	// and cancel r.Context() when the hub hangs up.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.requests++
	n := rc.requests
	rc.mu.Unlock()
	if rc.fail != nil && rc.fail(n, w, r) {
		return
	}
	var b receipts.Body
	if err := json.Unmarshal(body, &b); err != nil || len(b.Receipts) == 0 {
		rc.t.Errorf("webhook body %q: %v", body, err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	mb := b.Receipts[0].MailboxID
	if !verify(rc.secrets[mb], r.Header.Get("Hub-Signature"), body) {
		rc.badSigs++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	for _, rj := range b.Receipts {
		if rj.MailboxID != mb {
			rc.t.Errorf("one batch, two mailboxes: %s and %s", mb, rj.MailboxID)
		}
		if _, dup := rc.got[rj.ID]; !dup {
			rc.seqs[mb] = append(rc.seqs[mb], rj.Seq)
		}
		rc.got[rj.ID] = rj
	}
	w.WriteHeader(http.StatusNoContent)
}

// verify checks a Hub-Signature the way docs/receipts.md tells apps to.
func verify(secret, header string, body []byte) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%s.", ts)
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(want), []byte(sig))
}

// byMessage returns the accepted receipts of mailbox mb by message id.
func (rc *receiver) byMessage(mb string) map[string]receipts.JSON {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]receipts.JSON{}
	for _, r := range rc.got {
		if r.MailboxID == mb {
			if prev, ok := out[r.MessageID]; ok && prev.ID != r.ID {
				rc.t.Errorf("message %s has two receipts: %s and %s", r.MessageID, prev.ID, r.ID)
			}
			out[r.MessageID] = r
		}
	}
	return out
}

// waitFor waits until mailbox mb has n receipts accepted.
func (rc *receiver) waitFor(mb testMailbox, n int) map[string]receipts.JSON {
	rc.t.Helper()
	deadline := time.After(clustertest.Timeout) // failsafe only
	for {
		if got := rc.byMessage(mb.id); len(got) >= n {
			return got
		}
		select {
		case <-rc.arrived:
		case <-deadline:
			rc.t.Fatalf("mailbox %s: %d receipts after %v, want %d", mb.id, len(rc.byMessage(mb.id)), clustertest.Timeout, n)
		}
	}
}

// checkInOrder checks that the mailbox's receipts were accepted in seq
// order, each once, from 1 to n.
func (rc *receiver) checkInOrder(t *testing.T, mb testMailbox, n int) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	seqs := rc.seqs[mb.id]
	if len(seqs) != n {
		t.Fatalf("mailbox %s: %d distinct receipts, want %d", mb.id, len(seqs), n)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("mailbox %s: receipts out of order: %v", mb.id, seqs)
		}
	}
}

// TestEveryReceiptArrivesSigned: the endpoint fails its first requests;
// every receipt still arrives, signed, in order, once per message after
// dropping duplicates, and the outbox ends empty.
func TestEveryReceiptArrivesSigned(t *testing.T) {
	const failFirst, n = 4, 250
	rc := newReceiver(t, func(k int, w http.ResponseWriter, r *http.Request) bool {
		if k <= failFirst {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return true
		}
		return false
	})
	r := newRig(t, fastConfig())
	mb := r.mailbox(rc.url())
	rc.trust(mb)
	ids := r.publish(mb, n)
	r.revoke(mb)

	got := rc.waitFor(mb, n)
	for _, id := range ids {
		rj, ok := got[id]
		if !ok || rj.Status != "revoked" || rj.MailboxID != mb.id || rj.ID == "" || rj.At == "" {
			t.Fatalf("receipt of %s: %+v", id, rj)
		}
	}
	rc.checkInOrder(t, mb, n)
	r.waitOutboxEmpty(mb)
	if rc.badSigs != 0 {
		t.Fatalf("%d requests with a bad signature", rc.badSigs)
	}
	st, err := r.store.Status(ids[0])
	if err != nil || st.Webhook != mailbox.WebhookSent {
		t.Fatalf("status after delivery: %+v %v", st, err)
	}
	if s := r.d.Stats(); s.Sent < n || s.Errors < failFirst || !s.Leading {
		t.Fatalf("stats: %+v", s)
	}
}

// TestEachFate: a delivered, an expired, a replaced and a revoked message
// each produce one receipt with its status.
func TestEachFate(t *testing.T) {
	rc := newReceiver(t, nil)
	r := newRig(t, fastConfig(), clustertest.WithConfig(func(c *cluster.Config) { c.ExpireEvery = 20 * time.Millisecond }))
	mb := r.mailbox(rc.url())
	rc.trust(mb)

	pub := func(ttl int64, topic string) mailbox.PublishedItem {
		it := clustertest.Item(mb.token, "x")
		it.TTL, it.Topic = ttl, topic
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		res, err := r.node.Publish(ctx, []mailbox.PublishItem{it})
		if err != nil || res[0].Err != nil {
			t.Fatalf("publish: %v %v", err, res)
		}
		return res[0]
	}
	delivered := pub(3600, "")
	r.propose(&mailbox.Command{Kind: mailbox.KindAck, Ack: &mailbox.Ack{UserID: r.user, DeviceID: "laptop", Seq: delivered.Status.Seq}})
	expired := pub(1, "")
	replaced := pub(3600, "score")
	replacer := pub(3600, "score")
	eventually(t, "expiry", func() bool {
		st, err := r.store.Status(expired.Status.ID)
		return err == nil && st.State == mailbox.StateExpired
	})
	r.revoke(mb)

	got := rc.waitFor(mb, 4)
	want := map[string]string{
		delivered.Status.ID: "delivered",
		expired.Status.ID:   "expired",
		replaced.Status.ID:  "replaced",
		replacer.Status.ID:  "revoked",
	}
	for id, status := range want {
		if got[id].Status != status {
			t.Errorf("message %s: receipt %+v, want %s", id, got[id], status)
		}
	}
	if got[delivered.Status.ID].DeviceID != "laptop" || got[replaced.Status.ID].ReplacedBy != replacer.Status.ID {
		t.Errorf("delivered %+v, replaced %+v", got[delivered.Status.ID], got[replaced.Status.ID])
	}
	rc.checkInOrder(t, mb, 4)
}

// TestSlowEndpointDoesNotDelayAnother: endpoint A holds every request it
// gets; B's receipts, made after A's, all arrive while A still holds.
func TestSlowEndpointDoesNotDelayAnother(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	slow := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-release:
			return false
		case <-r.Context().Done():
			return true
		}
	})
	fast := newReceiver(t, nil)
	cfg := fastConfig()
	cfg.PerEndpoint, cfg.MaxInFlight = 2, 3
	r := newRig(t, cfg)

	var slowBoxes []testMailbox
	for range 3 { // more mailboxes than PerEndpoint: A could take every worker it has
		mb := r.mailbox(slow.url())
		slow.trust(mb)
		r.publish(mb, 5)
		r.revoke(mb)
		slowBoxes = append(slowBoxes, mb)
	}
	eventually(t, "the slow endpoint holding requests", func() bool {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		return slow.requests >= cfg.PerEndpoint
	})
	fastBox := r.mailbox(fast.url())
	fast.trust(fastBox)
	r.publish(fastBox, 20)
	r.revoke(fastBox)
	fast.waitFor(fastBox, 20)

	select {
	case <-release:
		t.Fatal("released too early")
	default:
	}
	slow.mu.Lock()
	accepted, requests := len(slow.got), slow.requests
	slow.mu.Unlock()
	if accepted != 0 || requests > cfg.PerEndpoint {
		t.Fatalf("slow endpoint: %d accepted, %d requests while held (at most %d in flight)", accepted, requests, cfg.PerEndpoint)
	}
	unblock()
	for _, mb := range slowBoxes {
		slow.waitFor(mb, 5)
		slow.checkInOrder(t, mb, 5)
	}
	fast.checkInOrder(t, fastBox, 20)
}

// TestTimeoutsAndHugeBodies: a request that outlives Timeout is retried; a
// 2xx with an endless body counts as accepted (the body is cut off); a 500
// with a huge body is retried.
func TestTimeoutsAndHugeBodies(t *testing.T) {
	chunk := strings.Repeat("x", 32<<10)
	endless := func(w http.ResponseWriter, status int) {
		w.WriteHeader(status)
		for i := 0; i < 10_000; i++ { // 320 MiB at most; the hub hangs up long before
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	}
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) bool {
		switch n {
		case 1: // hangs past the dispatcher's timeout
			<-r.Context().Done()
			return true
		case 2:
			endless(w, http.StatusInternalServerError)
			return true
		}
		return false
	})
	big := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) bool {
		endless(w, http.StatusOK) // accepted, and then far too much
		return true
	})
	cfg := fastConfig()
	cfg.Timeout = 300 * time.Millisecond
	r := newRig(t, cfg)
	mb := r.mailbox(rc.url())
	rc.trust(mb)
	ids := r.publish(mb, 3)
	r.revoke(mb)
	rc.waitFor(mb, 3)
	rc.checkInOrder(t, mb, 3)

	bigBox := r.mailbox(big.url())
	bigIDs := r.publish(bigBox, 3)
	r.revoke(bigBox)
	r.waitOutboxEmpty(bigBox)
	if st, err := r.store.Status(bigIDs[2]); err != nil || st.Webhook != mailbox.WebhookSent {
		t.Fatalf("status after a 2xx with a huge body: %+v %v", st, err)
	}
	if st, _ := r.store.Status(ids[0]); st.Webhook != mailbox.WebhookSent {
		t.Fatalf("status after retries: %+v", st)
	}
}

// TestGivesUpAfterRetryFor: an endpoint that always fails gets its receipts
// marked failed once they are older than RetryFor, and they leave the
// outbox; the log keeps them for long-polling.
func TestGivesUpAfterRetryFor(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	cfg := fastConfig()
	cfg.RetryFor = 300 * time.Millisecond
	r := newRig(t, cfg)
	mb := r.mailbox(rc.url())
	ids := r.publish(mb, 3)
	r.revoke(mb)
	r.waitOutboxEmpty(mb)
	for _, id := range ids {
		st, err := r.store.Status(id)
		if err != nil || st.Webhook != mailbox.WebhookFailed || st.WebhookFailedAt == 0 {
			t.Fatalf("status of a given-up receipt: %+v %v", st, err)
		}
	}
	if s := r.d.Stats(); s.Failed != 3 || s.Sent != 0 {
		t.Fatalf("stats: %+v", s)
	}
	if rs, _ := r.store.Receipts(mb.id, 0, 0); len(rs) != 3 {
		t.Fatalf("receipt log after giving up: %d", len(rs))
	}
}

// TestDialTimeCheck: a receipt URL that reaches a loopback address is
// refused when the dispatcher dials, whatever was checked when the mailbox
// was made (here nothing: the command went straight to raft).
func TestDialTimeCheck(t *testing.T) {
	rc := newReceiver(t, nil)
	cfg := fastConfig()
	cfg.URLs.AllowPrivate = false
	cfg.RetryFor = 300 * time.Millisecond
	r := newRig(t, cfg)
	mb := r.mailbox(rc.url()) // http://127.0.0.1:port/...
	ids := r.publish(mb, 2)
	r.revoke(mb)
	r.waitOutboxEmpty(mb)
	rc.mu.Lock()
	requests := rc.requests
	rc.mu.Unlock()
	if requests != 0 {
		t.Fatalf("the blocked endpoint got %d requests", requests)
	}
	if st, _ := r.store.Status(ids[0]); st.Webhook != mailbox.WebhookFailed {
		t.Fatalf("status: %+v", st)
	}
	if s := r.d.Stats(); s.Attempts == 0 || s.Errors == 0 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestNewDispatcherSendsWhatWasNotSettled: a dispatcher stops (as on a lost
// leadership) while its endpoint holds a request; the next one sends every
// receipt, and the app, dropping duplicates by id, has each once.
func TestNewDispatcherSendsWhatWasNotSettled(t *testing.T) {
	holding := make(chan struct{})
	var once sync.Once
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 2 {
			once.Do(func() { close(holding) })
			<-r.Context().Done() // held until the dispatcher hangs up
			return true
		}
		return false
	})
	cfg := fastConfig()
	cfg.BatchSize = 10
	r := newRig(t, cfg)
	mb := r.mailbox(rc.url())
	rc.trust(mb)
	ids := r.publish(mb, 50)
	r.revoke(mb)
	<-holding
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	if err := r.d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if out, _ := r.store.Outbox(mb.id, 0, 0); len(out) <= 10 {
		t.Fatalf("outbox after the first dispatcher: %d entries; the test needs more", len(out))
	}

	next := receipts.New(cfg, r.store)
	next.Start(r.node, r.node)
	t.Cleanup(func() { next.Close(context.Background()) })
	got := rc.waitFor(mb, len(ids))
	for _, id := range ids {
		if got[id].Status != "revoked" {
			t.Fatalf("receipt of %s: %+v", id, got[id])
		}
	}
	rc.checkInOrder(t, mb, len(ids))
	r.waitOutboxEmpty(mb)
}

// TestLeadershipMovesDuringDispatch: three nodes, each with a dispatcher.
// The leader's dispatcher is sending (one batch taken, the next held by
// the endpoint) when the leader stops. The new leader's dispatcher sends
// the rest: every receipt arrives, in order, once per message after
// dropping duplicates by id.
func TestLeadershipMovesDuringDispatch(t *testing.T) {
	const n = 250
	holding := make(chan struct{})
	var holdOnce sync.Once
	var mu sync.Mutex
	hold := true
	rc := newReceiver(t, func(k int, w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		h := hold && k > 1
		mu.Unlock()
		if h {
			holdOnce.Do(func() { close(holding) })
			<-r.Context().Done() // held until the old leader's dispatcher hangs up
			return true
		}
		return false
	})
	var dispatchers sync.Map // member index -> *receipts.Dispatcher, the latest
	c := clustertest.StartCluster(t, 3, clustertest.WithConfig(func(c *cluster.Config) { c.ExpireEvery = time.Hour }),
		clustertest.WithWiring(func(i int, store *mailbox.Store) (cluster.Applied, func(*clustertest.Member) http.Handler) {
			d := receipts.New(fastConfig(), store)
			dispatchers.Store(i, d)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
				defer cancel()
				d.Close(ctx)
			})
			return d, func(m *clustertest.Member) http.Handler {
				d.Start(m.Node, m.Node)
				return nil
			}
		}))
	leader := c.Leader(t)
	user, _ := clustertest.NewUser(t, leader.Node)
	r := &rig{t: t, node: leader.Node, store: leader.Store, user: user}
	mb := r.mailbox(rc.url())
	rc.trust(mb)
	ids := r.publish(mb, n)
	r.revoke(mb)

	select {
	case <-holding:
	case <-time.After(clustertest.Timeout): // failsafe only
		t.Fatal("the leader's dispatcher sent nothing")
	}
	// Requests from now on are taken; the one held stays held until the
	// old leader's dispatcher hangs up, as its node stops.
	mu.Lock()
	hold = false
	mu.Unlock()
	c.Stop(t, leader.Index)
	next := c.Leader(t)
	if next.Index == leader.Index {
		t.Fatal("leadership did not move")
	}
	got := rc.waitFor(mb, n)
	for _, id := range ids {
		if got[id].Status != "revoked" {
			t.Fatalf("receipt of %s: %+v", id, got[id])
		}
	}
	rc.checkInOrder(t, mb, n)
	nd, _ := dispatchers.Load(next.Index)
	if s := nd.(*receipts.Dispatcher).Stats(); !s.Leading || s.Sent == 0 {
		t.Fatalf("new leader's dispatcher: %+v", s)
	}
	(&rig{t: t, store: next.Store}).waitOutboxEmpty(mb)
}

// TestManyHangingEndpoints: more hanging endpoints than there are slots.
// Once an endpoint's POST has failed (timed out), it has one POST in
// flight at a time, and failing endpoints hold at most half of the slots:
// a healthy endpoint's receipts all arrive while the others still hang.
func TestManyHangingEndpoints(t *testing.T) {
	const hanging = 6
	cfg := fastConfig()
	cfg.PerEndpoint, cfg.MaxInFlight = 2, 4
	cfg.Timeout = 200 * time.Millisecond
	cfg.BatchSize = 5

	// Each hanging endpoint counts, among the requests that arrived after
	// the hub first gave up on one of its requests, the most in flight at
	// once.
	type hangState struct {
		mu         sync.Mutex
		failedOnce bool
		after      int // in flight, of those that arrived after the first failure
		maxAfter   int
	}
	var states []*hangState
	r := newRig(t, cfg)
	for range hanging {
		hs := &hangState{}
		states = append(states, hs)
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, req *http.Request) bool {
			hs.mu.Lock()
			counted := hs.failedOnce
			if counted {
				hs.after++
				hs.maxAfter = max(hs.maxAfter, hs.after)
			}
			hs.mu.Unlock()
			<-req.Context().Done() // hangs until the hub hangs up
			hs.mu.Lock()
			hs.failedOnce = true
			if counted {
				hs.after--
			}
			hs.mu.Unlock()
			return true
		})
		for range 2 { // as many mailboxes as PerEndpoint: both workers busy
			mb := r.mailbox(rc.url())
			r.publish(mb, 3)
			r.revoke(mb)
		}
	}
	healthy := newReceiver(t, nil)
	hb := r.mailbox(healthy.url())
	healthy.trust(hb)
	r.publish(hb, 40) // eight POSTs, one after another
	r.revoke(hb)
	healthy.waitFor(hb, 40)
	healthy.checkInOrder(t, hb, 40)

	// Let the breakers be seen at work for a while longer: every hanging
	// endpoint has failed at least once, and probes went on.
	eventually(t, "every hanging endpoint failing", func() bool {
		for _, hs := range states {
			hs.mu.Lock()
			f := hs.failedOnce
			hs.mu.Unlock()
			if !f {
				return false
			}
		}
		return true
	})
	before := r.d.Stats().Attempts
	eventually(t, "more probes", func() bool { return r.d.Stats().Attempts >= before+2*hanging })
	for i, hs := range states {
		hs.mu.Lock()
		m := hs.maxAfter
		hs.mu.Unlock()
		if m > 1 {
			t.Errorf("hanging endpoint %d: %d requests in flight at once after failing; a failing endpoint has one", i, m)
		}
	}
}
