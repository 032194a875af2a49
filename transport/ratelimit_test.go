package transport_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

// The rate limits, over a real node and real loopback connections. A
// client's address is chosen by dialling from it (127.0.0.2, 127.0.0.3:
// Linux routes all of 127/8 to lo). Buckets refill at one event a million
// seconds, so that what a test spends stays spent: no clocks, no sleeps.

// slow is a limit of burst events that never refills within a test.
func slow(burst int) transport.Rate { return transport.Rate{PerSecond: 1e-6, Burst: burst} }

// peer is an HTTP client whose connections come from one loopback address.
type peer struct {
	h *testHub
	c *http.Client
}

func (h *testHub) from(t *testing.T, ip string) peer {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return peer{h: h, c: &http.Client{Transport: tr}}
}

func (p peer) do(t *testing.T, method, path string, header http.Header, body string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.h.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := p.c.Do(req)
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

func (p peer) expect(t *testing.T, status int, method, path string, header http.Header, body string) response {
	t.Helper()
	r := p.do(t, method, path, header, body)
	if r.status != status {
		t.Fatalf("%s %s: got %d %s, want %d", method, path, r.status, r.body, status)
	}
	return r
}

// expectLimited checks that a request is refused 429 rate_limited with a
// Retry-After in whole seconds, and that nothing was proposed for it.
func (p peer) expectLimited(t *testing.T, method, path string, header http.Header, body string) {
	t.Helper()
	before := p.h.store.Applied()
	r := p.do(t, method, path, header, body)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("%s %s: got %d %s, want 429", method, path, r.status, r.body)
	}
	if code := errorCode(t, r); code != "rate_limited" {
		t.Fatalf("%s %s: code %q, want rate_limited", method, path, code)
	}
	checkRetryAfter(t, r.header)
	if after := p.h.store.Applied(); after != before {
		t.Fatalf("%s %s: refused, but the applied index moved from %d to %d", method, path, before, after)
	}
}

// checkRetryAfter checks Retry-After is whole seconds, at least 1, and
// about the bucket's refill (a million seconds here), not a constant.
func checkRetryAfter(t *testing.T, h http.Header) {
	t.Helper()
	ra := h.Get("Retry-After")
	n, err := strconv.ParseInt(ra, 10, 64)
	if err != nil || n < 1 {
		t.Fatalf("Retry-After %q, want whole seconds >= 1", ra)
	}
	if n < 900_000 {
		t.Fatalf("Retry-After %d s, want the bucket's delay (about 1,000,000 s)", n)
	}
}

// limitsConfig is open registration with the given limits.
func limitsConfig(l transport.RateLimits) transport.Config {
	cfg := openConfig()
	cfg.RateLimits = l
	return cfg
}

func TestRateLimitRegistrationPerAddress(t *testing.T) {
	cfg := limitsConfig(transport.RateLimits{Register: slow(3)})
	cfg.AdminToken = "admin-token-for-the-app-backend"
	h := startHub(t, cfg)
	a, b := h.from(t, "127.0.0.2"), h.from(t, "127.0.0.3")
	for range 3 {
		a.expect(t, http.StatusCreated, "POST", "/v1/users", nil, "")
	}
	a.expectLimited(t, "POST", "/v1/users", nil, "")
	a.expectLimited(t, "POST", "/v1/users", nil, "") // still: a refusal spends nothing, and nothing refills
	b.expect(t, http.StatusCreated, "POST", "/v1/users", nil, "")
	// An app's backend registering its users with the admin token is not
	// limited by address.
	for range 4 {
		a.expect(t, http.StatusCreated, "POST", "/v1/users", bearer(cfg.AdminToken), "")
	}
}

func TestRateLimitFailedAuthenticationBlocksTheAddress(t *testing.T) {
	cfg := limitsConfig(transport.RateLimits{AuthFailure: slow(4)})
	cfg.AdminToken = "the-admin-token"
	h := startHub(t, cfg)
	acct := h.newAccount(t)
	a, b := h.from(t, "127.0.0.2"), h.from(t, "127.0.0.3")

	// A publish to an unknown token is not a guess that counts (404).
	a.expect(t, http.StatusNotFound, "POST", "/v1/push/"+mailbox.NewToken(), nil, "x")
	// Four wrong credentials: user secrets, the admin token, a mailbox
	// token.
	a.expect(t, http.StatusUnauthorized, "GET", "/v1/devices", bearer(mailbox.NewSecret(acct.userID)), "")
	a.expect(t, http.StatusUnauthorized, "GET", "/admin/v1/status", bearer("not-the-admin-token"), "")
	a.expect(t, http.StatusUnauthorized, "GET", "/v1/messages/"+acct.messageID, bearer(mailbox.NewToken()), "")
	a.expect(t, http.StatusUnauthorized, "POST", "/v1/tickets", bearer("not-a-secret"), "")

	// Over the limit, the address is refused whatever it brings, before
	// its credentials are looked at.
	a.expectLimited(t, "GET", "/v1/devices", bearer(acct.secret), "")
	a.expectLimited(t, "GET", "/admin/v1/status", bearer(cfg.AdminToken), "")
	a.expectLimited(t, "POST", "/v1/push/"+acct.token, nil, "hello")
	a.expectLimited(t, "POST", "/v1/tickets", bearer(acct.secret), "")
	// What takes no credentials still answers.
	a.expect(t, http.StatusOK, "GET", "/healthz", nil, "")

	// Another address is not blocked.
	b.expect(t, http.StatusOK, "GET", "/v1/devices", bearer(acct.secret), "")
	b.expect(t, http.StatusCreated, "POST", "/v1/push/"+acct.token, nil, "hello")

	body := string(h.expect(t, http.StatusOK, "GET", "/metrics", nil, "").body)
	if got := metricValue(body, `hub_rate_limited_total{limit="auth_failure"}`); got != "4" {
		t.Errorf(`hub_rate_limited_total{limit="auth_failure"} = %q, want 4`, got)
	}
	if got := metricValue(body, "hub_auth_failures_total"); got != "4" {
		t.Errorf("hub_auth_failures_total = %q, want 4", got)
	}
}

func TestRateLimitTicketsAndMailboxesPerUser(t *testing.T) {
	h := startHub(t, limitsConfig(transport.RateLimits{Ticket: slow(2), Mailbox: slow(2)}))
	one, two := h.newAccount(t), h.newAccount(t) // one mailbox each: one left
	p := h.from(t, "127.0.0.2")                  // both users on one address

	for range 2 {
		p.expect(t, http.StatusCreated, "POST", "/v1/tickets", bearer(one.secret), "")
	}
	p.expectLimited(t, "POST", "/v1/tickets", bearer(one.secret), "")
	p.expect(t, http.StatusCreated, "POST", "/v1/tickets", bearer(two.secret), "")

	mb := `{"label":"more"}`
	p.expect(t, http.StatusCreated, "POST", "/v1/mailboxes", jsonHeader(one.secret), mb)
	p.expectLimited(t, "POST", "/v1/mailboxes", jsonHeader(one.secret), mb)
	p.expect(t, http.StatusCreated, "POST", "/v1/mailboxes", jsonHeader(two.secret), mb)
	if mbs, err := h.store.Mailboxes(one.userID); err != nil || len(mbs) != 2 {
		t.Fatalf("user one has %d mailboxes (%v), want 2: the refused one was made", len(mbs), err)
	}

	// A stranger with a made-up secret naming user two's id spends nothing
	// of theirs: only a secret that checks out spends its user's bucket.
	forged := mailbox.NewSecret(two.userID)
	for range 5 {
		p.expect(t, http.StatusUnauthorized, "POST", "/v1/tickets", bearer(forged), "")
	}
	p.expect(t, http.StatusCreated, "POST", "/v1/tickets", bearer(two.secret), "")
}

// batchResults posts a batch and returns its items' status and code.
func (p peer) batch(t *testing.T, tokens ...string) ([]int, []string, response) {
	t.Helper()
	type item struct {
		Token string `json:"token"`
		Data  string `json:"data"`
	}
	var req struct {
		Messages []item `json:"messages"`
	}
	for i, tok := range tokens {
		req.Messages = append(req.Messages, item{tok, "batch " + strconv.Itoa(i)})
	}
	body, _ := json.Marshal(req)
	r := p.expect(t, http.StatusOK, "POST", "/v1/push", jsonHeader(""), string(body))
	var out struct {
		Results []struct {
			Status    int    `json:"status"`
			ID        string `json:"id"`
			ExpiresAt string `json:"expires_at"`
			Error     *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	decode(t, r, &out)
	var status []int
	var codes []string
	for _, res := range out.Results {
		status = append(status, res.Status)
		code := ""
		if res.Error != nil {
			code = res.Error.Code
		}
		codes = append(codes, code)
	}
	return status, codes, r
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRateLimitPublishPerToken(t *testing.T) {
	h := startHub(t, limitsConfig(transport.RateLimits{PublishToken: slow(3)}))
	acct := h.newAccount(t) // one publish to its token: two left
	other := h.newMailbox(t, acct.secret, "other")
	a, b := h.from(t, "127.0.0.2"), h.from(t, "127.0.0.3")

	a.expect(t, http.StatusCreated, "POST", "/v1/push/"+acct.token, nil, "two")
	a.expect(t, http.StatusCreated, "POST", "/v1/push/"+acct.token, nil, "three")
	before := h.snapshot(t, acct.userID)
	b.expectLimited(t, "POST", "/v1/push/"+acct.token, nil, "four") // per token, whatever the address
	if after := h.snapshot(t, acct.userID); len(after.users[acct.userID].messages) != len(before.users[acct.userID].messages) {
		t.Fatal("a refused publish was stored")
	}
	a.expect(t, http.StatusCreated, "POST", "/v1/push/"+other.Token, nil, "other one")

	// A batch counts its items per token, in order: other has two left.
	status, codes, r := a.batch(t, other.Token, acct.token, other.Token, other.Token)
	if want := []int{201, 429, 201, 429}; !equalInts(status, want) {
		t.Fatalf("batch statuses %v (%v), want %v", status, codes, want)
	}
	if codes[1] != "rate_limited" || codes[3] != "rate_limited" {
		t.Fatalf("batch codes %v, want rate_limited for the refused items", codes)
	}
	checkRetryAfter(t, r.header)
	msgs, err := h.store.Messages(acct.userID, 0, 100, 0)
	if err != nil || len(msgs) != 6 { // first, two, three, other one, and the batch's two
		t.Fatalf("%d messages stored (%v), want 6", len(msgs), err)
	}

	// Made-up tokens get no bucket: the store does not know them.
	for range 50 {
		a.expect(t, http.StatusNotFound, "POST", "/v1/push/"+mailbox.NewToken(), nil, "x")
	}
	body := string(h.expect(t, http.StatusOK, "GET", "/metrics", nil, "").body)
	if got := metricValue(body, `hub_rate_limit_keys{limit="publish_token"}`); got != "2" {
		t.Errorf(`hub_rate_limit_keys{limit="publish_token"} = %q, want 2 (the two real tokens)`, got)
	}
	if got := metricValue(body, `hub_rate_limited_total{limit="publish_token"}`); got != "3" {
		t.Errorf(`hub_rate_limited_total{limit="publish_token"} = %q, want 3 (one single, two batch items)`, got)
	}
}

func TestRateLimitPublishPerAddress(t *testing.T) {
	h := startHub(t, limitsConfig(transport.RateLimits{PublishAddr: slow(4)}))
	acct := h.newAccount(t) // published from 127.0.0.1
	other := h.newMailbox(t, acct.secret, "other")
	a, b := h.from(t, "127.0.0.2"), h.from(t, "127.0.0.3")

	a.expect(t, http.StatusCreated, "POST", "/v1/push/"+acct.token, nil, "one")
	a.expect(t, http.StatusCreated, "POST", "/v1/push/"+other.Token, nil, "two")
	// Two left for the address: the batch's first two valid items go.
	status, codes, r := a.batch(t, acct.token, "not-a-token", other.Token, acct.token)
	if want := []int{201, 404, 201, 429}; !equalInts(status, want) {
		t.Fatalf("batch statuses %v (%v), want %v", status, codes, want)
	}
	if codes[3] != "rate_limited" {
		t.Fatalf("batch codes %v, want rate_limited last", codes)
	}
	checkRetryAfter(t, r.header)
	// Now empty: single publishes and whole batches are refused.
	a.expectLimited(t, "POST", "/v1/push/"+acct.token, nil, "refused")
	a.expectLimited(t, "POST", "/v1/push", jsonHeader(""), `{"messages":[{"token":"`+acct.token+`","data":"x"}]}`)
	// Another address is not.
	b.expect(t, http.StatusCreated, "POST", "/v1/push/"+acct.token, nil, "from b")
	b.batch(t, acct.token)

	msgs, err := h.store.Messages(acct.userID, 0, 100, 0)
	if err != nil || len(msgs) != 7 { // first, one, two, the batch's two, from b, b's batch
		t.Fatalf("%d messages stored (%v), want 7", len(msgs), err)
	}
	body := string(h.expect(t, http.StatusOK, "GET", "/metrics", nil, "").body)
	if got := metricValue(body, `hub_rate_limited_total{limit="publish_address"}`); got != "3" {
		t.Errorf(`hub_rate_limited_total{limit="publish_address"} = %q, want 3`, got)
	}
}

func TestRateLimitsOffByDefault(t *testing.T) {
	h := startHub(t, openConfig())
	body := string(h.expect(t, http.StatusOK, "GET", "/metrics", nil, "").body)
	if strings.Contains(body, "hub_rate_limited_total") {
		t.Fatal("a Server with zero RateLimits exports limits it does not have")
	}
	for range 30 { // more than any default burst
		h.register(t)
	}
}

// BenchmarkRateLimitPublish is BenchmarkPublish with every rate limit on
// (hubd's defaults, raised as loadtest/loose-limits.sh raises them so that
// nothing is refused): against BenchmarkPublish, what the limits cost a
// publish over a real node.
func BenchmarkRateLimitPublish(b *testing.B) {
	l := transport.DefaultRateLimits()
	loose := transport.Rate{PerSecond: 1e9, Burst: 1e9}
	l.Register, l.AuthFailure, l.Ticket, l.Mailbox, l.PublishToken, l.PublishAddr = loose, loose, loose, loose, loose, loose
	benchPublish(b, startBenchHubWith(b, 64, transport.Config{RateLimits: l}))
}
