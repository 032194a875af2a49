package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/hub/receipts/receiptstest"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
	"github.com/notifyhub/hub/transport/hubclient"
)

// fanout hands applied events to the hub and the receipt dispatcher, as
// hubd wires them.
type fanout []cluster.Applied

func (f fanout) Applied(events []mailbox.Event) {
	for _, a := range f {
		a.Applied(events)
	}
}

func (f fanout) Restored() {
	for _, a := range f {
		if r, ok := a.(interface{ Restored() }); ok {
			r.Restored()
		}
	}
}

// startReceiptHub is startHub with a receipt dispatcher that may call
// loopback http receivers.
// wrap, if not nil, stands between the transport and the dispatcher's feed.
func startReceiptHub(t *testing.T, rcfg receipts.Config, wrap func(transport.ReceiptFeed) transport.ReceiptFeed) (*testHub, *receipts.Dispatcher) {
	t.Helper()
	var st hubStore
	h := hub.New(hub.Config{}, &st)
	rcfg.URLs = receipts.URLPolicy{AllowHTTP: true, AllowPrivate: true}
	if rcfg.MinBackoff == 0 {
		rcfg.MinBackoff, rcfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	d := receipts.New(rcfg, &st)
	store, node := clustertest.Start(t, clustertest.WithConfig(func(c *cluster.Config) {
		c.ExpireEvery = time.Hour
	}), clustertest.WithApplied(fanout{h, d}))
	st.Store = store
	h.Start(node)
	d.Start(node, node)
	var feed transport.ReceiptFeed = d
	if wrap != nil {
		feed = wrap(d)
	}
	cfg := transport.Config{OpenRegistration: true, ReceiptURLs: rcfg.URLs, Receipts: feed}
	api := transport.New(cfg, store, node, h)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("close dispatcher: %v", err)
		}
		h.Close(ctx)
		if err := api.Close(ctx); err != nil {
			t.Errorf("close transport: %v", err)
		}
		srv.Close()
	})
	return &testHub{srv: srv, store: store, node: node, hub: h, api: api, cfg: cfg}, d
}

// appEndpoint is an app's webhook receiver built on hubclient.ReadWebhook.
type appEndpoint struct {
	srv *httptest.Server

	mu      sync.Mutex
	secrets map[string]string
	got     map[string]hubclient.Receipt // by receipt id: duplicates dropped
	refused int
	arrived chan struct{}
}

func newAppEndpoint(t *testing.T) *appEndpoint {
	e := &appEndpoint{secrets: map[string]string{}, got: map[string]hubclient.Receipt{}, arrived: make(chan struct{}, 1)}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs, err := hubclient.ReadWebhook(r, func(mb string) (string, bool) {
			e.mu.Lock()
			defer e.mu.Unlock()
			s, ok := e.secrets[mb]
			return s, ok
		})
		e.mu.Lock()
		if err != nil {
			e.refused++
		}
		for _, rc := range rs {
			e.got[rc.ID] = rc
		}
		e.mu.Unlock()
		select {
		case e.arrived <- struct{}{}:
		default:
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// receipts waits until the endpoint has n receipts of mailbox mb and
// returns them by message id.
func (e *appEndpoint) receipts(t *testing.T, mb string, n int) map[string]hubclient.Receipt {
	t.Helper()
	deadline := time.After(clustertest.Timeout) // failsafe only
	for {
		e.mu.Lock()
		out := map[string]hubclient.Receipt{}
		for _, rc := range e.got {
			if rc.MailboxID == mb {
				out[rc.MessageID] = rc
			}
		}
		e.mu.Unlock()
		if len(out) >= n {
			return out
		}
		select {
		case <-e.arrived:
		case <-deadline:
			t.Fatalf("mailbox %s: %d receipts, want %d", mb, len(out), n)
		}
	}
}

func (h *testHub) newWebhookMailbox(t *testing.T, secret, receiptURL string) newMailboxJSON {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"label": "app", "receipt_url": receiptURL})
	var mb newMailboxJSON
	decode(t, h.expect(t, http.StatusCreated, "POST", "/v1/mailboxes", jsonHeader(secret), string(body)), &mb)
	return mb
}

// TestReceiptsEndToEnd: an app publishes through hubclient to a mailbox
// with a receipt URL, revokes it, and gets one signed webhook receipt per
// message; the status API shows the receipt sent, and long-polling shows
// the same receipts.
func TestReceiptsEndToEnd(t *testing.T) {
	h, _ := startReceiptHub(t, receipts.Config{}, nil)
	app := newAppEndpoint(t)
	_, secret := h.register(t)
	mb := h.newWebhookMailbox(t, secret, app.srv.URL+"/receipts")
	app.mu.Lock()
	app.secrets[mb.MailboxID] = mb.ReceiptSecret
	app.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	c := hubclient.New(h.srv.URL)
	first, err := c.Publish(ctx, mb.Token, hubclient.Message{Data: "one", TTL: time.Hour, Topic: "score"})
	if err != nil {
		t.Fatal(err)
	}
	results, err := c.PublishBatch(ctx, []hubclient.BatchItem{
		{Token: mb.Token, Message: hubclient.Message{Data: "two", Topic: "score"}},
		{Token: mb.Token, Message: hubclient.Message{Data: "three"}},
		{Token: mailbox.NewToken(), Message: hubclient.Message{Data: "nobody"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var he *hubclient.Error
	if results[0].Err != nil || results[1].Err != nil || !errors.As(results[2].Err, &he) || he.Code != "token_unknown" {
		t.Fatalf("batch results: %+v", results)
	}
	if err := c.Revoke(ctx, mb.Token); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, mb.Token); err != nil {
		t.Fatalf("a second revoke: %v", err)
	}

	got := app.receipts(t, mb.MailboxID, 3)
	want := map[string]string{first.ID: "replaced", results[0].ID: "revoked", results[1].ID: "revoked"}
	for id, status := range want {
		if got[id].Status != status {
			t.Errorf("receipt of %s: %+v, want %s", id, got[id], status)
		}
	}
	if got[first.ID].ReplacedBy != results[0].ID {
		t.Errorf("replaced by %q, want %q", got[first.ID].ReplacedBy, results[0].ID)
	}
	if app.refused != 0 {
		t.Fatalf("%d webhooks failed verification", app.refused)
	}

	// Status: the receipt's id, and its webhook sent once the dispatcher
	// settled it.
	deadline := time.Now().Add(clustertest.Timeout)
	for {
		st, err := c.Status(ctx, mb.Token, first.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != "replaced" || st.Receipt == nil || st.Receipt.ID != got[first.ID].ID {
			t.Fatalf("status: %+v", st)
		}
		if st.Receipt.Webhook == "sent" {
			break
		}
		if st.Receipt.Webhook != "pending" || time.Now().After(deadline) {
			t.Fatalf("webhook state %q", st.Receipt.Webhook)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Long-polling reads the same receipts, in order, with a cursor.
	rs, cursor, err := c.Receipts(ctx, mb.Token, 0, 0)
	if err != nil || len(rs) != 3 || cursor != 3 {
		t.Fatalf("receipts: %+v cursor %d: %v", rs, cursor, err)
	}
	for i, rc := range rs {
		if rc.Seq != uint64(i+1) || got[rc.MessageID].ID != rc.ID {
			t.Fatalf("polled receipt %d: %+v, webhook had %+v", i, rc, got[rc.MessageID])
		}
	}
	if rs, next, err := c.Receipts(ctx, mb.Token, cursor, 0); err != nil || len(rs) != 0 || next != cursor {
		t.Fatalf("after the last: %+v %d %v", rs, next, err)
	}
}

// TestReceiptsLongPollWakes: a held GET /v1/receipts answers when the
// mailbox's next receipt is made, with that receipt.
func TestReceiptsLongPollWakes(t *testing.T) {
	waiting := make(chan string, 1)
	h, _ := startReceiptHub(t, receipts.Config{}, func(f transport.ReceiptFeed) transport.ReceiptFeed {
		return waitingFeed{f, waiting}
	})
	a := h.newAccount(t) // a mailbox without a receipt URL: polling only
	c := hubclient.New(h.srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()

	type answer struct {
		rs     []hubclient.Receipt
		cursor uint64
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		rs, cur, err := c.Receipts(ctx, a.token, 0, 60*time.Second)
		done <- answer{rs, cur, err}
	}()
	// The poll registers for wakeups, finds nothing, and waits.
	select {
	case mb := <-waiting:
		if mb != a.mailboxID {
			t.Fatalf("waiting on mailbox %s, want %s", mb, a.mailboxID)
		}
	case ans := <-done:
		t.Fatalf("answered with no receipt: %+v", ans)
	case <-ctx.Done():
		t.Fatal("the poll never waited")
	}
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/push/"+a.token, nil, "")
	ans := <-done
	if ans.err != nil || len(ans.rs) != 1 || ans.rs[0].MessageID != a.messageID || ans.rs[0].Status != "revoked" || ans.cursor != 1 {
		t.Fatalf("long-poll: %+v", ans)
	}
}

// TestReceiptsLongPollEndsOnShutdown: BeginClose (registered with
// http.Server.RegisterOnShutdown) answers a held poll at once, so that
// shutdown does not wait out its wait.
func TestReceiptsLongPollEndsOnShutdown(t *testing.T) {
	waiting := make(chan string, 1)
	h, _ := startReceiptHub(t, receipts.Config{}, func(f transport.ReceiptFeed) transport.ReceiptFeed {
		return waitingFeed{f, waiting}
	})
	a := h.newAccount(t)
	done := make(chan response, 1)
	go func() { done <- h.do(t, "GET", "/v1/receipts?wait=60", bearer(a.token), "") }()
	select {
	case <-waiting:
	case <-time.After(clustertest.Timeout): // failsafe only
		t.Fatal("the poll never waited")
	}
	h.api.BeginClose()
	r := <-done
	if r.status != http.StatusOK || string(r.body) != `{"receipts":[],"cursor":0}` {
		t.Fatalf("held poll at shutdown: %v", r)
	}
}

// waitingFeed tells the test when a poll starts to wait.
type waitingFeed struct {
	transport.ReceiptFeed
	waiting chan string
}

func (f waitingFeed) Changed(mb string) (<-chan struct{}, func()) {
	ch, release := f.ReceiptFeed.Changed(mb)
	select {
	case f.waiting <- mb:
	default:
	}
	return ch, release
}

// TestReceiptsAreTheMailboxsOwn: one mailbox's token never reads another's
// receipts or statuses.
func TestReceiptsAreTheMailboxsOwn(t *testing.T) {
	h, _ := startReceiptHub(t, receipts.Config{}, nil)
	a, b := h.newAccount(t), h.newAccount(t)
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/push/"+a.token, nil, "")
	c := hubclient.New(h.srv.URL)
	ctx := context.Background()
	if rs, _, err := c.Receipts(ctx, b.token, 0, 0); err != nil || len(rs) != 0 {
		t.Fatalf("b's receipts: %+v %v", rs, err)
	}
	_, err := c.Status(ctx, b.token, a.messageID)
	var he *hubclient.Error
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Fatalf("b reading a's status: %v", err)
	}
	if rs, _, err := c.Receipts(ctx, a.token, 0, 0); err != nil || len(rs) != 1 {
		t.Fatalf("a's receipts with its revoked token: %+v %v", rs, err)
	}
}

// TestHubclientRetriesAcrossUnavailable: between the app and the hub, a
// proxy answers 503 twice, then forwards a publish but loses the answer
// (as when a leader fails after committing). The client retries with the
// same Idempotency-Key: one message is stored, and the client gets it.
func TestHubclientRetriesAcrossUnavailable(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	target, _ := url.Parse(h.srv.URL)
	fwd := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	n := 0
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		switch k {
		case 1, 2:
			w.Header().Set("Retry-After", "0")
			http.Error(w, `{"error":{"code":"not_leader","message":"no leader"}}`, http.StatusServiceUnavailable)
		case 3:
			rec := httptest.NewRecorder()
			fwd.ServeHTTP(rec, r) // committed...
			if rec.Code != http.StatusCreated {
				t.Errorf("forwarded publish: %d %s", rec.Code, rec.Body)
			}
			conn, _, err := http.NewResponseController(w).Hijack() // ...and the answer is lost
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		default:
			fwd.ServeHTTP(w, r)
		}
	}))
	defer proxy.Close()

	c := hubclient.New(proxy.URL)
	c.MinBackoff, c.MaxBackoff = time.Millisecond, 10*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	p, err := c.Publish(ctx, a.token, hubclient.Message{Data: "once", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	requests := n
	mu.Unlock()
	if !p.Replayed || requests != 4 {
		t.Fatalf("published %+v after %d requests; want the replayed first message after 4", p, requests)
	}
	msgs, err := h.store.Messages(a.userID, 0, 0, time.Now().UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, m := range msgs {
		if m.Data == "once" {
			count++
			if m.ID != p.ID {
				t.Fatalf("stored %s, client got %s", m.ID, p.ID)
			}
		}
	}
	if count != 1 {
		t.Fatalf("%d copies stored", count)
	}

	// A refusal is not retried.
	_, err = c.Publish(ctx, mailbox.NewToken(), hubclient.Message{Data: "x"})
	var he *hubclient.Error
	mu.Lock()
	requests = n
	mu.Unlock()
	if !errors.As(err, &he) || he.Code != "token_unknown" || requests != 5 {
		t.Fatalf("unknown token: %v after %d requests", err, requests)
	}
}

func TestBadInputReceiptURL(t *testing.T) {
	t.Parallel()
	h := startHub(t, transport.Config{OpenRegistration: true, ReceiptURLs: receipts.URLPolicy{Resolver: receiptstest.Resolver(t)}})
	a := h.newAccount(t)
	const path = "/v1/mailboxes"
	j := jsonHeader(a.secret)
	body := func(u string) string {
		b, _ := json.Marshal(map[string]string{"label": "x", "receipt_url": u})
		return string(b)
	}
	runBadInputs(t, h, []string{a.userID}, []badInput{
		{"http", "POST", path, j, body("http://93.184.215.14/hook"), 400, "bad_receipt_url", false},
		{"malformed", "POST", path, j, body("https://[::1/hook"), 400, "bad_receipt_url", false},
		{"unresolvable", "POST", path, j, body("https://" + receiptstest.NXDomain + ".example/hook"), 400, "bad_receipt_url", false},
		{"no address", "POST", path, j, body("https://nothing.example/hook"), 400, "bad_receipt_url", false},
		// A failing DNS server is no verdict on the URL: retry.
		{"dns failure", "POST", path, j, body("https://" + receiptstest.ServFail + ".example/hook"), 503, "receipt_url_unresolved", false},
		{"loopback", "POST", path, j, body("https://127.0.0.1/hook"), 400, "receipt_url_blocked", false},
		{"localhost", "POST", path, j, body("https://localhost:8443/hook"), 400, "receipt_url_blocked", false},
		{"private", "POST", path, j, body("https://10.0.0.7/hook"), 400, "receipt_url_blocked", false},
		{"link-local", "POST", path, j, body("https://169.254.169.254/latest/meta-data"), 400, "receipt_url_blocked", false},
		{"v6 loopback", "POST", path, j, body("https://[::1]:443/hook"), 400, "receipt_url_blocked", false},
	})
	if r := h.do(t, "POST", path, j, body("https://"+receiptstest.ServFail+".example/hook")); r.header.Get("Retry-After") == "" {
		t.Errorf("a DNS failure without Retry-After: %v", r)
	}
	// A public https address is accepted.
	h.newWebhookMailbox(t, a.secret, "https://93.184.215.14/hook")
}

func TestBadInputReceipts(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	p := "/v1/receipts"
	tok := bearer(f.a.token)
	runBadInputs(t, f.h, f.users, []badInput{
		{"no auth", "GET", p, nil, "", 401, "unauthorized", false},
		{"malformed token", "GET", p, bearer("short"), "", 401, "unauthorized", false},
		{"unknown token", "GET", p, bearer(mailbox.NewToken()), "", 401, "unauthorized", false},
		{"user secret", "GET", p, bearer(f.a.secret), "", 401, "unauthorized", false},
		{"negative cursor", "GET", p + "?cursor=-1", tok, "", 400, "bad_cursor", false},
		{"word cursor", "GET", p + "?cursor=abc", tok, "", 400, "bad_cursor", false},
		{"empty cursor", "GET", p + "?cursor=", tok, "", 400, "bad_cursor", false},
		{"huge cursor", "GET", p + "?cursor=" + "99999999999999999999999", tok, "", 400, "bad_cursor", false},
		{"negative wait", "GET", p + "?wait=-1", tok, "", 400, "bad_wait", false},
		{"long wait", "GET", p + "?wait=" + strconv.Itoa(3600), tok, "", 400, "bad_wait", false},
		{"fraction wait", "GET", p + "?wait=1.5", tok, "", 400, "bad_wait", false},
		{"zero limit", "GET", p + "?limit=0", tok, "", 400, "bad_request", false},
		{"huge limit", "GET", p + "?limit=100000", tok, "", 400, "bad_request", false},
		{"post", "POST", p, tok, "", 405, "method_not_allowed", false},
	})
}
