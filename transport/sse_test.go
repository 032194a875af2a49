package transport_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/transport"
)

// sseEvent is one event of a stream, or one comment line.
type sseEvent struct {
	event, id, data string
	comment         string
}

type sseWelcomeJSON struct {
	Session      string `json:"session"`
	Device       string `json:"device"`
	From         uint64 `json:"from"`
	LastSeq      uint64 `json:"last_seq"`
	PingInterval int    `json:"ping_interval"`
}

// sseStream is an event stream read by a goroutine, as a browser would.
type sseStream struct {
	header http.Header
	events chan sseEvent // closed when the stream ends
	close  func()
}

// sseGet opens GET /v1/sse?query. It returns the stream when the answer is
// 200, else the answer.
func (h *testHub) sseGet(t *testing.T, query string, header http.Header) (*sseStream, response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/v1/sse?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /v1/sse: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		defer cancel()
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return nil, response{status: res.StatusCode, header: res.Header, body: b}
	}
	s := &sseStream{header: res.Header, events: make(chan sseEvent)}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		emit := func(e sseEvent) bool {
			select {
			case s.events <- e:
				return true
			case <-done:
				return false
			}
		}
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) && !emit(ev) {
					return
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				if !emit(sseEvent{comment: strings.TrimSpace(line[1:])}) {
					return
				}
			default:
				field, value, _ := strings.Cut(line, ": ")
				switch field {
				case "event":
					ev.event = value
				case "id":
					ev.id = value
				case "data":
					ev.data = value
				default:
					ev.event = "unknown field " + field
				}
			}
		}
	}()
	var once sync.Once
	s.close = func() {
		once.Do(func() {
			close(done)
			cancel()
			res.Body.Close()
			wg.Wait()
		})
	}
	t.Cleanup(s.close)
	return s, response{status: res.StatusCode, header: res.Header}
}

// openSSE opens a stream for device with a new ticket; extra is added to
// the query.
func (h *testHub) openSSE(t *testing.T, secret, device, extra string) *sseStream {
	t.Helper()
	return h.openSSEWith(t, secret, device, extra, nil)
}

func (h *testHub) openSSEWith(t *testing.T, secret, device, extra string, header http.Header) *sseStream {
	t.Helper()
	q := "ticket=" + url.QueryEscape(h.ticket(t, secret)) + "&device=" + url.QueryEscape(device) + extra
	s, r := h.sseGet(t, q, header)
	if s == nil {
		t.Fatalf("GET /v1/sse: %d %s", r.status, r.body)
	}
	return s
}

// nextAny returns the next event or comment.
func (s *sseStream) nextAny(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(clustertest.Timeout):
		t.Fatal("no event")
	}
	return sseEvent{}
}

// next returns the next event, skipping comments.
func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	for {
		if ev := s.nextAny(t); ev.comment == "" {
			return ev
		}
	}
}

func (s *sseStream) welcome(t *testing.T) sseWelcomeJSON {
	t.Helper()
	ev := s.next(t)
	if ev.event != "welcome" || ev.id != "" {
		t.Fatalf("first event: %+v", ev)
	}
	var w sseWelcomeJSON
	decode(t, response{body: []byte(ev.data)}, &w)
	return w
}

// expectMsgs reads msg events and checks their payloads, and that each
// event's id is its seq.
func (s *sseStream) expectMsgs(t *testing.T, want ...string) []msgJSON {
	t.Helper()
	var out []msgJSON
	for range want {
		ev := s.next(t)
		if ev.event != "msg" {
			t.Fatalf("event %+v, want msg", ev)
		}
		var m msgJSON
		decode(t, response{body: []byte(ev.data)}, &m)
		if ev.id != strconv.FormatUint(m.Seq, 10) || m.Type != "msg" {
			t.Fatalf("event id %q for %s", ev.id, ev.data)
		}
		if len(out) > 0 && m.Seq <= out[len(out)-1].Seq {
			t.Fatalf("seq %d after %d", m.Seq, out[len(out)-1].Seq)
		}
		out = append(out, m)
	}
	if got := datas(out); !eq(got, want) {
		t.Fatalf("messages %q, want %q", got, want)
	}
	return out
}

// expectEnd reads the rest of the stream: comments, then its end.
func (s *sseStream) expectEnd(t *testing.T) {
	t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return
			}
			if ev.comment == "" {
				t.Fatalf("event %+v after the end", ev)
			}
		case <-time.After(clustertest.Timeout):
			t.Fatal("the stream did not end")
		}
	}
}

func TestSSE(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t) // seq 1: "first"
	h.publish(t, a.token, "two", nil)

	s := h.openSSE(t, a.secret, "tv", "")
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := s.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	w := s.welcome(t)
	if len(w.Session) != 43 || w.Device != "tv" || w.From != 0 || w.LastSeq != 2 || w.PingInterval != 25 {
		t.Fatalf("welcome %+v", w)
	}
	msgs := s.expectMsgs(t, "first", "two")
	if msgs[0].ID != a.messageID || msgs[0].Mailbox != a.mailboxID {
		t.Errorf("message %+v", msgs[0])
	}
	h.publish(t, a.token, "three", nil)
	s.expectMsgs(t, "three")

	// Acks go through POST /v1/ack.
	ack := func(seq int) response {
		return h.do(t, "POST", "/v1/ack", pollJSON, `{"sid":"`+w.Session+`","ack":`+strconv.Itoa(seq)+`}`)
	}
	if r := ack(4); r.status != http.StatusBadRequest || errorCode(t, r) != "ack_beyond_sent" {
		t.Fatalf("ack 4: %d %s", r.status, r.body)
	}
	if c := h.cursor(t, a.secret, "tv"); c != 0 {
		t.Fatalf("cursor %d after a refused ack", c)
	}
	if r := ack(3); r.status != http.StatusNoContent {
		t.Fatalf("ack 3: %d %s", r.status, r.body)
	}
	h.waitCursor(t, a.userID, "tv", 3)
	if r := ack(2); r.status != http.StatusBadRequest || errorCode(t, r) != "ack_backwards" {
		t.Fatalf("ack 2: %d %s", r.status, r.body)
	}

	// The session goes with its stream.
	s.close()
	deadline := time.Now().Add(clustertest.Timeout)
	for ack(3).status != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("the session outlived its stream")
		}
	}

	// A reconnect resumes after Last-Event-ID, which wins over ack.
	h.publish(t, a.token, "four", nil)
	s2 := h.openSSEWith(t, a.secret, "tv", "&ack=1", hdr("Last-Event-ID", "3"))
	if w := s2.welcome(t); w.From != 3 || w.LastSeq != 4 {
		t.Fatalf("welcome after resume: %+v", w)
	}
	s2.expectMsgs(t, "four")
	// Without either, it starts after the stored cursor.
	s3 := h.openSSE(t, a.secret, "tv", "")
	if w := s3.welcome(t); w.From != 3 {
		t.Fatalf("welcome from the cursor: %+v", w)
	}
	s3.expectMsgs(t, "four")
}

func TestSSEBadInput(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	used := h.ticket(t, a.secret)
	s, r := h.sseGet(t, "ticket="+used+"&device=tv", nil)
	if s == nil {
		t.Fatalf("GET /v1/sse: %d %s", r.status, r.body)
	}
	s.close()
	fresh := h.ticket(t, a.secret)
	cases := []badInput{
		{name: "no ticket", path: "/v1/sse?device=tv", wantStatus: 401, wantCode: "ticket_invalid"},
		{name: "malformed ticket", path: "/v1/sse?ticket=nope&device=tv", wantStatus: 401, wantCode: "ticket_invalid"},
		{name: "unknown ticket", path: "/v1/sse?device=tv&ticket=" + strings.Repeat("A", 43), wantStatus: 401, wantCode: "ticket_invalid"},
		{name: "used ticket", path: "/v1/sse?device=tv&ticket=" + used, wantStatus: 401, wantCode: "ticket_invalid"},
		{name: "bad device", path: "/v1/sse?device=a%20b&ticket=" + fresh, wantStatus: 400, wantCode: "bad_request"},
		{name: "no device", path: "/v1/sse?ticket=" + fresh, wantStatus: 400, wantCode: "bad_request"},
		{name: "bad ack", path: "/v1/sse?device=tv&ack=-1&ticket=" + fresh, wantStatus: 400, wantCode: "bad_request"},
		{name: "bad Last-Event-ID", path: "/v1/sse?device=tv&ticket=" + fresh, header: hdr("Last-Event-ID", "x"), wantStatus: 400, wantCode: "bad_request"},
		{name: "wrong method", method: "POST", path: "/v1/sse?device=tv&ticket=" + fresh, wantStatus: 405, wantCode: "method_not_allowed"},
	}
	for i := range cases {
		if cases[i].method == "" {
			cases[i].method = "GET"
		}
	}
	runBadInputs(t, h, []string{a.userID}, cases)
	// The fresh ticket was never redeemed.
	s, r = h.sseGet(t, "ticket="+fresh+"&device=tv", nil)
	if s == nil {
		t.Fatalf("GET /v1/sse with the fresh ticket: %d %s", r.status, r.body)
	}
	s.welcome(t)
}

// TestSSEEnd: a stream gets a comment every ping interval, and ends with an
// error event when the hub ends its session.
func TestSSEEnd(t *testing.T) {
	t.Parallel()
	h := startHub(t, transport.Config{OpenRegistration: true, PingInterval: 10 * time.Millisecond})
	a := h.newAccount(t)
	s := h.openSSE(t, a.secret, "tv", "&ack=1")
	w := s.welcome(t)
	if ev := s.nextAny(t); ev.comment != "ping" {
		t.Fatalf("after the welcome: %+v, want a ping comment", ev)
	}
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/devices/tv", bearer(a.secret), "")
	ev := s.next(t)
	var e struct{ Code, Message string }
	if err := json.Unmarshal([]byte(ev.data), &e); err != nil || ev.event != "error" || e.Code != "device_deleted" || e.Message == "" {
		t.Fatalf("end: %+v", ev)
	}
	s.expectEnd(t)
	r := h.do(t, "POST", "/v1/ack", pollJSON, `{"sid":"`+w.Session+`","ack":1}`)
	if r.status != http.StatusNotFound || errorCode(t, r) != "session_unknown" {
		t.Fatalf("ack after the end: %d %s", r.status, r.body)
	}
	if n := h.hub.Stats().Sessions; n != 0 {
		t.Errorf("hub still has %d sessions", n)
	}
}

// TestServerCloseEndsPollAndSSE: Server.Close answers a held poll and ends
// a stream with going_away, and refuses new sessions with a 503 to retry.
func TestServerCloseEndsPollAndSSE(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	d := h.pollOpen(t, a.secret, "laptop", -1)
	_, held := d.hold(t)
	s := h.openSSE(t, a.secret, "tv", "")
	s.welcome(t)
	s.expectMsgs(t, "first")

	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	if err := h.api.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, held, "held request")
	if r.status != http.StatusGone || errorCode(t, r) != "going_away" {
		t.Fatalf("held request: %d %s", r.status, r.body)
	}
	ev := s.next(t)
	if ev.event != "error" || !strings.Contains(ev.data, `"code":"going_away"`) {
		t.Fatalf("stream: %+v", ev)
	}
	s.expectEnd(t)
	d.expectError(t, d.rid+1, -1, 0, http.StatusNotFound, "session_unknown")
	r = h.do(t, "POST", "/v1/poll", pollJSON, `{"hello":{"ticket":"`+h.ticket(t, a.secret)+`","device":"laptop"},"rid":1}`)
	if r.status != http.StatusServiceUnavailable || errorCode(t, r) != "unavailable" || r.header.Get("Retry-After") != "1" {
		t.Fatalf("open after close: %d %v %s", r.status, r.header, r.body)
	}
	if n := h.hub.Stats().Sessions; n != 0 {
		t.Errorf("hub still has %d sessions", n)
	}
}
