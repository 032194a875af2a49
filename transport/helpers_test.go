package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

// testHub is one real node (raft, badger) behind the transport's handler on
// a real listener.
type testHub struct {
	srv   *httptest.Server
	store *mailbox.Store
	node  *cluster.Node
	hub   *hub.Hub
	api   *transport.Server
	cfg   transport.Config
}

// startHub starts a node and the API over it. The expiry loop is slowed to
// an hour so that no Expire command moves the applied index during a test.
func startHub(t *testing.T, cfg transport.Config) *testHub {
	t.Helper()
	return startHubWith(t, cfg, hub.Config{})
}

// startHubWith is startHub with a hub configuration, and options of the
// node (applied after the defaults).
func startHubWith(t *testing.T, cfg transport.Config, hcfg hub.Config, opts ...clustertest.Option) *testHub {
	t.Helper()
	var st hubStore
	h := hub.New(hcfg, &st)
	opts = append([]clustertest.Option{clustertest.WithConfig(func(c *cluster.Config) {
		c.ExpireEvery = time.Hour
	}), clustertest.WithApplied(h)}, opts...)
	store, node := clustertest.Start(t, opts...)
	st.Store = store
	h.Start(node)
	api := transport.New(cfg, store, node, h)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		h.Close(ctx)
		if err := api.Close(ctx); err != nil {
			t.Errorf("close transport: %v", err)
		}
		srv.Close()
	})
	return &testHub{srv: srv, store: store, node: node, hub: h, api: api, cfg: cfg}
}

// hubStore lets the hub be built before the store it reads exists.
type hubStore struct{ *mailbox.Store }

// openConfig is the embedded default: open registration.
func openConfig() transport.Config { return transport.Config{OpenRegistration: true} }

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	return http.StatusText(r.status) + " " + string(r.body)
}

// hdr builds a header from key, value pairs.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func bearer(cred string) http.Header { return hdr("Authorization", "Bearer "+cred) }

// jsonHeader is a Bearer header with Content-Type: application/json.
func jsonHeader(cred string) http.Header {
	h := hdr("Content-Type", "application/json")
	if cred != "" {
		h.Set("Authorization", "Bearer "+cred)
	}
	return h
}

// do sends one request and reads the whole answer.
func (h *testHub) do(t *testing.T, method, path string, header http.Header, body string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// expect sends a request and fails unless it is answered with status.
func (h *testHub) expect(t *testing.T, status int, method, path string, header http.Header, body string) response {
	t.Helper()
	r := h.do(t, method, path, header, body)
	if r.status != status {
		t.Fatalf("%s %s: got %d %s, want %d", method, path, r.status, r.body, status)
	}
	return r
}

// decode unmarshals a response body, strictly.
func decode(t *testing.T, r response, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s into %T: %v", r.body, v, err)
	}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorCode checks that r is a well-formed JSON error and returns its code.
func errorCode(t *testing.T, r response) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error with Content-Type %q: %s", ct, r.body)
	}
	var e errorBody
	decode(t, r, &e)
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body without code or message: %s", r.body)
	}
	return e.Error.Code
}

// Wire shapes, as a client reads them.
type userJSON struct {
	UserID string `json:"user_id"`
	Secret string `json:"secret"`
}

type newMailboxJSON struct {
	MailboxID     string `json:"mailbox_id"`
	Label         string `json:"label"`
	Token         string `json:"token"`
	PushURL       string `json:"push_url"`
	ReceiptURL    string `json:"receipt_url"`
	ReceiptSecret string `json:"receipt_secret"`
	CreatedAt     string `json:"created_at"`
}

type mailboxJSON struct {
	MailboxID  string `json:"mailbox_id"`
	Label      string `json:"label"`
	ReceiptURL string `json:"receipt_url"`
	CreatedAt  string `json:"created_at"`
	Revoked    bool   `json:"revoked"`
	RevokedAt  string `json:"revoked_at"`
}

type publishedJSON struct {
	ID        string `json:"id"`
	ExpiresAt string `json:"expires_at"`
}

type statusJSON struct {
	ID          string `json:"id"`
	MailboxID   string `json:"mailbox_id"`
	Seq         uint64 `json:"seq"`
	Topic       string `json:"topic"`
	State       string `json:"state"`
	CreatedAt   string `json:"created_at"`
	ExpiresAt   string `json:"expires_at"`
	FinalAt     string `json:"final_at"`
	DeliveredTo string `json:"delivered_to"`
	ReplacedBy  string `json:"replaced_by"`
	Receipt     *struct {
		ID              string `json:"id"`
		Webhook         string `json:"webhook"`
		WebhookFailedAt string `json:"webhook_failed_at"`
	} `json:"receipt"`
}

// wireTime parses a time as the API writes it, checking the format.
func wireTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse("2006-01-02T15:04:05.000Z", s)
	if err != nil {
		t.Fatalf("time %q is not RFC 3339 UTC with milliseconds: %v", s, err)
	}
	return tm
}

// account is a user with one live mailbox and one message in it.
type account struct {
	userID, secret string
	mailboxID      string
	token          string
	messageID      string
}

// register creates a user through the API.
func (h *testHub) register(t *testing.T) (userID, secret string) {
	t.Helper()
	var u userJSON
	decode(t, h.expect(t, http.StatusCreated, "POST", "/v1/users", nil, ""), &u)
	return u.UserID, u.Secret
}

// newMailbox creates a mailbox through the API.
func (h *testHub) newMailbox(t *testing.T, secret, label string) newMailboxJSON {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"label": label})
	var mb newMailboxJSON
	decode(t, h.expect(t, http.StatusCreated, "POST", "/v1/mailboxes", jsonHeader(secret), string(body)), &mb)
	return mb
}

// publish posts data to token through the API and returns the answer's body.
func (h *testHub) publish(t *testing.T, token, data string, header http.Header) publishedJSON {
	t.Helper()
	var p publishedJSON
	decode(t, h.expect(t, http.StatusCreated, "POST", "/v1/push/"+token, header, data), &p)
	return p
}

// newAccount registers a user with a mailbox holding one message.
func (h *testHub) newAccount(t *testing.T) account {
	t.Helper()
	var a account
	a.userID, a.secret = h.register(t)
	mb := h.newMailbox(t, a.secret, "app")
	a.mailboxID, a.token = mb.MailboxID, mb.Token
	a.messageID = h.publish(t, a.token, "first", nil).ID
	return a
}

// userState is everything a user owns, as the store reads it.
type userState struct {
	mailboxes []mailbox.Mailbox
	messages  []mailbox.Message
	devices   []mailbox.Device
}

func (h *testHub) userState(t *testing.T, userID string) userState {
	t.Helper()
	var s userState
	var err error
	if s.mailboxes, err = h.store.Mailboxes(userID); err != nil {
		t.Fatal(err)
	}
	if s.messages, err = h.store.Messages(userID, 0, 10000, 0); err != nil {
		t.Fatal(err)
	}
	if s.devices, err = h.store.Devices(userID); err != nil {
		t.Fatal(err)
	}
	return s
}

// snapshot is the state a refused request must leave unchanged.
type snapshot struct {
	applied uint64
	users   map[string]userState
}

func (h *testHub) snapshot(t *testing.T, users ...string) snapshot {
	t.Helper()
	s := snapshot{applied: h.store.Applied(), users: map[string]userState{}}
	for _, u := range users {
		s.users[u] = h.userState(t, u)
	}
	return s
}

// badInput is one request that must be refused without changing state.
type badInput struct {
	name       string
	method     string
	path       string
	header     http.Header
	body       string
	wantStatus int
	wantCode   string
	// proposes is set when the refusal comes from the state machine, so a
	// (refused) command enters the log and the applied index moves.
	proposes bool
}

// runBadInputs sends each case and checks its status, its code and that the
// users' state (and, unless the case proposes, the applied index) did not change.
func runBadInputs(t *testing.T, h *testHub, users []string, cases []badInput) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot(t, users...)
			r := h.do(t, tc.method, tc.path, tc.header, tc.body)
			if r.status != tc.wantStatus {
				t.Fatalf("%s %s: got %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.wantStatus)
			}
			if got := errorCode(t, r); got != tc.wantCode {
				t.Fatalf("%s %s: code %q, want %q (%s)", tc.method, tc.path, got, tc.wantCode, r.body)
			}
			after := h.snapshot(t, users...)
			if !tc.proposes && after.applied != before.applied {
				t.Errorf("applied index moved from %d to %d: a command was proposed", before.applied, after.applied)
			}
			if !reflect.DeepEqual(after.users, before.users) {
				t.Errorf("state changed:\nbefore %+v\nafter  %+v", before.users, after.users)
			}
		})
	}
}
