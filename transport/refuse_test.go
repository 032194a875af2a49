package transport_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// Floods of refusals that this node can make from its own state: each must
// be answered with its documented code and cost no raft entry.

// logMark is the raft log's extent on a set of nodes.
type logMark struct {
	last, applied []uint64
	size          []int64 // raft.db bytes; -1 where the test does not know the file
}

func markLog(t *testing.T, nodes []*cluster.Node, stores []*mailbox.Store, dbs []string) logMark {
	t.Helper()
	var m logMark
	for i, n := range nodes {
		st := n.Stats()
		m.last = append(m.last, st.LastIndex)
		m.applied = append(m.applied, stores[i].Applied())
		size := int64(-1)
		if dbs != nil {
			fi, err := os.Stat(dbs[i])
			if err != nil {
				t.Fatal(err)
			}
			size = fi.Size()
		}
		m.size = append(m.size, size)
	}
	return m
}

func (m logMark) String() string {
	return fmt.Sprintf("last %v applied %v raft.db %v", m.last, m.applied, m.size)
}

// strangerFlood sends, through h, publishes (single and batch) to
// well-formed unknown tokens and to a revoked one, user calls with wrong
// secrets, and hellos with unknown tickets on the three device transports,
// checking each answer's status and code.
func strangerFlood(t *testing.T, h *testHub, userID, revoked string) {
	t.Helper()
	const n = 60
	code := func(r response, status int, want string) {
		t.Helper()
		if r.status != status || errorCode(t, r) != want {
			t.Fatalf("got %s, want %d %s", r, status, want)
		}
	}
	for i := range n {
		code(h.do(t, "POST", "/v1/push/"+mailbox.NewToken(), nil, "hi"), http.StatusNotFound, "token_unknown")
		if i%10 == 0 {
			code(h.do(t, "POST", "/v1/push/"+revoked, nil, "hi"), http.StatusGone, "token_revoked")
		}
	}
	for range 3 {
		var b strings.Builder
		b.WriteString(`{"messages":[`)
		for i := range 200 {
			if i > 0 {
				b.WriteByte(',')
			}
			tok := mailbox.NewToken()
			if i%50 == 0 {
				tok = revoked
			}
			fmt.Fprintf(&b, `{"token":%q,"data":"hi"}`, tok)
		}
		b.WriteString(`]}`)
		r := h.expect(t, http.StatusOK, "POST", "/v1/push", jsonHeader(""), b.String())
		var out struct {
			Results []struct {
				Status int `json:"status"`
				Error  struct {
					Code string `json:"code"`
				} `json:"error"`
			} `json:"results"`
		}
		if err := json.Unmarshal(r.body, &out); err != nil || len(out.Results) != 200 {
			t.Fatalf("batch answer: %v %s", err, r.body)
		}
		for i, res := range out.Results {
			want, wantCode := http.StatusNotFound, "token_unknown"
			if i%50 == 0 {
				want, wantCode = http.StatusGone, "token_revoked"
			}
			if res.Status != want || res.Error.Code != wantCode {
				t.Fatalf("batch item %d: %d %s, want %d %s", i, res.Status, res.Error.Code, want, wantCode)
			}
		}
	}
	wrong := mailbox.NewSecret(userID) // the right user, the wrong secret
	stranger := mailbox.NewSecret(mailbox.NewID())
	for i := range n {
		sec := wrong
		if i%2 == 1 {
			sec = stranger
		}
		code(h.do(t, "POST", "/v1/tickets", bearer(sec), ""), http.StatusUnauthorized, "unauthorized")
		code(h.do(t, "POST", "/v1/mailboxes", jsonHeader(sec), `{"label":"x"}`), http.StatusUnauthorized, "unauthorized")
	}
	for range n / 3 {
		tk := mailbox.NewToken()
		body := fmt.Sprintf(`{"hello":{"ticket":%q,"device":"tv"},"rid":1}`, tk)
		code(h.do(t, "POST", "/v1/poll", pollJSON, body), http.StatusUnauthorized, "ticket_invalid")
		code(h.do(t, "GET", "/v1/sse?device=tv&ticket="+mailbox.NewToken(), nil, ""), http.StatusUnauthorized, "ticket_invalid")
		c := h.dialWS(t)
		wsSend(t, c, fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"tv"}`, mailbox.NewToken()))
		for {
			_, err := wsRecv(t, c)
			if err != nil {
				if got := websocket.CloseStatus(err); got != 4401 {
					t.Fatalf("ws hello with an unknown ticket: %v, want close 4401", err)
				}
				break
			}
		}
	}
}

// revokedToken makes a mailbox for secret through h and revokes its token.
func revokedToken(t *testing.T, h *testHub, secret string) string {
	t.Helper()
	mb := h.newMailbox(t, secret, "gone")
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/push/"+mb.Token, nil, "")
	return mb.Token
}

func TestStrangerFloodCostsNoLogEntryOneNode(t *testing.T) {
	h := startHub(t, openConfig())
	userID, secret := h.register(t)
	revoked := revokedToken(t, h, secret)
	nodes, stores := []*cluster.Node{h.node}, []*mailbox.Store{h.store}
	before := markLog(t, nodes, stores, nil)
	strangerFlood(t, h, userID, revoked)
	if after := markLog(t, nodes, stores, nil); after.String() != before.String() {
		t.Fatalf("the flood moved the log: before %s, after %s", before, after)
	}
	// The refusals refused only strangers.
	h.publish(t, h.newMailbox(t, secret, "app").Token, "still works", nil)
}

func TestStrangerFloodCostsNoLogEntryOnAFollower(t *testing.T) {
	var syncs atomic.Int64
	held := make([]*heldApplies, 3)
	var onSync atomic.Pointer[func()] // called when a sync call reaches a node
	c, hubs := startClusterHubsWith(t, 3, openConfig(), clusterHooks{
		applied: func(i int, h *hub.Hub) cluster.Applied {
			held[i] = &heldApplies{next: h}
			return held[i]
		},
		internal: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/internal/v1/sync" {
					syncs.Add(1)
					if f := onSync.Load(); f != nil {
						(*f)()
					}
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	leader := hubs[c.Leader(t).Index]
	follower := hubs[c.Followers(t)[0].Index]
	fheld := held[c.Followers(t)[0].Index]
	userID, secret := leader.register(t)
	revoked := revokedToken(t, leader, secret)
	c.Sync(t)

	var nodes []*cluster.Node
	var stores []*mailbox.Store
	var dbs []string
	for _, m := range c.Members {
		nodes, stores = append(nodes, m.Node), append(stores, m.Store)
		dbs = append(dbs, filepath.Join(c.Config(m, false).Dir, "raft.db"))
	}
	before := markLog(t, nodes, stores, dbs)
	syncs.Store(0)
	strangerFlood(t, follower, userID, revoked)
	if after := markLog(t, nodes, stores, dbs); after.String() != before.String() {
		t.Fatalf("the flood moved the log: before %s, after %s", before, after)
	}
	// Each miss caught up before it concluded "unknown" (a batch shares
	// one catch-up for all its items).
	if syncs.Load() == 0 {
		t.Fatal("the follower refused unknown credentials without catching up")
	}
	t.Logf("%d catch-ups for the flood", syncs.Load())

	// Made through the leader and used at once through the follower,
	// whose store does not have it yet (its applies are held until its
	// catch-up reaches the leader): a token publishes, singly and in a
	// batch, and a ticket opens a session.
	behind := func(make func(), use func()) {
		t.Helper()
		open := fheld.shut()
		defer open()
		onSync.Store(&open)
		defer onSync.Store(nil)
		make()
		use()
	}
	var mb newMailboxJSON
	behind(func() { mb = leader.newMailbox(t, secret, "fresh") }, func() {
		follower.publish(t, mb.Token, "made a moment ago", nil)
	})
	behind(func() { mb = leader.newMailbox(t, secret, "fresh") }, func() {
		body := fmt.Sprintf(`{"messages":[{"token":%q,"data":"batch"},{"token":%q,"data":"x"}]}`, mb.Token, mailbox.NewToken())
		r := follower.expect(t, http.StatusOK, "POST", "/v1/push", jsonHeader(""), body)
		if !strings.HasPrefix(string(r.body), `{"results":[{"status":201,`) || !strings.Contains(string(r.body), `"token_unknown"`) {
			t.Fatalf("batch to a fresh token and an unknown one through the follower: %s", r.body)
		}
	})
	var tk string
	behind(func() { tk = leader.ticket(t, secret) }, func() {
		body := fmt.Sprintf(`{"hello":{"ticket":%q,"device":"tv"},"rid":1}`, tk)
		follower.expect(t, http.StatusOK, "POST", "/v1/poll", pollJSON, body)
	})
}
