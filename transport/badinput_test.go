package transport_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

// badAdminToken is the admin token of the bad-input fixture.
const badAdminToken = "bad-input-admin-token"

// badFixture is a hub with two users (each a mailbox with one message), a
// revoked mailbox of user a, and small limits so that limits are cheap to hit.
type badFixture struct {
	h            *testHub
	a, b         account
	revokedToken string
	users        []string
}

func newBadFixture(t *testing.T) *badFixture {
	t.Helper()
	h := startHub(t, transport.Config{OpenRegistration: true, PayloadLimit: 64, MaxTTL: time.Hour, MaxBatch: 3, AdminToken: badAdminToken})
	f := &badFixture{h: h, a: h.newAccount(t), b: h.newAccount(t)}
	f.revokedToken = h.newMailbox(t, f.a.secret, "old").Token
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/push/"+f.revokedToken, nil, "")
	f.users = []string{f.a.userID, f.b.userID}
	return f
}

// authCases are the ways to fail authentication on a user endpoint.
func authCases(f *badFixture, method, path string) []badInput {
	wrong := f.a.userID + "." + strings.Repeat("A", 43)
	return []badInput{
		{"no auth", method, path, nil, "", 401, "unauthorized", false},
		{"empty bearer", method, path, hdr("Authorization", "Bearer "), "", 401, "unauthorized", false},
		{"basic auth", method, path, hdr("Authorization", "Basic YTpi"), "", 401, "unauthorized", false},
		{"wrong secret", method, path, bearer(wrong), "", 401, "unauthorized", false},
		{"malformed secret", method, path, bearer("nodot"), "", 401, "unauthorized", false},
		{"mailbox token as secret", method, path, bearer(f.a.token), "", 401, "unauthorized", false},
	}
}

func TestBadInputUsers(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	runBadInputs(t, f.h, f.users, authCases(f, "DELETE", "/v1/users/me"))
}

func TestBadInputTickets(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	runBadInputs(t, f.h, f.users, authCases(f, "POST", "/v1/tickets"))
}

func TestBadInputDevices(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	cases := authCases(f, "GET", "/v1/devices")
	cases = append(cases, authCases(f, "DELETE", "/v1/devices/laptop")...)
	cases = append(cases,
		badInput{"unknown device", "DELETE", "/v1/devices/laptop", bearer(f.a.secret), "", 404, "not_found", false},
		badInput{"malformed device", "DELETE", "/v1/devices/" + strings.Repeat("d", 65), bearer(f.a.secret), "", 404, "not_found", false},
		badInput{"device id with space", "DELETE", "/v1/devices/a%20b", bearer(f.a.secret), "", 404, "not_found", false},
	)
	runBadInputs(t, f.h, f.users, cases)
}

func TestBadInputCreateMailbox(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	const path = "/v1/mailboxes"
	j := jsonHeader(f.a.secret)
	cases := authCases(f, "POST", path)
	cases = append(cases, []badInput{
		{"no content type", "POST", path, bearer(f.a.secret), `{"label":"x"}`, 415, "unsupported_media_type", false},
		{"text content type", "POST", path, func() http.Header { h := bearer(f.a.secret); h.Set("Content-Type", "text/plain"); return h }(), `{"label":"x"}`, 415, "unsupported_media_type", false},
		{"empty body", "POST", path, j, "", 400, "bad_json", false},
		{"not json", "POST", path, j, `label=x`, 400, "bad_json", false},
		{"truncated", "POST", path, j, `{"label":"x"`, 400, "bad_json", false},
		{"array", "POST", path, j, `["x"]`, 400, "bad_json", false},
		{"unknown field", "POST", path, j, `{"label":"x","token":"mine"}`, 400, "bad_json", false},
		{"trailing data", "POST", path, j, `{"label":"x"}{}`, 400, "bad_json", false},
		{"label number", "POST", path, j, `{"label":5}`, 400, "bad_json", false},
		{"invalid utf8", "POST", path, j, "{\"label\":\"\xff\"}", 400, "bad_json", false},
		{"no label", "POST", path, j, `{}`, 400, "bad_label", false},
		{"empty label", "POST", path, j, `{"label":""}`, 400, "bad_label", false},
		{"long label", "POST", path, j, `{"label":"` + strings.Repeat("é", 201) + `"}`, 400, "bad_label", false},
		{"control in label", "POST", path, j, `{"label":"a\nb"}`, 400, "bad_label", false},
		{"relative receipt url", "POST", path, j, `{"label":"x","receipt_url":"/hook"}`, 400, "bad_receipt_url", false},
		{"ftp receipt url", "POST", path, j, `{"label":"x","receipt_url":"ftp://a.example/"}`, 400, "bad_receipt_url", false},
		{"no host receipt url", "POST", path, j, `{"label":"x","receipt_url":"https:///x"}`, 400, "bad_receipt_url", false},
		{"userinfo receipt url", "POST", path, j, `{"label":"x","receipt_url":"https://u:p@a.example/"}`, 400, "bad_receipt_url", false},
		{"body over 64 KiB", "POST", path, j, `{"label":"x","receipt_url":"` + strings.Repeat("a", 64<<10) + `"}`, 413, "request_too_large", false},
	}...)
	runBadInputs(t, f.h, f.users, cases)

	// 200 characters is the longest label.
	f.h.newMailbox(t, f.a.secret, strings.Repeat("é", 200))
}

func TestBadInputMailbox(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	var cases []badInput
	cases = append(cases, authCases(f, "GET", "/v1/mailboxes")...)
	for _, m := range []string{"GET", "DELETE"} {
		p := "/v1/mailboxes/" + f.a.mailboxID
		cases = append(cases, authCases(f, m, p)...)
		cases = append(cases,
			badInput{m + " unknown", m, "/v1/mailboxes/" + mailbox.NewID(), bearer(f.a.secret), "", 404, "not_found", false},
			badInput{m + " malformed", m, "/v1/mailboxes/x", bearer(f.a.secret), "", 404, "not_found", false},
			badInput{m + " another user's", m, p, bearer(f.b.secret), "", 404, "not_found", false},
		)
	}
	runBadInputs(t, f.h, f.users, cases)
}

func TestBadInputPush(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	p := "/v1/push/" + f.a.token
	cases := []badInput{
		{"malformed token", "POST", "/v1/push/short", nil, "x", 404, "token_unknown", false},
		{"token with bad char", "POST", "/v1/push/" + strings.Repeat("a", 42) + "~", nil, "x", 404, "token_unknown", false},
		{"unknown token", "POST", "/v1/push/" + mailbox.NewToken(), nil, "x", 404, "token_unknown", true},
		{"revoked token", "POST", "/v1/push/" + f.revokedToken, nil, "x", 410, "token_revoked", true},
		{"ttl negative", "POST", p, hdr("TTL", "-1"), "x", 400, "bad_ttl", false},
		{"ttl fraction", "POST", p, hdr("TTL", "1.5"), "x", 400, "bad_ttl", false},
		{"ttl words", "POST", p, hdr("TTL", "soon"), "x", 400, "bad_ttl", false},
		{"ttl empty", "POST", p, hdr("TTL", ""), "x", 400, "bad_ttl", false},
		{"ttl over max", "POST", p, hdr("TTL", "3601"), "x", 400, "bad_ttl", false},
		{"ttl overflow", "POST", p, hdr("TTL", "18446744073709551617"), "x", 400, "bad_ttl", false},
		{"ttl twice", "POST", p, hdr("TTL", "5", "TTL", "5"), "x", 400, "bad_ttl", false},
		{"topic long", "POST", p, hdr("Topic", strings.Repeat("t", 33)), "x", 400, "bad_topic", false},
		{"topic bad char", "POST", p, hdr("Topic", "a.b"), "x", 400, "bad_topic", false},
		{"topic empty", "POST", p, hdr("Topic", ""), "x", 400, "bad_topic", false},
		{"urgency unknown", "POST", p, hdr("Urgency", "urgent"), "x", 400, "bad_urgency", false},
		{"urgency case", "POST", p, hdr("Urgency", "High"), "x", 400, "bad_urgency", false},
		{"urgency empty", "POST", p, hdr("Urgency", ""), "x", 400, "bad_urgency", false},
		{"idempotency key space", "POST", p, hdr("Idempotency-Key", "a b"), "x", 400, "bad_idempotency_key", false},
		{"idempotency key long", "POST", p, hdr("Idempotency-Key", strings.Repeat("k", 256)), "x", 400, "bad_idempotency_key", false},
		{"idempotency key non-ascii", "POST", p, hdr("Idempotency-Key", "clé"), "x", 400, "bad_idempotency_key", false},
		{"binary content type", "POST", p, hdr("Content-Type", "application/octet-stream"), "x", 415, "unsupported_media_type", false},
		{"image content type", "POST", p, hdr("Content-Type", "image/png"), "x", 415, "unsupported_media_type", false},
		{"form content type", "POST", p, hdr("Content-Type", "application/x-www-form-urlencoded"), "x=1", 415, "unsupported_media_type", false},
		{"payload over limit", "POST", p, nil, strings.Repeat("x", 65), 413, "payload_too_large", false},
		{"payload far over limit", "POST", p, nil, strings.Repeat("x", 1<<20), 413, "payload_too_large", false},
		{"payload not utf8", "POST", p, nil, "ok\xff", 400, "payload_not_utf8", false},
		{"payload bad surrogate", "POST", p, nil, "\xed\xa0\x80", 400, "payload_not_utf8", false},
	}
	runBadInputs(t, f.h, f.users, cases)

	// The limits themselves are accepted.
	f.h.publish(t, f.a.token, strings.Repeat("x", 64), hdr("TTL", "3600", "Topic", strings.Repeat("t", 32),
		"Urgency", "very-low", "Idempotency-Key", strings.Repeat("k", 255), "Content-Type", "application/json"))
	f.h.publish(t, f.a.token, "", hdr("Content-Type", "text/markdown"))
}

func TestBadInputBatch(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t) // MaxBatch 3, PayloadLimit 64: the body limit is 3*(2*64+512) bytes
	j := jsonHeader("")
	item := `{"token":"` + f.a.token + `","data":"x"}`
	cases := []badInput{
		{"no content type", "POST", "/v1/push", nil, `{"messages":[]}`, 415, "unsupported_media_type", false},
		{"text content type", "POST", "/v1/push", hdr("Content-Type", "text/plain"), `{"messages":[]}`, 415, "unsupported_media_type", false},
		{"empty body", "POST", "/v1/push", j, ``, 400, "bad_json", false},
		{"not json", "POST", "/v1/push", j, `messages`, 400, "bad_json", false},
		{"no messages", "POST", "/v1/push", j, `{}`, 400, "bad_json", false},
		{"null messages", "POST", "/v1/push", j, `{"messages":null}`, 400, "bad_json", false},
		{"messages object", "POST", "/v1/push", j, `{"messages":{}}`, 400, "bad_json", false},
		{"unknown field", "POST", "/v1/push", j, `{"messages":[],"x":1}`, 400, "bad_json", false},
		{"unknown item field", "POST", "/v1/push", j, `{"messages":[{"token":"t","data":"x","tll":5}]}`, 400, "bad_json", false},
		{"trailing data", "POST", "/v1/push", j, `{"messages":[]} x`, 400, "bad_json", false},
		{"invalid utf8", "POST", "/v1/push", j, "{\"messages\":[{\"token\":\"t\",\"data\":\"\xff\"}]}", 400, "bad_json", false},
		{"too many", "POST", "/v1/push", j, `{"messages":[` + strings.Repeat(item+",", 3) + item + `]}`, 413, "batch_too_large", false},
		{"body over limit", "POST", "/v1/push", j, `{"messages":[{"token":"t","data":"` + strings.Repeat("x", 3*(2*64+512)) + `"}]}`, 413, "request_too_large", false},
	}
	runBadInputs(t, f.h, f.users, cases)
}

func TestBadInputMessageStatus(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	p := "/v1/messages/" + f.a.messageID
	cases := []badInput{
		{"no auth", "GET", p, nil, "", 401, "unauthorized", false},
		{"malformed token", "GET", p, bearer("short"), "", 401, "unauthorized", false},
		{"unknown token", "GET", p, bearer(mailbox.NewToken()), "", 401, "unauthorized", false},
		{"user secret", "GET", p, bearer(f.a.secret), "", 401, "unauthorized", false},
		{"unknown message", "GET", "/v1/messages/" + mailbox.NewID(), bearer(f.a.token), "", 404, "not_found", false},
		{"malformed message id", "GET", "/v1/messages/x", bearer(f.a.token), "", 404, "not_found", false},
		{"another mailbox's message", "GET", p, bearer(f.b.token), "", 404, "not_found", false},
	}
	runBadInputs(t, f.h, f.users, cases)
}

func TestBadInputRevokeToken(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	cases := []badInput{
		{"malformed token", "DELETE", "/v1/push/short", nil, "", 404, "token_unknown", false},
		{"unknown token", "DELETE", "/v1/push/" + mailbox.NewToken(), nil, "", 404, "token_unknown", false},
		{"revoked token", "DELETE", "/v1/push/" + f.revokedToken, nil, "", 410, "token_revoked", false},
	}
	runBadInputs(t, f.h, f.users, cases)
}

// TestBadInputStrictJSON: on every JSON endpoint of the public API, a field
// name in another case and a repeated field are refused with 400 bad_json
// and change nothing. encoding/json took both: {"LABEL":"x"} created a
// mailbox labelled x, and a repeated field took its last value.
func TestBadInputStrictJSON(t *testing.T) {
	t.Parallel()
	f := newBadFixture(t)
	j := jsonHeader(f.a.secret)
	tok := f.a.token
	var cases []badInput
	for _, c := range []struct{ name, path, body string }{
		{"mailbox label upper case", "/v1/mailboxes", `{"LABEL":"x"}`},
		{"mailbox label title case", "/v1/mailboxes", `{"Label":"x"}`},
		{"mailbox label twice", "/v1/mailboxes", `{"label":"a","label":"b"}`},
		{"mailbox receipt_url twice", "/v1/mailboxes", `{"label":"a","receipt_url":"https://a.example/","receipt_url":"https://b.example/"}`},
		{"batch messages upper case", "/v1/push", `{"MESSAGES":[{"token":"` + tok + `","data":"x"}]}`},
		{"batch messages twice", "/v1/push", `{"messages":[],"messages":[{"token":"` + tok + `","data":"x"}]}`},
		{"batch item token upper case", "/v1/push", `{"messages":[{"TOKEN":"` + tok + `","data":"x"}]}`},
		{"batch item data twice", "/v1/push", `{"messages":[{"token":"` + tok + `","data":"x","data":"y"}]}`},
		{"batch item escaped duplicate", "/v1/push", `{"messages":[{"token":"` + tok + `","data":"x","d\u0061ta":"y"}]}`},
		{"poll hello upper case", "/v1/poll", `{"HELLO":{"ticket":"t","device":"d"},"rid":1}`},
		{"poll rid twice", "/v1/poll", `{"hello":{"ticket":"t","device":"d"},"rid":1,"rid":2}`},
		{"poll hello ticket twice", "/v1/poll", `{"hello":{"ticket":"t","ticket":"u","device":"d"},"rid":1}`},
		{"ack sid upper case", "/v1/ack", `{"SID":"s","ack":1}`},
		{"ack twice", "/v1/ack", `{"sid":"s","ack":1,"ack":2}`},
	} {
		cases = append(cases, badInput{c.name, "POST", c.path, j, c.body, 400, "bad_json", false})
	}
	// The operators' JSON endpoints too.
	admin := jsonHeader(badAdminToken)
	cases = append(cases,
		badInput{"admin join id upper case", "POST", "/admin/v1/members", admin, `{"ID":"n2","raft_addr":"127.0.0.1:1"}`, 400, "bad_json", false},
		badInput{"admin join id twice", "POST", "/admin/v1/members", admin, `{"id":"n2","id":"n3","raft_addr":"127.0.0.1:1"}`, 400, "bad_json", false},
		badInput{"admin transfer id upper case", "POST", "/admin/v1/transfer-leadership", admin, `{"ID":"n2"}`, 400, "bad_json", false},
		badInput{"admin transfer id twice", "POST", "/admin/v1/transfer-leadership", admin, `{"id":"a","id":"b"}`, 400, "bad_json", false},
	)
	runBadInputs(t, f.h, f.users, cases)
}
