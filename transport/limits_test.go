package transport_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/transport"
)

// TestWSHelloRefusals: a WebSocket that sends no hello within the hello
// timeout, or a hello that is too large or not strict JSON, is closed with
// 4400 protocol_error. The silent one got a bare EOF before (the library
// drops the socket when a read's context expires), and an oversized hello
// got 1009.
func TestWSHelloRefusals(t *testing.T) {
	cfg := openConfig()
	cfg.Limits.HelloTimeout = 300 * time.Millisecond
	h := startHub(t, cfg)
	a := h.newAccount(t)

	t.Run("no hello", func(t *testing.T) {
		c := h.dialWS(t)
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		_, _, err := c.Read(ctx)
		if got := websocket.CloseStatus(err); got != 4400 {
			t.Fatalf("no hello: %v (close status %d), want close 4400", err, got)
		}
	})
	tk := h.ticket(t, a.secret)
	for name, frame := range map[string]string{
		"hello over 8 KiB":   `{"type":"hello","ticket":"` + strings.Repeat("x", 9000) + `"}`,
		"type in upper case": fmt.Sprintf(`{"TYPE":"hello","ticket":%q,"device":"d"}`, tk),
		"type twice":         fmt.Sprintf(`{"type":"hello","type":"hello","ticket":%q,"device":"d"}`, tk),
		"ticket twice":       fmt.Sprintf(`{"type":"hello","ticket":%q,"ticket":%q,"device":"d"}`, tk, tk),
	} {
		t.Run(name, func(t *testing.T) {
			c := h.dialWS(t)
			wsSend(t, c, frame)
			if got := closeCode(t, c); got != 4400 {
				t.Fatalf("close code %d, want 4400", got)
			}
		})
	}
	// The ticket was never redeemed: the refused hellos reached no raft.
	c := h.dialWS(t)
	wsSend(t, c, fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"d"}`, tk))
	if f := mustRecv(t, c); f.Type != "welcome" {
		t.Fatalf("hello with the unused ticket: %+v", f)
	}
	t.Run("frame over 8 KiB in session", func(t *testing.T) {
		wsSend(t, c, `{"type":"ack","seq":1,"x":"`+strings.Repeat("x", 9000)+`"}`)
		if got := closeCode(t, c); got != websocket.StatusMessageTooBig {
			t.Fatalf("close code %d, want 1009", got)
		}
	})
}

// expectTooManyWaits checks a refusal by the wait caps.
func expectTooManyWaits(t *testing.T, r response) {
	t.Helper()
	if r.status != http.StatusTooManyRequests || errorCode(t, r) != "too_many_waits" {
		t.Fatalf("got %d %s, want 429 too_many_waits", r.status, r.body)
	}
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
}

// TestDeviceWaitCaps: one user holds at most WaitsPerUser long-poll
// sessions and event streams; the next gets 429 too_many_waits with
// Retry-After, the open ones still deliver, and a slot freed is taken
// again. Per address likewise, across users.
func TestDeviceWaitCaps(t *testing.T) {
	cfg := openConfig()
	cfg.Limits.WaitsPerUser = 2
	cfg.Limits.WaitsPerAddr = 3
	h := startHub(t, cfg)
	a, b := h.newAccount(t), h.newAccount(t)

	s1 := h.openSSE(t, a.secret, "sse1", "")
	s1.welcome(t)
	p1 := h.pollOpen(t, a.secret, "poll1", 0)
	// The third of user a: an event stream, then a long-poll session.
	q := "ticket=" + h.ticket(t, a.secret) + "&device=sse2"
	if s, r := h.sseGet(t, q, nil); s != nil {
		t.Fatal("third wait of a user: a stream opened")
	} else {
		expectTooManyWaits(t, r)
	}
	hello := fmt.Sprintf(`{"hello":{"ticket":%q,"device":"poll2"},"rid":1}`, h.ticket(t, a.secret))
	expectTooManyWaits(t, h.do(t, "POST", "/v1/poll", pollJSON, hello))

	// The held ones still work.
	h.publish(t, a.token, "after the refusals", nil)
	s1.expectMsgs(t, "first", "after the refusals")
	if got := datas(p1.next(t, -1, 5)); len(got) == 0 || got[len(got)-1] != "after the refusals" {
		t.Fatalf("long-poll after the refusals: %v", got)
	}

	// Per address: user b's first is the address's third; its second is over.
	sb := h.openSSE(t, b.secret, "sse1", "")
	sb.welcome(t)
	q = "ticket=" + h.ticket(t, b.secret) + "&device=sse2"
	if s, r := h.sseGet(t, q, nil); s != nil {
		t.Fatal("fourth wait of an address: a stream opened")
	} else {
		expectTooManyWaits(t, r)
	}

	// A stream that ends gives its slot back.
	s1.close()
	s1.expectEnd(t)
	h.awaitMetric(t, `hub_waits_held{kind="device"}`, "2")
	s3 := h.openSSE(t, a.secret, "sse3", "")
	s3.welcome(t)
}

// awaitMetric waits until GET /metrics shows the series with value.
func (h *testHub) awaitMetric(t *testing.T, series, value string) {
	t.Helper()
	deadline := time.Now().Add(clustertest.Timeout)
	for {
		r := h.expect(t, http.StatusOK, "GET", "/metrics", nil, "")
		for _, line := range strings.Split(string(r.body), "\n") {
			if strings.HasPrefix(line, series+" ") && strings.TrimPrefix(line, series+" ") == value {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s %s in /metrics", series, value)
		}
		time.Sleep(10 * time.Millisecond) // polling for the event, not a threshold
	}
}

// TestReceiptWaitCaps: a mailbox token holds at most ReceiptWaitsPerToken
// (default 4) GET /v1/receipts waits; the next gets 429 too_many_waits
// with Retry-After, a read without a wait is still served, and the held
// ones still answer.
func TestReceiptWaitCaps(t *testing.T) {
	waiting := make(chan string, transport.DefaultReceiptWaitsPerToken)
	h, _ := startReceiptHub(t, receipts.Config{}, func(f transport.ReceiptFeed) transport.ReceiptFeed {
		return waitingFeed{f, waiting}
	})
	a := h.newAccount(t)
	done := make(chan response, transport.DefaultReceiptWaitsPerToken)
	for range transport.DefaultReceiptWaitsPerToken {
		go func() { done <- h.do(t, "GET", "/v1/receipts?wait=60", bearer(a.token), "") }()
		select {
		case <-waiting:
		case <-time.After(clustertest.Timeout): // failsafe only
			t.Fatal("the poll never waited")
		}
	}
	expectTooManyWaits(t, h.do(t, "GET", "/v1/receipts?wait=60", bearer(a.token), ""))
	h.expect(t, http.StatusOK, "GET", "/v1/receipts", bearer(a.token), "")
	h.api.BeginClose()
	for range transport.DefaultReceiptWaitsPerToken {
		if r := <-done; r.status != http.StatusOK {
			t.Fatalf("held receipt wait: %v", r)
		}
	}
}

// TestBodyDeadline: a body that never finishes is cut off at BodyTimeout
// from the request's start, however it trickles: the client gets 408
// body_timeout and the connection is closed, for a JSON body and for a
// publish's payload; nothing is created or published.
func TestBodyDeadline(t *testing.T) {
	cfg := openConfig()
	cfg.Limits.BodyTimeout = 300 * time.Millisecond
	h := startHub(t, cfg)
	a := h.newAccount(t)
	before := h.snapshot(t, a.userID)
	for name, head := range map[string]string{
		"json body": "POST /v1/mailboxes HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer " + a.secret +
			"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"label\"",
		"publish": "POST /v1/push/" + a.token + " HTTP/1.1\r\nHost: hub\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nhel",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(clustertest.Timeout)) // failsafe only
			io.WriteString(conn, head)
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			r := response{status: res.StatusCode, header: res.Header, body: body}
			if r.status != http.StatusRequestTimeout || errorCode(t, r) != "body_timeout" {
				t.Fatalf("got %v, want 408 body_timeout", r)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the refusal: %v, want the connection closed", err)
			}
		})
	}
	if after := h.snapshot(t, a.userID); !reflect.DeepEqual(before.users, after.users) || before.applied != after.applied {
		t.Fatalf("a cut-off body changed state:\n%+v\n%+v", before, after)
	}
}

// TestBodyDeadlineSparesRestore: a restore bearing the admin token uploads
// a whole backup and is not cut off by the body deadline: a backup sent in
// pieces over twice the deadline is restored.
func TestBodyDeadlineSparesRestore(t *testing.T) {
	cfg := openConfig()
	cfg.AdminToken = adminToken
	cfg.Limits.BodyTimeout = 200 * time.Millisecond
	h := startHub(t, cfg)
	h.newAccount(t)
	backup := h.expect(t, http.StatusOK, "GET", "/admin/v1/backup", adminHeader(), "").body
	pr, pw := io.Pipe()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		const pieces = 8
		for i := range pieces {
			time.Sleep(50 * time.Millisecond) // the trickle itself: 8 pieces over 400 ms
			if _, err := pw.Write(backup[i*len(backup)/pieces : (i+1)*len(backup)/pieces]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	defer func() { pr.Close(); <-sent }()
	req, err := http.NewRequest("POST", h.srv.URL+"/admin/v1/restore", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("slow restore with the admin token: %d %s, want 200", res.StatusCode, b)
	}
}
