package transport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

// TestWalkthrough is the foundation's story: register, make a mailbox,
// publish, read the status, revoke, and find the token dead.
func TestWalkthrough(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())

	if r := h.expect(t, http.StatusOK, "GET", "/healthz", nil, ""); string(r.body) != `{"status":"ok"}` {
		t.Errorf("healthz: %s", r.body)
	}
	if r := h.expect(t, http.StatusOK, "GET", "/readyz", nil, ""); string(r.body) != `{"status":"ready"}` {
		t.Errorf("readyz: %s", r.body)
	}

	userID, secret := h.register(t)
	if !mailbox.ValidID(userID) || mailbox.SecretUser(secret) != userID {
		t.Fatalf("user %q with secret %q", userID, secret)
	}

	// A public address: the receipt URL check needs no DNS.
	body := `{"label":"Calendar ✓","receipt_url":"https://93.184.215.14/receipts"}`
	r := h.expect(t, http.StatusCreated, "POST", "/v1/mailboxes", jsonHeader(secret), body)
	var mb newMailboxJSON
	decode(t, r, &mb)
	if !mailbox.ValidID(mb.MailboxID) || !mailbox.ValidToken(mb.Token) || mb.ReceiptSecret == "" {
		t.Fatalf("mailbox: %s", r.body)
	}
	if want := h.srv.URL + "/v1/push/" + mb.Token; mb.PushURL != want {
		t.Errorf("push_url %q, want %q", mb.PushURL, want)
	}
	if mb.Label != "Calendar ✓" || mb.ReceiptURL != "https://93.184.215.14/receipts" {
		t.Errorf("mailbox fields: %s", r.body)
	}
	if got := r.header.Get("Location"); got != "/v1/mailboxes/"+mb.MailboxID {
		t.Errorf("Location %q", got)
	}
	created := wireTime(t, mb.CreatedAt)

	// The token is shown once: neither the list nor the mailbox shows it.
	var list struct{ Mailboxes []mailboxJSON }
	r = h.expect(t, http.StatusOK, "GET", "/v1/mailboxes", bearer(secret), "")
	decode(t, r, &list)
	if strings.Contains(string(r.body), mb.Token) || strings.Contains(string(r.body), mb.ReceiptSecret) {
		t.Errorf("list shows a secret: %s", r.body)
	}
	if len(list.Mailboxes) != 1 || list.Mailboxes[0].MailboxID != mb.MailboxID || list.Mailboxes[0].Revoked {
		t.Fatalf("list: %s", r.body)
	}
	var one mailboxJSON
	decode(t, h.expect(t, http.StatusOK, "GET", "/v1/mailboxes/"+mb.MailboxID, bearer(secret), ""), &one)
	if one != list.Mailboxes[0] || !wireTime(t, one.CreatedAt).Equal(created) {
		t.Errorf("mailbox %+v, list %+v", one, list.Mailboxes[0])
	}

	// Publish.
	r = h.expect(t, http.StatusCreated, "POST", "/v1/push/"+mb.Token,
		hdr("TTL", "60", "Topic", "meeting-42", "Urgency", "high", "Content-Type", "text/plain; charset=utf-8"), "Standup in 5 minutes")
	var pub publishedJSON
	decode(t, r, &pub)
	if got := r.header.Get("Location"); got != "/v1/messages/"+pub.ID {
		t.Errorf("Location %q, want /v1/messages/%s", got, pub.ID)
	}
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("a first publish says it was replayed")
	}
	msgs, err := h.store.Messages(userID, 0, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ID != pub.ID || msgs[0].Data != "Standup in 5 minutes" ||
		msgs[0].Topic != "meeting-42" || msgs[0].Urgency != mailbox.UrgencyHigh || msgs[0].Seq != 1 {
		t.Fatalf("stream: %+v", msgs)
	}

	// Status, with the mailbox token.
	var st statusJSON
	decode(t, h.expect(t, http.StatusOK, "GET", "/v1/messages/"+pub.ID, bearer(mb.Token), ""), &st)
	if st.ID != pub.ID || st.MailboxID != mb.MailboxID || st.Seq != 1 || st.State != "pending" || st.Topic != "meeting-42" {
		t.Errorf("status: %+v", st)
	}
	if d := wireTime(t, st.ExpiresAt).Sub(wireTime(t, st.CreatedAt)); d != 60*time.Second {
		t.Errorf("expires_at - created_at = %v, want 60s", d)
	}
	if st.ExpiresAt != pub.ExpiresAt || st.FinalAt != "" {
		t.Errorf("status %+v, publish %+v", st, pub)
	}

	// A ticket, and no devices yet.
	var tk struct {
		Ticket    string `json:"ticket"`
		ExpiresAt string `json:"expires_at"`
	}
	before := time.Now()
	decode(t, h.expect(t, http.StatusCreated, "POST", "/v1/tickets", bearer(secret), ""), &tk)
	if !mailbox.ValidToken(tk.Ticket) {
		t.Errorf("ticket %q", tk.Ticket)
	}
	if exp := wireTime(t, tk.ExpiresAt); exp.Before(before.Add(59*time.Second)) || exp.After(time.Now().Add(61*time.Second)) {
		t.Errorf("ticket expires at %v, want about a minute from now", exp)
	}
	if r := h.expect(t, http.StatusOK, "GET", "/v1/devices", bearer(secret), ""); string(r.body) != `{"devices":[]}` {
		t.Errorf("devices: %s", r.body)
	}

	// The app revokes its token; it never publishes again.
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/push/"+mb.Token, nil, "")
	if code := errorCode(t, h.expect(t, http.StatusGone, "DELETE", "/v1/push/"+mb.Token, nil, "")); code != "token_revoked" {
		t.Errorf("second revoke: %s", code)
	}
	if code := errorCode(t, h.expect(t, http.StatusGone, "POST", "/v1/push/"+mb.Token, nil, "again")); code != "token_revoked" {
		t.Errorf("publish after revoke: %s", code)
	}
	// The revoked token still reads its message's fate.
	decode(t, h.expect(t, http.StatusOK, "GET", "/v1/messages/"+pub.ID, bearer(mb.Token), ""), &st)
	if st.State != "revoked" || st.FinalAt == "" {
		t.Errorf("status after revoke: %+v", st)
	}
	decode(t, h.expect(t, http.StatusOK, "GET", "/v1/mailboxes/"+mb.MailboxID, bearer(secret), ""), &one)
	if !one.Revoked || one.RevokedAt == "" {
		t.Errorf("mailbox after revoke: %+v", one)
	}
	// The owner's revoke is idempotent.
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/mailboxes/"+mb.MailboxID, bearer(secret), "")

	// The user leaves; the secret no longer works.
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/users/me", bearer(secret), "")
	r = h.expect(t, http.StatusUnauthorized, "GET", "/v1/mailboxes", bearer(secret), "")
	if errorCode(t, r) != "unauthorized" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("after delete: %v %s", r.header, r.body)
	}
}

func TestUserRevokesMailbox(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/mailboxes/"+a.mailboxID, bearer(a.secret), "")
	if code := errorCode(t, h.expect(t, http.StatusGone, "POST", "/v1/push/"+a.token, nil, "x")); code != "token_revoked" {
		t.Errorf("publish after user revoke: %s", code)
	}
}

func TestIdempotentRetry(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	key := hdr("Idempotency-Key", "order-7/shipped", "TTL", "600")

	first := h.expect(t, http.StatusCreated, "POST", "/v1/push/"+a.token, key, "your order shipped")
	var p1 publishedJSON
	decode(t, first, &p1)
	before := h.userState(t, a.userID)

	again := h.expect(t, http.StatusCreated, "POST", "/v1/push/"+a.token, key, "your order shipped")
	var p2 publishedJSON
	decode(t, again, &p2)
	if p2 != p1 || string(again.body) != string(first.body) {
		t.Errorf("replay answered %s, first %s", again.body, first.body)
	}
	if again.header.Get("Idempotent-Replayed") != "true" || again.header.Get("Location") != "/v1/messages/"+p1.ID {
		t.Errorf("replay headers: %v", again.header)
	}
	if after := h.userState(t, a.userID); len(after.messages) != len(before.messages) {
		t.Errorf("replay stored a message: %d before, %d after", len(before.messages), len(after.messages))
	}

	// The same key with another request is a conflict, and stores nothing.
	for name, c := range map[string]struct {
		h    http.Header
		body string
	}{
		"other body":    {key, "your order was cancelled"},
		"other ttl":     {hdr("Idempotency-Key", "order-7/shipped", "TTL", "601"), "your order shipped"},
		"other topic":   {hdr("Idempotency-Key", "order-7/shipped", "TTL", "600", "Topic", "t"), "your order shipped"},
		"other urgency": {hdr("Idempotency-Key", "order-7/shipped", "TTL", "600", "Urgency", "low"), "your order shipped"},
	} {
		r := h.expect(t, http.StatusConflict, "POST", "/v1/push/"+a.token, c.h, c.body)
		if code := errorCode(t, r); code != "idempotency_conflict" {
			t.Errorf("%s: code %s", name, code)
		}
	}
	if after := h.userState(t, a.userID); len(after.messages) != len(before.messages) {
		t.Errorf("conflicts stored messages: %d before, %d after", len(before.messages), len(after.messages))
	}

	// Without a key, a retry is a new message.
	x := h.publish(t, a.token, "no key", nil)
	y := h.publish(t, a.token, "no key", nil)
	if x.ID == y.ID {
		t.Errorf("two publishes without a key share id %s", x.ID)
	}
}

func TestOtherUsersMailbox(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a, b := h.newAccount(t), h.newAccount(t)
	before := h.snapshot(t, a.userID, b.userID)

	for _, method := range []string{"GET", "DELETE"} {
		theirs := h.expect(t, http.StatusNotFound, method, "/v1/mailboxes/"+a.mailboxID, bearer(b.secret), "")
		none := h.expect(t, http.StatusNotFound, method, "/v1/mailboxes/"+mailbox.NewID(), bearer(b.secret), "")
		if errorCode(t, theirs) != "not_found" || string(theirs.body) != string(none.body) {
			t.Errorf("%s another user's mailbox: %s; a missing one: %s", method, theirs.body, none.body)
		}
	}
	// Another mailbox's message reads like a missing one.
	theirs := h.expect(t, http.StatusNotFound, "GET", "/v1/messages/"+a.messageID, bearer(b.token), "")
	none := h.expect(t, http.StatusNotFound, "GET", "/v1/messages/"+mailbox.NewID(), bearer(b.token), "")
	if errorCode(t, theirs) != "not_found" || string(theirs.body) != string(none.body) {
		t.Errorf("another mailbox's message: %s; a missing one: %s", theirs.body, none.body)
	}
	if after := h.snapshot(t, a.userID, b.userID); after.applied != before.applied {
		t.Errorf("applied moved from %d to %d", before.applied, after.applied)
	}
	var one mailboxJSON
	decode(t, h.expect(t, http.StatusOK, "GET", "/v1/mailboxes/"+a.mailboxID, bearer(a.secret), ""), &one)
	if one.Revoked {
		t.Errorf("another user revoked the mailbox")
	}
}

func TestTTLBounds(t *testing.T) {
	t.Parallel()
	h := startHub(t, transport.Config{OpenRegistration: true, DefaultTTL: 10 * time.Minute, MaxTTL: time.Hour})
	a := h.newAccount(t)

	for _, c := range []struct {
		ttl  string // "" = no header
		want time.Duration
	}{
		{"", 10 * time.Minute},
		{"0", 0},
		{"1", time.Second},
		{"3600", time.Hour},
		{"0003600", time.Hour},
	} {
		header := http.Header{}
		if c.ttl != "" {
			header.Set("TTL", c.ttl)
		}
		p := h.publish(t, a.token, "ttl "+c.ttl, header)
		var st statusJSON
		decode(t, h.expect(t, http.StatusOK, "GET", "/v1/messages/"+p.ID, bearer(a.token), ""), &st)
		if d := wireTime(t, st.ExpiresAt).Sub(wireTime(t, st.CreatedAt)); d != c.want {
			t.Errorf("TTL %q: lives %v, want %v", c.ttl, d, c.want)
		}
	}
	for _, ttl := range []string{"3601", "-1", "1.5", "1e3", "+5", "0x10", "99999999999999999999999", "60s"} {
		before := h.snapshot(t, a.userID)
		r := h.expect(t, http.StatusBadRequest, "POST", "/v1/push/"+a.token, hdr("TTL", ttl), "x")
		if code := errorCode(t, r); code != "bad_ttl" {
			t.Errorf("TTL %q: code %s", ttl, code)
		}
		if after := h.snapshot(t, a.userID); after.applied != before.applied {
			t.Errorf("TTL %q: a command was proposed", ttl)
		}
	}
}

// TestDefaultTTL checks the 24h default and the 28-day maximum.
func TestDefaultTTL(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	for ttl, want := range map[string]time.Duration{"": 24 * time.Hour, "2419200": 28 * 24 * time.Hour} {
		header := http.Header{}
		if ttl != "" {
			header.Set("TTL", ttl)
		}
		p := h.publish(t, a.token, "x", header)
		var st statusJSON
		decode(t, h.expect(t, http.StatusOK, "GET", "/v1/messages/"+p.ID, bearer(a.token), ""), &st)
		if d := wireTime(t, st.ExpiresAt).Sub(wireTime(t, st.CreatedAt)); d != want {
			t.Errorf("TTL %q: lives %v, want %v", ttl, d, want)
		}
	}
	r := h.expect(t, http.StatusBadRequest, "POST", "/v1/push/"+a.token, hdr("TTL", "2419201"), "x")
	if code := errorCode(t, r); code != "bad_ttl" {
		t.Errorf("over 28 days: %s", code)
	}
}

type batchResult struct {
	Status    int    `json:"status"`
	ID        string `json:"id"`
	ExpiresAt string `json:"expires_at"`
	Replayed  bool   `json:"replayed"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestBatchMixed(t *testing.T) {
	t.Parallel()
	h := startHub(t, transport.Config{OpenRegistration: true, PayloadLimit: 64})
	a, b := h.newAccount(t), h.newAccount(t)
	revoked := h.newMailbox(t, a.secret, "old")
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/push/"+revoked.Token, nil, "")

	type item map[string]any
	items := []struct {
		item       item
		wantStatus int
		wantCode   string
	}{
		{item{"token": a.token, "data": "one", "ttl": 60, "topic": "t1", "urgency": "high"}, 201, ""},
		{item{"token": "not-a-token", "data": "x"}, 404, "token_unknown"},
		{item{"token": mailbox.NewToken(), "data": "x"}, 404, "token_unknown"},
		{item{"token": revoked.Token, "data": "x"}, 410, "token_revoked"},
		{item{"token": b.token, "data": "two"}, 201, ""},
		{item{"token": a.token, "data": strings.Repeat("x", 65)}, 413, "payload_too_large"},
		{item{"token": a.token, "data": "x", "ttl": -1}, 400, "bad_ttl"},
		{item{"token": a.token, "data": "x", "ttl": 1.5}, 400, "bad_ttl"},
		{item{"token": a.token, "data": "x", "ttl": "60"}, 400, "bad_ttl"},
		{item{"token": a.token, "data": "x", "ttl": 2419201}, 400, "bad_ttl"},
		{item{"token": a.token, "data": "x", "topic": "no spaces"}, 400, "bad_topic"},
		{item{"token": a.token, "data": "x", "urgency": "urgent"}, 400, "bad_urgency"},
		{item{"token": a.token, "data": "x", "idempotency_key": "a b"}, 400, "bad_idempotency_key"},
		{item{"token": a.token}, 400, "bad_request"},
		{item{"token": a.token, "data": "keyed", "idempotency_key": "k1"}, 201, ""},
		{item{"token": a.token, "data": "keyed", "idempotency_key": "k1"}, 201, ""}, // replay of the one before
		{item{"token": a.token, "data": "other", "idempotency_key": "k1"}, 409, "idempotency_conflict"},
		{item{"token": a.token, "data": strings.Repeat("é", 32), "ttl": 0, "urgency": "very-low"}, 201, ""},
	}
	msgs := make([]item, len(items))
	for i, it := range items {
		msgs[i] = it.item
	}
	body, err := json.Marshal(map[string]any{"messages": msgs})
	if err != nil {
		t.Fatal(err)
	}
	beforeA, beforeB := h.userState(t, a.userID), h.userState(t, b.userID)
	applied := h.store.Applied()

	r := h.expect(t, http.StatusOK, "POST", "/v1/push", jsonHeader(""), string(body))
	var out struct{ Results []batchResult }
	decode(t, r, &out)
	if len(out.Results) != len(items) {
		t.Fatalf("%d results for %d items: %s", len(out.Results), len(items), r.body)
	}
	var ids []string
	for i, res := range out.Results {
		want := items[i]
		if res.Status != want.wantStatus {
			t.Errorf("item %d: status %d, want %d (%+v)", i, res.Status, want.wantStatus, res)
			continue
		}
		if want.wantStatus == 201 {
			if res.ID == "" || res.Error != nil {
				t.Errorf("item %d: %+v", i, res)
			}
			wireTime(t, res.ExpiresAt)
			if !res.Replayed {
				ids = append(ids, res.ID)
			}
			continue
		}
		if res.Error == nil || res.Error.Code != want.wantCode || res.Error.Message == "" || res.ID != "" {
			t.Errorf("item %d: %+v, want code %s", i, res, want.wantCode)
		}
	}
	if res := out.Results; res[15].ID != res[14].ID || !res[15].Replayed || res[14].Replayed {
		t.Errorf("replay in batch: %+v then %+v", res[14], res[15])
	}
	// One cluster call: one log entry.
	if got := h.store.Applied(); got != applied+1 {
		t.Errorf("applied moved from %d to %d, want one entry", applied, got)
	}
	afterA, afterB := h.userState(t, a.userID), h.userState(t, b.userID)
	if got := len(afterA.messages) - len(beforeA.messages); got != 3 {
		// "one", "keyed" and the TTL 0 one (read at time 0, nothing has expired).
		t.Errorf("user a got %d messages, want 3", got)
	}
	if got := len(afterB.messages) - len(beforeB.messages); got != 1 {
		t.Errorf("user b got %d messages, want 1", got)
	}
	for _, id := range ids {
		if _, err := h.store.Status(id); err != nil {
			t.Errorf("message %s: %v", id, err)
		}
	}
}

func TestBatchAllInvalid(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	before := h.snapshot(t, a.userID)
	r := h.expect(t, http.StatusOK, "POST", "/v1/push", jsonHeader(""),
		`{"messages":[{"token":"x","data":"y"},{"token":"`+a.token+`","data":"y","urgency":"no"}]}`)
	if want := `{"results":[{"status":404,"error":{"code":"token_unknown","message":"no mailbox has this token"}},` +
		`{"status":400,"error":{"code":"bad_urgency","message":"Urgency must be very-low, low, normal or high"}}]}`; string(r.body) != want {
		t.Errorf("got  %s\nwant %s", r.body, want)
	}
	if after := h.snapshot(t, a.userID); after.applied != before.applied {
		t.Errorf("a batch of invalid items proposed a command")
	}
	if r := h.expect(t, http.StatusOK, "POST", "/v1/push", jsonHeader(""), `{"messages":[]}`); string(r.body) != `{"results":[]}` {
		t.Errorf("empty batch: %s", r.body)
	}
}

func TestRegistration(t *testing.T) {
	t.Parallel()
	h := startHub(t, transport.Config{AdminToken: "admin-secret-token"})
	var u userJSON
	decode(t, h.expect(t, http.StatusCreated, "POST", "/v1/users", bearer("admin-secret-token"), ""), &u)
	if _, err := h.store.User(u.UserID); err != nil {
		t.Fatalf("user not stored: %v", err)
	}
	runBadInputs(t, h, []string{u.UserID}, []badInput{
		{"no token", "POST", "/v1/users", nil, "", 403, "registration_closed", false},
		{"not bearer", "POST", "/v1/users", hdr("Authorization", "Basic YTpi"), "", 403, "registration_closed", false},
		{"wrong token", "POST", "/v1/users", bearer("admin-secret-tokem"), "", 401, "unauthorized", false},
		{"user secret", "POST", "/v1/users", bearer(u.Secret), "", 401, "unauthorized", false},
	})

	// With no admin token configured, closed registration refuses everyone.
	closed := startHub(t, transport.Config{})
	r := closed.expect(t, http.StatusForbidden, "POST", "/v1/users", bearer(""), "")
	if code := errorCode(t, r); code != "registration_closed" {
		t.Errorf("code %s", code)
	}
}

func TestDevices(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	if _, err := h.node.Propose(ctx, &mailbox.Command{Kind: mailbox.KindTouchDevice,
		TouchDevice: &mailbox.TouchDevice{UserID: a.userID, DeviceID: "laptop:firefox"}}); err != nil {
		t.Fatal(err)
	}
	var devs struct {
		Devices []struct {
			DeviceID  string `json:"device_id"`
			Cursor    uint64 `json:"cursor"`
			LastSeen  string `json:"last_seen"`
			CreatedAt string `json:"created_at"`
		} `json:"devices"`
	}
	decode(t, h.expect(t, http.StatusOK, "GET", "/v1/devices", bearer(a.secret), ""), &devs)
	if len(devs.Devices) != 1 || devs.Devices[0].DeviceID != "laptop:firefox" {
		t.Fatalf("devices: %+v", devs)
	}
	wireTime(t, devs.Devices[0].LastSeen)
	wireTime(t, devs.Devices[0].CreatedAt)
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/devices/laptop:firefox", bearer(a.secret), "")
	if r := h.expect(t, http.StatusOK, "GET", "/v1/devices", bearer(a.secret), ""); string(r.body) != `{"devices":[]}` {
		t.Errorf("after delete: %s", r.body)
	}
	h.expect(t, http.StatusNotFound, "DELETE", "/v1/devices/laptop:firefox", bearer(a.secret), "")
}

func TestRouting(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/nope", 404, "not_found", ""},
		{"GET", "/v1/push/", 404, "not_found", ""},
		{"GET", "/v1/mailboxes/a/b", 404, "not_found", ""},
		{"PUT", "/v1/users", 405, "method_not_allowed", "POST"},
		{"GET", "/v1/users/me", 405, "method_not_allowed", "DELETE"},
		{"GET", "/v1/push/" + mailbox.NewToken(), 405, "method_not_allowed", "POST, DELETE"},
		{"POST", "/healthz", 405, "method_not_allowed", "GET, HEAD"},
		{"PATCH", "/v1/mailboxes", 405, "method_not_allowed", "GET, HEAD, POST"},
	} {
		r := h.do(t, c.method, c.path, nil, "")
		if r.status != c.status || errorCode(t, r) != c.code || r.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q %s; want %d %s Allow %q", c.method, c.path, r.status,
				r.header.Get("Allow"), r.body, c.status, c.code, c.allow)
		}
	}
}

// TestConcurrentPublish publishes from many goroutines and checks that every
// message lands once, in a gapless stream.
func TestConcurrentPublish(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	const workers, each = 16, 20
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				r, err := h.srv.Client().Post(h.srv.URL+"/v1/push/"+a.token, "text/plain", strings.NewReader(fmt.Sprintf("%d/%d", w, i)))
				if err != nil {
					errs <- err
					return
				}
				r.Body.Close()
				if r.StatusCode != http.StatusCreated {
					errs <- fmt.Errorf("status %d", r.StatusCode)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := h.store.Messages(a.userID, 0, 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != workers*each+1 {
		t.Fatalf("%d messages, want %d", len(msgs), workers*each+1)
	}
	seen := map[string]bool{}
	for i, m := range msgs {
		if m.Seq != mailbox.Seq(i+1) || seen[m.Data] {
			t.Fatalf("message %d: seq %d data %q", i, m.Seq, m.Data)
		}
		seen[m.Data] = true
	}
}

// TestNodeClosed checks the answers of a node that can take no writes.
func TestNodeClosed(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	if err := h.node.Close(); err != nil {
		t.Fatal(err)
	}
	r := h.expect(t, http.StatusServiceUnavailable, "GET", "/readyz", nil, "")
	if code := errorCode(t, r); code != "not_ready" {
		t.Errorf("readyz: %s", code)
	}
	h.expect(t, http.StatusOK, "GET", "/healthz", nil, "")
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/push/" + a.token, "x"},
		{"POST", "/v1/users", ""},
		{"DELETE", "/v1/push/" + a.token, ""},
	} {
		r := h.expect(t, http.StatusServiceUnavailable, c.method, c.path, nil, c.body)
		if code := errorCode(t, r); code != "unavailable" || r.header.Get("Retry-After") != "1" {
			t.Errorf("%s %s: %s, Retry-After %q", c.method, c.path, code, r.header.Get("Retry-After"))
		}
	}
	// Reads still work from the local store.
	h.expect(t, http.StatusOK, "GET", "/v1/messages/"+a.messageID, bearer(a.token), "")
}
