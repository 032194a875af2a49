package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

const adminToken = "admin-secret-token"

// startClusterHubs runs n nodes in this process, each with its own hub and
// API on its own listener, as n hubd processes would.
func startClusterHubs(t *testing.T, n int, cfg transport.Config) (*clustertest.Cluster, []*testHub) {
	t.Helper()
	return startClusterHubsWith(t, n, cfg, clusterHooks{})
}

// clusterHooks let a test stand between a node's parts: applied wraps
// what the node reports applied entries to (its hub), handler wraps its
// HTTP handler. Nil hooks wrap nothing.
type clusterHooks struct {
	applied func(i int, h *hub.Hub) cluster.Applied
	handler func(i int, next http.Handler) http.Handler
	// internal wraps each node's internal HTTP (calls between nodes).
	internal func(next http.Handler) http.Handler
}

func startClusterHubsWith(t *testing.T, n int, cfg transport.Config, hooks clusterHooks) (*clustertest.Cluster, []*testHub) {
	t.Helper()
	hubs := make([]*testHub, n, 10)
	c := clustertest.StartCluster(t, n, clustertest.WithConfig(func(cfg *cluster.Config) { cfg.WrapInternal = hooks.internal }), clustertest.WithWiring(func(i int, store *mailbox.Store) (cluster.Applied, func(*clustertest.Member) http.Handler) {
		h := hub.New(hub.Config{}, store)
		var applied cluster.Applied = h
		if hooks.applied != nil {
			applied = hooks.applied(i, h)
		}
		return applied, func(m *clustertest.Member) http.Handler {
			h.Start(m.Node)
			api := transport.New(cfg, m.Store, m.Node, h)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
				defer cancel()
				h.Close(ctx)
				api.Close(ctx)
			})
			for len(hubs) <= i {
				hubs = append(hubs, nil)
			}
			hubs[i] = &testHub{srv: m.Server, store: m.Store, node: m.Node, hub: h, api: api, cfg: cfg}
			if hooks.handler != nil {
				return hooks.handler(i, api.Handler())
			}
			return api.Handler()
		}
	}))
	return c, hubs
}

// decodeLoose decodes a JSON answer, ignoring the fields a test does not read.
func decodeLoose(t *testing.T, r response, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// hubOf returns the testHub of member m.
func hubOf(hubs []*testHub, m *clustertest.Member) *testHub { return hubs[m.Index] }

func TestClusterForwardsEveryWrite(t *testing.T) {
	cfg := openConfig()
	c, hubs := startClusterHubs(t, 3, cfg)
	fs := c.Followers(t)
	f1, f2 := hubOf(hubs, fs[0]), hubOf(hubs, fs[1])
	leader := hubOf(hubs, c.Leader(t))

	// A user, a mailbox and a publish, each through a follower; each read
	// back from the node that answered, at once.
	userID, secret := f1.register(t)
	mb := f2.newMailbox(t, secret, "app")
	f2.expect(t, http.StatusOK, "GET", "/v1/mailboxes/"+mb.MailboxID, bearer(secret), "")
	p := f1.publish(t, mb.Token, "hello", hdr("Idempotency-Key", "k1"))
	f1.expect(t, http.StatusOK, "GET", "/v1/messages/"+p.ID, bearer(mb.Token), "")
	// The same key through another node: the same message.
	again := f2.expect(t, http.StatusCreated, "POST", "/v1/push/"+mb.Token, hdr("Idempotency-Key", "k1", "Content-Type", "text/plain"), "hello")
	var pj publishedJSON
	decodeLoose(t, again, &pj)
	if pj.ID != p.ID || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry through another node: %s", again)
	}
	// A batch through a follower, with a refused item answered as the
	// leader would.
	batch := fmt.Sprintf(`{"messages":[{"token":%q,"data":"b1"},{"token":%q,"data":"b2"}]}`, mb.Token, mailbox.NewToken())
	var br struct {
		Results []struct {
			Status int `json:"status"`
			Error  struct {
				Code string `json:"code"`
			} `json:"error"`
		} `json:"results"`
	}
	decodeLoose(t, f2.expect(t, http.StatusOK, "POST", "/v1/push", jsonHeader(""), batch), &br)
	if len(br.Results) != 2 || br.Results[0].Status != 201 || br.Results[1].Error.Code != "token_unknown" {
		t.Errorf("batch: %+v", br)
	}

	// A device on each node gets every message; its acks, from a follower,
	// reach the leader's store as commands.
	c1, _ := f1.wsHello(t, secret, "on-f1", nil)
	c2, _ := leader.wsHello(t, secret, "on-leader", nil)
	leader.publish(t, mb.Token, "third", nil)
	m1 := recvMsgs(t, c1, 0, 3)
	recvMsgs(t, c2, 0, 3)
	if m1[0].Data != "hello" || m1[1].Data != "b1" || m1[2].Data != "third" {
		t.Errorf("device on a follower got %q %q %q", m1[0].Data, m1[1].Data, m1[2].Data)
	}
	wsSend(t, c1, `{"type":"ack","seq":3}`)
	leader.waitCursor(t, userID, "on-f1", 3)

	// Revoked through a follower: refused everywhere at once.
	f1.expect(t, http.StatusNoContent, "DELETE", "/v1/push/"+mb.Token, nil, "")
	for _, h := range hubs {
		r := h.expect(t, http.StatusGone, "POST", "/v1/push/"+mb.Token, hdr("Content-Type", "text/plain"), "late")
		if code := errorCode(t, r); code != "token_revoked" {
			t.Errorf("publish after revoke: %s", code)
		}
	}
	// A refusal of the state machine crosses as itself: an unknown device.
	if code := errorCode(t, f2.expect(t, http.StatusNotFound, "DELETE", "/v1/devices/nope", bearer(secret), "")); code != "not_found" {
		t.Errorf("delete unknown device: %s", code)
	}
	f2.expect(t, http.StatusNoContent, "DELETE", "/v1/devices/on-leader", bearer(secret), "")
	f2.expect(t, http.StatusNoContent, "DELETE", "/v1/users/me", bearer(secret), "")
}

func TestClusterMinorityAnswers503(t *testing.T) {
	c, hubs := startClusterHubs(t, 3, openConfig())
	l := c.Leader(t)
	_, secret := hubOf(hubs, l).register(t)
	mb := hubOf(hubs, l).newMailbox(t, secret, "app")
	fs := c.Followers(t)
	c.Stop(t, l.Index)
	c.Stop(t, fs[0].Index)
	last := hubOf(hubs, fs[1])
	r := last.do(t, "POST", "/v1/push/"+mb.Token, hdr("Content-Type", "text/plain"), "x")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("publish on a minority: %s (Retry-After %q)", r, r.header.Get("Retry-After"))
	}
	if code := errorCode(t, r); code != "no_quorum" && code != "not_leader" {
		t.Errorf("code %s", code)
	}
	last.expect(t, http.StatusServiceUnavailable, "POST", "/v1/users", nil, "")
}

func adminHeader() http.Header { return bearer(adminToken) }

func TestAdminAPI(t *testing.T) {
	cfg := openConfig()
	cfg.AdminToken = adminToken
	c, hubs := startClusterHubs(t, 3, cfg)
	f := hubOf(hubs, c.Followers(t)[0])
	userID, secret := f.register(t)
	mb := f.newMailbox(t, secret, "app")
	f.publish(t, mb.Token, "one", nil)
	f.wsHello(t, secret, "dev", nil)

	// Status: every member, each with its own view, asked over the
	// internal HTTP.
	var st struct {
		Node     string `json:"node"`
		LeaderID string `json:"leader_id"`
		Members  []struct {
			ID     string `json:"id"`
			Leader bool   `json:"leader"`
			Status *struct {
				State        string `json:"state"`
				AppliedIndex uint64 `json:"applied_index"`
				Sessions     int64  `json:"sessions"`
				APIAddr      string `json:"api_addr"`
			} `json:"status"`
			Error string `json:"error"`
		} `json:"members"`
	}
	decodeLoose(t, f.expect(t, http.StatusOK, "GET", "/admin/v1/status", adminHeader(), ""), &st)
	if len(st.Members) != 3 || st.LeaderID != c.Leader(t).ID {
		t.Fatalf("status %+v", st)
	}
	sessions := int64(0)
	for _, m := range st.Members {
		if m.Status == nil {
			t.Fatalf("member %s without status: %s", m.ID, m.Error)
		}
		sessions += m.Status.Sessions
		if m.Leader != (m.Status.State == "Leader") {
			t.Errorf("member %s: leader %v, state %s", m.ID, m.Leader, m.Status.State)
		}
	}
	if sessions != 1 {
		t.Errorf("%d sessions across the cluster, want 1", sessions)
	}

	// A node that is down shows as unreachable; the others still answer.
	down := c.Followers(t)[1]
	c.Stop(t, down.Index)
	st.Members = nil
	decodeLoose(t, f.expect(t, http.StatusOK, "GET", "/admin/v1/status", adminHeader(), ""), &st)
	for _, m := range st.Members {
		if (m.ID == down.ID) != (m.Status == nil) {
			t.Errorf("member %s: status %v, error %q", m.ID, m.Status, m.Error)
		}
	}
	c.Restart(t, down.Index)

	// Users and mailboxes, for operators.
	var users struct {
		Users []struct {
			UserID  string `json:"user_id"`
			LastSeq int    `json:"last_seq"`
		} `json:"users"`
	}
	decodeLoose(t, f.expect(t, http.StatusOK, "GET", "/admin/v1/users", adminHeader(), ""), &users)
	if len(users.Users) != 1 || users.Users[0].UserID != userID || users.Users[0].LastSeq != 1 {
		t.Errorf("users %+v", users)
	}
	var mbs struct {
		Mailboxes []struct {
			UserID    string `json:"user_id"`
			MailboxID string `json:"mailbox_id"`
		} `json:"mailboxes"`
	}
	decodeLoose(t, f.expect(t, http.StatusOK, "GET", "/admin/v1/mailboxes?user="+userID, adminHeader(), ""), &mbs)
	if len(mbs.Mailboxes) != 1 || mbs.Mailboxes[0].MailboxID != mb.MailboxID || mbs.Mailboxes[0].UserID != userID {
		t.Errorf("mailboxes %+v", mbs)
	}
	decodeLoose(t, f.expect(t, http.StatusOK, "GET", "/admin/v1/mailboxes", adminHeader(), ""), &mbs)
	if len(mbs.Mailboxes) != 1 {
		t.Errorf("all mailboxes %+v", mbs)
	}

	// Snapshot, backup, and a restore that undoes what came after it.
	f.expect(t, http.StatusOK, "POST", "/admin/v1/snapshot", adminHeader(), "")
	backup := f.expect(t, http.StatusOK, "GET", "/admin/v1/backup", adminHeader(), "")
	if backup.header.Get("Hub-Backup-Index") == "" {
		t.Error("backup without its index")
	}
	f.publish(t, mb.Token, "two", nil)
	f.expect(t, http.StatusOK, "POST", "/admin/v1/restore", adminHeader(), string(backup.body))
	c.Sync(t)
	for _, m := range c.Running() {
		msgs, err := m.Store.Messages(userID, 0, 0, time.Now().UnixNano())
		if err != nil || len(msgs) != 1 || msgs[0].Data != "one" {
			t.Errorf("%s after restore: %+v, %v", m.ID, msgs, err)
		}
	}

	// Transfer leadership, asked of a follower.
	to := c.Followers(t)[0]
	var tr struct {
		LeaderID string `json:"leader_id"`
	}
	decodeLoose(t, f.expect(t, http.StatusOK, "POST", "/admin/v1/transfer-leadership", jsonHeaderAdmin(), fmt.Sprintf(`{"id":%q}`, to.ID)), &tr)
	if got := c.Leader(t); got != to {
		t.Errorf("leader %s after a transfer to %s", got.ID, to.ID)
	}

	// Join and remove through the admin API.
	m := c.Add(t) // a fourth node, joined by the harness
	f.expect(t, http.StatusNoContent, "DELETE", "/admin/v1/members/"+m.ID, adminHeader(), "")
	c.Stop(t, m.Index)
	var members struct {
		Members []cluster.Member `json:"members"`
	}
	decodeLoose(t, f.expect(t, http.StatusOK, "GET", "/admin/v1/members", adminHeader(), ""), &members)
	if len(members.Members) != 3 {
		t.Errorf("members after remove: %+v", members)
	}
	// The same raft address under a new id: joined again by the admin API.
	body := fmt.Sprintf(`{"id":"again","raft_addr":%q,"api_addr":%q}`, "127.0.0.1:9", m.URL)
	f.expect(t, http.StatusCreated, "POST", "/admin/v1/members", jsonHeaderAdmin(), body)
	f.expect(t, http.StatusNoContent, "DELETE", "/admin/v1/members/again", adminHeader(), "")
}

func jsonHeaderAdmin() http.Header { return jsonHeader(adminToken) }

func TestAdminBadInput(t *testing.T) {
	cfg := openConfig()
	cfg.AdminToken = adminToken
	c, hubs := startClusterHubs(t, 2, cfg)
	h := hubOf(hubs, c.Followers(t)[0])
	l := c.Leader(t)
	membersBefore := h.expect(t, http.StatusOK, "GET", "/admin/v1/members", adminHeader(), "").body

	cases := []struct {
		name, method, path string
		header             http.Header
		body               string
		status             int
		code               string
	}{
		{"no token", "GET", "/admin/v1/status", nil, "", 401, "unauthorized"},
		{"wrong token", "GET", "/admin/v1/status", bearer("nope"), "", 401, "unauthorized"},
		{"user secret is not admin", "GET", "/admin/v1/users", bearer("x.y"), "", 401, "unauthorized"},
		{"join without token", "POST", "/admin/v1/members", jsonHeader(""), `{"id":"x","raft_addr":"127.0.0.1:1"}`, 401, "unauthorized"},
		{"duplicate id", "POST", "/admin/v1/members", jsonHeaderAdmin(), fmt.Sprintf(`{"id":%q,"raft_addr":"127.0.0.1:1"}`, l.ID), 409, "member_exists"},
		{"duplicate address", "POST", "/admin/v1/members", jsonHeaderAdmin(), fmt.Sprintf(`{"id":"new","raft_addr":%q}`, l.Node.Addr()), 409, "member_exists"},
		{"bad id", "POST", "/admin/v1/members", jsonHeaderAdmin(), `{"id":"a b","raft_addr":"127.0.0.1:1"}`, 400, "bad_member"},
		{"bad address", "POST", "/admin/v1/members", jsonHeaderAdmin(), `{"id":"x","raft_addr":"here"}`, 400, "bad_member"},
		{"bad json", "POST", "/admin/v1/members", jsonHeaderAdmin(), `{"id":`, 400, "bad_json"},
		{"field in upper case", "POST", "/admin/v1/members", jsonHeaderAdmin(), `{"ID":"x","raft_addr":"127.0.0.1:1"}`, 400, "bad_json"},
		{"field twice", "POST", "/admin/v1/members", jsonHeaderAdmin(), `{"id":"x","id":"y","raft_addr":"127.0.0.1:1"}`, 400, "bad_json"},
		{"transfer field in upper case", "POST", "/admin/v1/transfer-leadership", jsonHeaderAdmin(), `{"ID":"nobody"}`, 400, "bad_json"},
		{"remove unknown", "DELETE", "/admin/v1/members/nobody", adminHeader(), "", 404, "member_unknown"},
		{"transfer to unknown", "POST", "/admin/v1/transfer-leadership", jsonHeaderAdmin(), `{"id":"nobody"}`, 404, "member_unknown"},
		{"restore garbage", "POST", "/admin/v1/restore", adminHeader(), "not a backup at all", 400, "bad_backup"},
		{"bad limit", "GET", "/admin/v1/users?limit=0", adminHeader(), "", 400, "bad_request"},
		{"unknown user", "GET", "/admin/v1/mailboxes?user=nobody", adminHeader(), "", 404, "not_found"},
		{"internal on the public port", "GET", "/internal/v1/status", adminHeader(), "", 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.expect(t, tc.status, tc.method, tc.path, tc.header, tc.body)
			if code := errorCode(t, r); code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
		})
	}
	if after := h.expect(t, http.StatusOK, "GET", "/admin/v1/members", adminHeader(), "").body; !bytes.Equal(after, membersBefore) {
		t.Errorf("members changed:\n%s\n%s", membersBefore, after)
	}
	// Removing the last voter: remove the other one first.
	other := c.Followers(t)[0]
	h.expect(t, http.StatusNoContent, "DELETE", "/admin/v1/members/"+other.ID, adminHeader(), "")
	c.Stop(t, other.Index)
	lh := hubOf(hubs, l)
	if code := errorCode(t, lh.expect(t, http.StatusConflict, "DELETE", "/admin/v1/members/"+l.ID, adminHeader(), "")); code != "last_voter" {
		t.Errorf("remove last voter: %s", code)
	}

	// With no admin token configured, admin calls are refused outright.
	closed := startHub(t, openConfig())
	if code := errorCode(t, closed.expect(t, http.StatusForbidden, "GET", "/admin/v1/status", adminHeader(), "")); code != "admin_disabled" {
		t.Errorf("no admin token configured: %s", code)
	}
	// The page itself holds no data.
	page := closed.expect(t, http.StatusOK, "GET", "/admin", nil, "")
	if !bytes.Contains(page.body, []byte("/admin/v1/status")) {
		t.Error("the admin page does not read the status")
	}
}

// TestAdminMailboxesOfOneUserPage: one user's mailboxes page by after and
// limit like the listing of all.
func TestAdminMailboxesOfOneUserPage(t *testing.T) {
	cfg := openConfig()
	cfg.AdminToken = adminToken
	c, hubs := startClusterHubs(t, 1, cfg)
	h := hubOf(hubs, c.Members[0])
	userID, secret := h.register(t)
	var want []string
	for _, label := range []string{"a", "b", "c"} {
		want = append(want, h.newMailbox(t, secret, label).MailboxID)
	}
	slices.Sort(want)
	type page struct {
		Mailboxes []struct {
			MailboxID string `json:"mailbox_id"`
		} `json:"mailboxes"`
		Next string `json:"next"`
	}
	var got []string
	after := ""
	for range 3 {
		var p page
		decodeLoose(t, h.expect(t, http.StatusOK, "GET", "/admin/v1/mailboxes?user="+userID+"&limit=2&after="+after, adminHeader(), ""), &p)
		if len(p.Mailboxes) > 2 {
			t.Fatalf("a page of %d mailboxes with limit=2", len(p.Mailboxes))
		}
		for _, m := range p.Mailboxes {
			got = append(got, m.MailboxID)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged %q, want %q", got, want)
	}
	r := h.expect(t, http.StatusBadRequest, "GET", "/admin/v1/mailboxes?user="+userID+"&limit=0", adminHeader(), "")
	if code := errorCode(t, r); code != "bad_request" {
		t.Errorf("limit=0: code %s", code)
	}
}
