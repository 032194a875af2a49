package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/transport"
)

// Wire shapes of the device transports, as a client reads them.
type msgJSON struct {
	Type      string `json:"type"`
	Seq       uint64 `json:"seq"`
	ID        string `json:"id"`
	Mailbox   string `json:"mailbox"`
	Topic     string `json:"topic"`
	Urgency   string `json:"urgency"`
	TS        string `json:"ts"`
	ExpiresAt string `json:"expires_at"`
	Data      string `json:"data"`
}

type pollWelcomeJSON struct {
	Device     string `json:"device"`
	From       uint64 `json:"from"`
	LastSeq    uint64 `json:"last_seq"`
	Inactivity int    `json:"inactivity"`
	WaitMax    int    `json:"wait_max"`
}

type pollAnswerJSON struct {
	Sid        string           `json:"sid"`
	Rid        uint64           `json:"rid"`
	Welcome    *pollWelcomeJSON `json:"welcome"`
	Messages   []msgJSON        `json:"messages"`
	Terminated bool             `json:"terminated"`
}

// datas returns the payloads of msgs, in order.
func datas(msgs []msgJSON) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, m.Data)
	}
	return out
}

// seqs returns the seqs of msgs, in order.
func seqs(msgs []msgJSON) []uint64 {
	out := []uint64{}
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

func eq[T comparable](a, b []T) bool {
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

// send is do for goroutines other than the test's: it returns its error.
func (h *testHub) send(ctx context.Context, method, path string, header http.Header, body string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}, err
}

// cursor returns the acknowledged seq of a device, as GET /v1/devices says.
func (h *testHub) cursor(t *testing.T, secret, device string) uint64 {
	t.Helper()
	var devs struct {
		Devices []struct {
			DeviceID  string `json:"device_id"`
			Cursor    uint64 `json:"cursor"`
			LastSeen  string `json:"last_seen"`
			CreatedAt string `json:"created_at"`
		} `json:"devices"`
	}
	decode(t, h.expect(t, http.StatusOK, "GET", "/v1/devices", bearer(secret), ""), &devs)
	for _, d := range devs.Devices {
		if d.DeviceID == device {
			return d.Cursor
		}
	}
	t.Fatalf("no device %q", device)
	return 0
}

// pollJSON is the JSON header of a poll request.
var pollJSON = hdr("Content-Type", "application/json")

// pollDevice is a long-poll client of one session.
type pollDevice struct {
	h       *testHub
	sid     string
	rid     uint64 // the last rid sent
	welcome pollWelcomeJSON
	opened  response  // the answer to the first request
	first   []msgJSON // the messages in it
}

// pollOpen opens a session for device with a new ticket; ack < 0 sends none.
func (h *testHub) pollOpen(t *testing.T, secret, device string, ack int) *pollDevice {
	t.Helper()
	hello := map[string]any{"ticket": h.ticket(t, secret), "device": device}
	if ack >= 0 {
		hello["ack"] = ack
	}
	body, _ := json.Marshal(map[string]any{"hello": hello, "rid": 1000})
	r := h.expect(t, http.StatusOK, "POST", "/v1/poll", pollJSON, string(body))
	var a pollAnswerJSON
	decode(t, r, &a)
	if len(a.Sid) != 43 || a.Rid != 1000 || a.Welcome == nil || a.Messages == nil {
		t.Fatalf("first answer: %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("first answer without Cache-Control: no-store")
	}
	return &pollDevice{h: h, sid: a.Sid, rid: 1000, welcome: *a.Welcome, opened: r, first: a.Messages}
}

// body is a request of this session with rid; ack < 0 sends none, wait < 0
// leaves the default.
func (d *pollDevice) body(rid uint64, ack, wait int) string {
	req := map[string]any{"sid": d.sid, "rid": rid}
	if ack >= 0 {
		req["ack"] = ack
	}
	if wait >= 0 {
		req["wait"] = wait
	}
	b, _ := json.Marshal(req)
	return string(b)
}

// raw sends a request with rid and returns the answer as it is.
func (d *pollDevice) raw(t *testing.T, rid uint64, ack, wait int) response {
	t.Helper()
	return d.h.do(t, "POST", "/v1/poll", pollJSON, d.body(rid, ack, wait))
}

// next sends the next rid and returns its messages; it fails unless 200.
func (d *pollDevice) next(t *testing.T, ack, wait int) []msgJSON {
	t.Helper()
	d.rid++
	r := d.raw(t, d.rid, ack, wait)
	return d.check(t, r, d.rid)
}

// check decodes a 200 answer to rid.
func (d *pollDevice) check(t *testing.T, r response, rid uint64) []msgJSON {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("rid %d: %d %s", rid, r.status, r.body)
	}
	var a pollAnswerJSON
	decode(t, r, &a)
	if a.Sid != d.sid || a.Rid != rid || a.Welcome != nil || a.Messages == nil {
		t.Fatalf("rid %d: answer %s", rid, r.body)
	}
	for i := 1; i < len(a.Messages); i++ {
		if a.Messages[i].Seq <= a.Messages[i-1].Seq {
			t.Fatalf("rid %d: seqs not increasing: %s", rid, r.body)
		}
	}
	return a.Messages
}

// expectError sends rid and checks the refusal.
func (d *pollDevice) expectError(t *testing.T, rid uint64, ack, wait, status int, code string) {
	t.Helper()
	r := d.raw(t, rid, ack, wait)
	if r.status != status || errorCode(t, r) != code {
		t.Fatalf("rid %d: got %d %s, want %d %s", rid, r.status, r.body, status, code)
	}
}

// background sends rid with a long wait on another goroutine. The request
// ends with the test.
func (d *pollDevice) background(t *testing.T, rid uint64) <-chan response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*clustertest.Timeout)
	t.Cleanup(cancel)
	ch := make(chan response, 1)
	body := d.body(rid, -1, 60)
	go func() {
		r, err := d.h.send(ctx, "POST", "/v1/poll", pollJSON, body)
		if err != nil {
			r = response{status: -1, body: []byte(err.Error())}
		}
		ch <- r
	}()
	return ch
}

// await returns what ch yields, failing after the failsafe timeout (which is
// shorter than the 60 s a held request waits).
func await(t *testing.T, ch <-chan response, what string) response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(clustertest.Timeout):
		t.Fatalf("%s: no answer", what)
		return response{}
	}
}

// hold makes the hub hold a request, provably: it sends rid+1 with a long
// wait, then rid+2 until that is taken, which answers rid+1 at once. It
// returns rid+1's answer and the channel of rid+2's, which the hub holds.
func (d *pollDevice) hold(t *testing.T) (preempted response, held <-chan response) {
	t.Helper()
	first := d.background(t, d.rid+1)
	for {
		second := d.background(t, d.rid+2)
		select {
		case r := <-first:
			d.rid += 2
			return r, second
		case r := <-second:
			// rid+1 was not taken yet: rid+2 is out of the window, and
			// changed nothing.
			if r.status != http.StatusBadRequest || errorCode(t, r) != "rid_out_of_window" {
				t.Fatalf("rid %d before rid %d: %d %s", d.rid+2, d.rid+1, r.status, r.body)
			}
		case <-time.After(clustertest.Timeout):
			t.Fatalf("no answer to rid %d or %d", d.rid+1, d.rid+2)
		}
	}
}

func TestPollOrderAndResume(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t) // seq 1: "first"
	h.publish(t, a.token, "second", nil)
	h.publish(t, a.token, "third", hdr("Topic", "t1", "Urgency", "high"))

	d := h.pollOpen(t, a.secret, "laptop:firefox", -1)
	if want := (pollWelcomeJSON{Device: "laptop:firefox", From: 0, LastSeq: 3, Inactivity: 60, WaitMax: 60}); d.welcome != want {
		t.Errorf("welcome %+v, want %+v", d.welcome, want)
	}
	if got := datas(d.first); !eq(got, []string{"first", "second", "third"}) || !eq(seqs(d.first), []uint64{1, 2, 3}) {
		t.Fatalf("first answer: %s", d.opened.body)
	}
	m := d.first[2]
	if m.Type != "msg" || m.Mailbox != a.mailboxID || m.Topic != "t1" || m.Urgency != "high" || len(m.ID) != 16 {
		t.Errorf("message: %+v", m)
	}
	wireTime(t, m.TS)
	wireTime(t, m.ExpiresAt)
	if d.first[0].ID != a.messageID || d.first[0].Topic != "" || d.first[0].Urgency != "normal" {
		t.Errorf("message: %+v", d.first[0])
	}

	// Nothing is sent twice in a session.
	if got := d.next(t, 2, 0); len(got) != 0 {
		t.Fatalf("after the backlog: %+v", got)
	}
	h.publish(t, a.token, "fourth", nil)
	h.publish(t, a.token, "fifth", nil)
	if got := d.next(t, -1, 0); !eq(datas(got), []string{"fourth", "fifth"}) || !eq(seqs(got), []uint64{4, 5}) {
		t.Fatalf("live: %+v", got)
	}

	// The device processed up to 3 before it lost the session: a new one
	// with ack 3 starts at 4, with nothing lost and nothing repeated.
	d2 := h.pollOpen(t, a.secret, "laptop:firefox", 3)
	if d2.welcome.From != 3 || d2.welcome.LastSeq != 5 {
		t.Errorf("welcome after resume: %+v", d2.welcome)
	}
	if got := d2.first; !eq(seqs(got), []uint64{4, 5}) || !eq(datas(got), []string{"fourth", "fifth"}) {
		t.Fatalf("resumed: %s", d2.opened.body)
	}
	h.publish(t, a.token, "sixth", nil)
	if got := d2.next(t, 5, 0); !eq(datas(got), []string{"sixth"}) || !eq(seqs(got), []uint64{6}) {
		t.Fatalf("after resume: %+v", got)
	}
}

// TestPollPages: an answer holds at most 100 messages; the rest follow in
// order.
func TestPollPages(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t) // seq 1
	var items []string
	for i := 2; i <= 150; i++ {
		items = append(items, fmt.Sprintf(`{"token":%q,"data":"m%d"}`, a.token, i))
	}
	h.expect(t, http.StatusOK, "POST", "/v1/push", jsonHeader(""), `{"messages":[`+strings.Join(items, ",")+`]}`)

	d := h.pollOpen(t, a.secret, "phone", -1)
	got := d.first
	if len(got) != 100 {
		t.Fatalf("first answer has %d messages, want 100", len(got))
	}
	got = append(got, d.next(t, 100, 0)...)
	var want []uint64
	for i := uint64(1); i <= 150; i++ {
		want = append(want, i)
	}
	if !eq(seqs(got), want) {
		t.Fatalf("seqs %v", seqs(got))
	}
	if rest := d.next(t, 150, 0); len(rest) != 0 {
		t.Fatalf("after the end: %+v", rest)
	}
}

// TestPollDevicesOfOneUser: every device of a user gets every message.
func TestPollDevicesOfOneUser(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	laptop := h.pollOpen(t, a.secret, "laptop", -1)
	phone := h.pollOpen(t, a.secret, "phone", -1)
	for _, d := range []*pollDevice{laptop, phone} {
		if !eq(datas(d.first), []string{"first"}) {
			t.Fatalf("%s: first answer %s", d.welcome.Device, d.opened.body)
		}
	}
	h.publish(t, a.token, "both", nil)
	h.publish(t, a.token, "again", nil)
	for _, d := range []*pollDevice{laptop, phone} {
		if got := d.next(t, 1, 0); !eq(datas(got), []string{"both", "again"}) {
			t.Errorf("%s: %+v", d.welcome.Device, got)
		}
	}
}

// TestPollRetransmission: a lost answer is sent again, byte for byte, and
// the session goes on.
func TestPollRetransmission(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)

	// The first answer too is kept.
	if r := d.raw(t, 1000, -1, 0); r.status != http.StatusOK || !bytes.Equal(r.body, d.opened.body) {
		t.Fatalf("repeat of the first rid: %d %s, first answered %s", r.status, r.body, d.opened.body)
	}

	h.publish(t, a.token, "two", nil)
	h.publish(t, a.token, "three", nil)
	lost := d.raw(t, 1001, 1, 0) // its answer never reaches the client
	if got := d.check(t, lost, 1001); !eq(datas(got), []string{"two", "three"}) {
		t.Fatalf("rid 1001: %s", lost.body)
	}
	again := d.raw(t, 1001, 1, 0)
	if again.status != http.StatusOK || !bytes.Equal(again.body, lost.body) {
		t.Fatalf("retransmission: %d %s, first %s", again.status, again.body, lost.body)
	}
	// A repeat changes nothing, even with another ack or wait.
	if r := d.raw(t, 1001, 3, 5); !bytes.Equal(r.body, lost.body) {
		t.Fatalf("repeat with other fields: %s", r.body)
	}
	d.rid = 1001
	if got := d.next(t, 3, 0); len(got) != 0 {
		t.Fatalf("after retransmission: %+v (sent twice)", got)
	}
	h.publish(t, a.token, "four", nil)
	if got := d.next(t, 3, 0); !eq(datas(got), []string{"four"}) {
		t.Fatalf("after retransmission: %+v", got)
	}
	h.waitCursor(t, a.userID, "laptop", 3)
	// The window is the last two rids.
	if r := d.raw(t, 1002, -1, 0); r.status != http.StatusOK {
		t.Fatalf("repeat of the last but one: %d %s", r.status, r.body)
	}
	d.expectError(t, 1001, -1, 0, http.StatusBadRequest, "rid_out_of_window")
}

// TestPollHeld: a newer rid answers the held request at once, and a publish
// releases the one held then.
func TestPollHeld(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)

	preempted, held := d.hold(t)
	if got := d.check(t, preempted, d.rid-1); len(got) != 0 {
		t.Fatalf("preempted answer: %s", preempted.body)
	}
	h.publish(t, a.token, "wake up", nil)
	r := await(t, held, "held request")
	if got := d.check(t, r, d.rid); !eq(datas(got), []string{"wake up"}) || got[0].Seq != 2 {
		t.Fatalf("held request: %s", r.body)
	}
	// The preempted answer is kept like any other.
	if again := d.raw(t, d.rid-1, -1, 0); !bytes.Equal(again.body, preempted.body) {
		t.Fatalf("repeat of the preempted rid: %s, first %s", again.body, preempted.body)
	}
}

// TestPollRetryOfHeld: a retry of the rid being held (the client thought its
// connection dropped) takes the hold over; both get the same answer.
func TestPollRetryOfHeld(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)

	_, held := d.hold(t)
	retry := d.background(t, d.rid)
	// The retry may come before or after the hub took it over; either way
	// one of the two holds and the other waits for the same answer. A third
	// copy is answered the same too.
	h.publish(t, a.token, "once", nil)
	r1 := await(t, held, "held request")
	r2 := await(t, retry, "retry")
	if got := d.check(t, r1, d.rid); !eq(datas(got), []string{"once"}) {
		t.Fatalf("held: %s", r1.body)
	}
	if !bytes.Equal(r1.body, r2.body) {
		t.Fatalf("held answered %s, retry %s", r1.body, r2.body)
	}
	if got := d.next(t, 2, 0); len(got) != 0 {
		t.Fatalf("after: %+v (sent twice)", got)
	}

	// A held request whose client went away: its retry gets the message.
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		h.send(ctx, "POST", "/v1/poll", pollJSON, d.body(d.rid+1, -1, 60))
	}()
	cancel()
	<-gone
	h.publish(t, a.token, "after the drop", nil)
	r := await(t, d.background(t, d.rid+1), "retry after a drop")
	d.rid++
	if got := d.check(t, r, d.rid); !eq(datas(got), []string{"after the drop"}) {
		t.Fatalf("retry after a drop: %s", r.body)
	}
}

func TestPollRidOutOfWindow(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)
	h.publish(t, a.token, "two", nil)
	d.expectError(t, 1002, -1, 0, http.StatusBadRequest, "rid_out_of_window")
	d.expectError(t, 999, -1, 0, http.StatusBadRequest, "rid_out_of_window")
	d.expectError(t, 1<<40, 1, 0, http.StatusBadRequest, "rid_out_of_window")
	// Nothing changed: the next rid is still 1001, and gets the message
	// (the refused requests took nothing).
	if got := d.next(t, -1, 0); !eq(datas(got), []string{"two"}) {
		t.Fatalf("after refusals: %+v", got)
	}
	if c := h.cursor(t, a.secret, "laptop"); c != 0 {
		t.Errorf("a refused request's ack moved the cursor to %d", c)
	}
}

// TestPollAckRefused: an ack beyond what was sent, or backwards, is refused
// and changes nothing, not even the rid.
func TestPollAckRefused(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	h.publish(t, a.token, "two", nil)
	d := h.pollOpen(t, a.secret, "laptop", -1) // sent 1, 2
	h.publish(t, a.token, "three", nil)        // not sent yet

	d.expectError(t, 1001, 3, 0, http.StatusBadRequest, "ack_beyond_sent")
	if c := h.cursor(t, a.secret, "laptop"); c != 0 {
		t.Fatalf("cursor %d after a refused ack", c)
	}
	if got := d.next(t, 2, 0); !eq(datas(got), []string{"three"}) { // rid 1001 again
		t.Fatalf("after the refusal: %+v", got)
	}
	h.waitCursor(t, a.userID, "laptop", 2)
	d.expectError(t, 1002, 1, 0, http.StatusBadRequest, "ack_backwards")
	if got := d.next(t, 3, 0); len(got) != 0 {
		t.Fatalf("rid 1002: %+v", got)
	}
	h.waitCursor(t, a.userID, "laptop", 3)
}

func TestPollBadInput(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)
	used := h.ticket(t, a.secret)
	h.expect(t, http.StatusOK, "POST", "/v1/poll", pollJSON, `{"hello":{"ticket":"`+used+`","device":"tablet"},"rid":1}`)
	fresh := h.ticket(t, a.secret)

	req := func(fields string) string { return `{"sid":"` + d.sid + `",` + fields + `}` }
	hello := func(ticket, device, extra string) string {
		return `{"hello":{"ticket":"` + ticket + `","device":"` + device + `"},"rid":1` + extra + `}`
	}
	cases := []badInput{
		{name: "negative wait", body: req(`"rid":1001,"wait":-1`), wantStatus: 400, wantCode: "bad_wait"},
		{name: "wait over max", body: req(`"rid":1001,"wait":61`), wantStatus: 400, wantCode: "bad_wait"},
		{name: "fractional wait", body: req(`"rid":1001,"wait":1.5`), wantStatus: 400, wantCode: "bad_wait"},
		{name: "wait as string", body: req(`"rid":1001,"wait":"30"`), wantStatus: 400, wantCode: "bad_wait"},
		{name: "unknown sid", body: `{"sid":"` + strings.Repeat("A", 43) + `","rid":1001}`, wantStatus: 404, wantCode: "session_unknown"},
		{name: "no rid", body: req(`"wait":0`), wantStatus: 400, wantCode: "bad_request"},
		{name: "rid zero", body: req(`"rid":0`), wantStatus: 400, wantCode: "bad_request"},
		{name: "negative rid", body: req(`"rid":-1`), wantStatus: 400, wantCode: "bad_json"},
		{name: "no sid", body: `{"rid":1001}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "out of window", body: req(`"rid":1005`), wantStatus: 400, wantCode: "rid_out_of_window"},
		{name: "unknown field", body: req(`"rid":1001,"seq":1`), wantStatus: 400, wantCode: "bad_json"},
		{name: "malformed", body: `{"sid":`, wantStatus: 400, wantCode: "bad_json"},
		{name: "too large", body: req(`"rid":1001,"pad":"` + strings.Repeat("x", 8<<10) + `"`), wantStatus: 413, wantCode: "request_too_large"},
		{name: "not json", header: hdr("Content-Type", "text/plain"), body: req(`"rid":1001`), wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "malformed ticket", body: hello("nope", "tv", ""), wantStatus: 401, wantCode: "ticket_invalid"},
		{name: "unknown ticket", body: hello(strings.Repeat("A", 43), "tv", ""), wantStatus: 401, wantCode: "ticket_invalid"},
		{name: "used ticket", body: hello(used, "tv", ""), wantStatus: 401, wantCode: "ticket_invalid"},
		{name: "bad device", body: hello(fresh, "a b", ""), wantStatus: 400, wantCode: "bad_request"},
		{name: "hello without rid", body: `{"hello":{"ticket":"` + fresh + `","device":"tv"}}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "hello with top-level ack", body: hello(fresh, "tv", `,"ack":1`), wantStatus: 400, wantCode: "bad_request"},
		{name: "hello with bad wait", body: hello(fresh, "tv", `,"wait":-1`), wantStatus: 400, wantCode: "bad_wait"},
	}
	for i := range cases {
		cases[i].method, cases[i].path = "POST", "/v1/poll"
		if cases[i].header == nil {
			cases[i].header = pollJSON
		}
	}
	runBadInputs(t, h, []string{a.userID}, cases)

	// The session went on through all of it, and the fresh ticket is unused.
	h.publish(t, a.token, "still here", nil)
	if got := d.next(t, 1, 0); !eq(datas(got), []string{"still here"}) {
		t.Fatalf("after bad input: %+v", got)
	}
	h.expect(t, http.StatusOK, "POST", "/v1/poll", pollJSON, hello(fresh, "tv", ""))
}

func TestAckBadInput(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1) // sent 1
	cases := []badInput{
		{name: "unknown sid", body: `{"sid":"` + strings.Repeat("A", 43) + `","ack":1}`, wantStatus: 404, wantCode: "session_unknown"},
		{name: "no sid", body: `{"ack":1}`, wantStatus: 404, wantCode: "session_unknown"},
		{name: "no ack", body: `{"sid":"` + d.sid + `"}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "beyond sent", body: `{"sid":"` + d.sid + `","ack":2}`, wantStatus: 400, wantCode: "ack_beyond_sent"},
		{name: "malformed", body: `{"sid":"` + d.sid + `","ack":"1"}`, wantStatus: 400, wantCode: "bad_json"},
		{name: "not json", header: hdr("Content-Type", "text/plain"), body: `{}`, wantStatus: 415, wantCode: "unsupported_media_type"},
	}
	for i := range cases {
		cases[i].method, cases[i].path = "POST", "/v1/ack"
		if cases[i].header == nil {
			cases[i].header = pollJSON
		}
	}
	runBadInputs(t, h, []string{a.userID}, cases)
	if c := h.cursor(t, a.secret, "laptop"); c != 0 {
		t.Fatalf("cursor %d after refused acks", c)
	}
	h.expect(t, http.StatusNoContent, "POST", "/v1/ack", pollJSON, `{"sid":"`+d.sid+`","ack":1}`)
	h.waitCursor(t, a.userID, "laptop", 1)
	r := h.expect(t, http.StatusBadRequest, "POST", "/v1/ack", pollJSON, `{"sid":"`+d.sid+`","ack":0}`)
	if code := errorCode(t, r); code != "ack_backwards" {
		t.Fatalf("backwards ack: %s", code)
	}
}

// TestPollInactivity: a session nobody polls ends, and its hub session goes.
func TestPollInactivity(t *testing.T) {
	t.Parallel()
	h := startHub(t, transport.Config{OpenRegistration: true, PollInactivity: 50 * time.Millisecond})
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)
	if h.hub.Stats().Sessions != 1 {
		t.Fatalf("hub sessions: %+v", h.hub.Stats())
	}
	// Acks do not keep a long-poll session alive; they show whether it is.
	deadline := time.Now().Add(clustertest.Timeout)
	for {
		r := h.do(t, "POST", "/v1/ack", pollJSON, `{"sid":"`+d.sid+`","ack":0}`)
		if r.status == http.StatusNotFound {
			break
		}
		if r.status != http.StatusNoContent {
			t.Fatalf("ack: %d %s", r.status, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not end")
		}
	}
	d.expectError(t, 1001, -1, 0, http.StatusNotFound, "session_unknown")
	if s := h.hub.Stats().Sessions; s != 0 {
		t.Errorf("hub still has %d sessions", s)
	}
}

// TestPollTTLZero: a TTL-0 message goes to the sessions connected when it is
// published, and to no session opened afterwards.
func TestPollTTLZero(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t) // seq 1
	d := h.pollOpen(t, a.secret, "laptop", -1)
	_, held := d.hold(t)
	h.publish(t, a.token, "now or never", hdr("TTL", "0"))
	r := await(t, held, "held request")
	if got := d.check(t, r, d.rid); !eq(datas(got), []string{"now or never"}) || got[0].Seq != 2 {
		t.Fatalf("held request: %s", r.body)
	}
	h.publish(t, a.token, "kept", nil)
	later := h.pollOpen(t, a.secret, "phone", -1)
	if got := later.first; !eq(datas(got), []string{"first", "kept"}) || !eq(seqs(got), []uint64{1, 3}) {
		t.Fatalf("session opened later: %s", later.opened.body)
	}
}

// TestPollUserDeleted: the held request and the next one hear why the
// session ended; then the session is unknown.
func TestPollUserDeleted(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)
	_, held := d.hold(t)
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/users/me", bearer(a.secret), "")
	r := await(t, held, "held request")
	if r.status != http.StatusGone || errorCode(t, r) != "user_revoked" {
		t.Fatalf("held request: %d %s", r.status, r.body)
	}
	d.expectError(t, d.rid+1, -1, 0, http.StatusGone, "user_revoked")
	d.expectError(t, d.rid+1, -1, 0, http.StatusNotFound, "session_unknown")
	if s := h.hub.Stats().Sessions; s != 0 {
		t.Errorf("hub still has %d sessions", s)
	}
}

// TestPollDeviceDeleted: without a held request, the next request hears it.
func TestPollDeviceDeleted(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)
	other := h.pollOpen(t, a.secret, "phone", -1)
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/devices/laptop", bearer(a.secret), "")
	d.expectError(t, 1001, -1, 0, http.StatusGone, "device_deleted")
	d.expectError(t, 1001, -1, 0, http.StatusNotFound, "session_unknown")
	h.publish(t, a.token, "for the phone", nil)
	if got := other.next(t, -1, 0); !eq(datas(got), []string{"for the phone"}) {
		t.Fatalf("other device: %+v", got)
	}
}

func TestPollTerminate(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)
	r := h.expect(t, http.StatusOK, "POST", "/v1/poll", pollJSON, `{"sid":"`+d.sid+`","rid":1001,"ack":1,"terminate":true}`)
	var ans pollAnswerJSON
	decode(t, r, &ans)
	if !ans.Terminated || ans.Rid != 1001 || ans.Sid != d.sid || ans.Messages != nil {
		t.Fatalf("terminate: %s", r.body)
	}
	d.expectError(t, 1002, -1, 0, http.StatusNotFound, "session_unknown")
	h.waitCursor(t, a.userID, "laptop", 1)
	if s := h.hub.Stats().Sessions; s != 0 {
		t.Errorf("hub still has %d sessions", s)
	}
}

// TestDeviceIsolation: a device sees its own user's messages only, on every
// transport.
func TestDeviceIsolation(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	alice, bob := h.newAccount(t), h.newAccount(t)
	ap := h.pollOpen(t, alice.secret, "laptop", -1)
	bp := h.pollOpen(t, bob.secret, "laptop", -1) // the same device id
	as := h.openSSE(t, alice.secret, "tv", "")
	as.welcome(t)
	as.expectMsgs(t, "first")

	h.publish(t, bob.token, "for bob", nil)
	h.publish(t, alice.token, "for alice", nil)
	if got := ap.next(t, -1, 0); !eq(datas(got), []string{"for alice"}) {
		t.Fatalf("alice's poll: %+v", got)
	}
	if got := bp.first; !eq(datas(got), []string{"first"}) || got[0].Mailbox != bob.mailboxID {
		t.Fatalf("bob's first answer: %s", bp.opened.body)
	}
	if got := bp.next(t, -1, 0); !eq(datas(got), []string{"for bob"}) {
		t.Fatalf("bob's poll: %+v", got)
	}
	as.expectMsgs(t, "for alice")
}

func TestCORS(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	for _, path := range []string{"/v1/poll", "/v1/ack", "/v1/sse", "/v1/tickets", "/v1/push/x"} {
		r := h.do(t, "OPTIONS", path, hdr("Origin", "https://app.example",
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,authorization"), "")
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("preflight %s: %d %v", path, r.status, r.header)
		}
		for _, want := range []string{"Content-Type", "Authorization", "Last-Event-ID", "Idempotency-Key", "TTL", "Topic", "Urgency"} {
			if !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), want) {
				t.Errorf("preflight %s: Allow-Headers %q lacks %s", path, r.header.Get("Access-Control-Allow-Headers"), want)
			}
		}
		if m := r.header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") || !strings.Contains(m, "GET") {
			t.Errorf("preflight %s: Allow-Methods %q", path, m)
		}
		if r.header.Get("Access-Control-Max-Age") == "" {
			t.Errorf("preflight %s: no Max-Age", path)
		}
	}
	// The answers themselves carry the header, errors included.
	r := h.do(t, "POST", "/v1/tickets", hdr("Origin", "https://app.example"), "")
	if r.status != http.StatusUnauthorized || r.header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Fatalf("cross-origin answer: %d %v", r.status, r.header)
	}
	// Outside /v1/ nothing changes, and OPTIONS without a preflight is no route.
	if r := h.do(t, "GET", "/healthz", hdr("Origin", "https://app.example"), ""); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("healthz: %v", r.header)
	}
	if r := h.do(t, "OPTIONS", "/v1/poll", nil, ""); r.status != http.StatusMethodNotAllowed {
		t.Errorf("OPTIONS without preflight: %d %s", r.status, r.body)
	}
}
