package transport_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// wsFrame is any frame the hub sends a device: a msg (msgJSON's fields), a
// welcome, an error, a ping or a pong.
type wsFrame struct {
	msgJSON
	Session      string      `json:"session"`
	Device       string      `json:"device"`
	From         mailbox.Seq `json:"from"`
	LastSeq      mailbox.Seq `json:"last_seq"`
	PingInterval int         `json:"ping_interval"`
	Code         string      `json:"code"`
	Message      string      `json:"message"`
}

// ticket issues a connect ticket for the user with secret.
func (h *testHub) ticket(t *testing.T, secret string) string {
	t.Helper()
	var tk struct {
		Ticket    string `json:"ticket"`
		ExpiresAt string `json:"expires_at"`
	}
	decode(t, h.expect(t, http.StatusCreated, "POST", "/v1/tickets", bearer(secret), ""), &tk)
	return tk.Ticket
}

// dialWS opens a WebSocket to /v1/ws; it is closed at the end of the test.
func (h *testHub) dialWS(t *testing.T) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.srv.URL, "http")+"/v1/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func wsSend(t *testing.T, c *websocket.Conn, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("send %s: %v", frame, err)
	}
}

// wsRecv reads the next frame; the error is the connection's end.
func wsRecv(t *testing.T, c *websocket.Conn) (wsFrame, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	defer cancel()
	var f wsFrame
	_, b, err := c.Read(ctx)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f, nil
}

// mustRecv reads the next frame that is not a ping, and fails on an error.
func mustRecv(t *testing.T, c *websocket.Conn) wsFrame {
	t.Helper()
	for {
		f, err := wsRecv(t, c)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if f.Type != "ping" {
			return f
		}
	}
}

// wsHello connects a device and returns the connection and its welcome.
func (h *testHub) wsHello(t *testing.T, secret, device string, ack *int) (*websocket.Conn, wsFrame) {
	t.Helper()
	c := h.dialWS(t)
	hello := fmt.Sprintf(`{"type":"hello","ticket":%q,"device":%q`, h.ticket(t, secret), device)
	if ack != nil {
		hello += fmt.Sprintf(`,"ack":%d`, *ack)
	}
	wsSend(t, c, hello+"}")
	w := mustRecv(t, c)
	if w.Type != "welcome" || w.Device != device || len(w.Session) != 43 {
		t.Fatalf("welcome: %+v", w)
	}
	return c, w
}

// recvMsgs reads n msg frames and checks their seqs run on from after.
func recvMsgs(t *testing.T, c *websocket.Conn, after mailbox.Seq, n int) []wsFrame {
	t.Helper()
	out := make([]wsFrame, 0, n)
	for len(out) < n {
		f := mustRecv(t, c)
		if f.Type != "msg" {
			t.Fatalf("frame %d: %+v, want a msg", len(out), f)
		}
		if want := after + mailbox.Seq(len(out)) + 1; mailbox.Seq(f.Seq) != want {
			t.Fatalf("msg seq %d, want %d (%q)", f.Seq, want, f.Data)
		}
		out = append(out, f)
	}
	return out
}

// closeCode reads until the connection ends and returns its close code.
func closeCode(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	for {
		_, err := wsRecv(t, c)
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// waitCursor waits until the device's stored cursor is want.
func (h *testHub) waitCursor(t *testing.T, userID, device string, want mailbox.Seq) {
	t.Helper()
	deadline := time.Now().Add(clustertest.Timeout)
	var got mailbox.Seq
	for time.Now().Before(deadline) {
		devs, err := h.store.Devices(userID)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if d.ID == device {
				got = d.Cursor
			}
		}
		if got == want {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling the store; not a synchronisation by time
	}
	t.Fatalf("cursor of %s: %d, want %d", device, got, want)
}

func ptr(i int) *int { return &i }

func TestWSDeliversInOrderAndAcks(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t) // one message already waiting: seq 1
	c, w := h.wsHello(t, a.secret, "laptop", nil)
	if w.From != 0 || w.LastSeq != 1 {
		t.Fatalf("welcome: %+v", w)
	}
	for i := 2; i <= 20; i++ {
		h.publish(t, a.token, fmt.Sprintf("m%d", i), hdr("Urgency", "high"))
	}
	msgs := recvMsgs(t, c, 0, 20)
	if msgs[0].Data != "first" || msgs[0].ID != a.messageID || msgs[0].Mailbox != a.mailboxID {
		t.Fatalf("first msg: %+v", msgs[0])
	}
	if m := msgs[19]; m.Data != "m20" || m.Urgency != "high" || m.TS == "" || m.ExpiresAt == "" {
		t.Fatalf("last msg: %+v", m)
	}
	wsSend(t, c, `{"type":"ack","seq":20}`)
	h.waitCursor(t, a.userID, "laptop", 20)
	var st struct {
		State       string `json:"state"`
		DeliveredTo string `json:"delivered_to"`
	}
	if err := json.Unmarshal(h.expect(t, http.StatusOK, "GET", "/v1/messages/"+a.messageID, bearer(a.token), "").body, &st); err != nil {
		t.Fatal(err)
	}
	if st.State != "delivered" || st.DeliveredTo != "laptop" {
		t.Fatalf("status after ack: %+v", st)
	}
}

func TestWSThreeDevicesEachGetEverything(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	var conns []*websocket.Conn
	for _, d := range []string{"laptop", "phone", "tablet"} {
		c, _ := h.wsHello(t, a.secret, d, nil)
		conns = append(conns, c)
	}
	for i := 2; i <= 30; i++ {
		h.publish(t, a.token, fmt.Sprintf("m%d", i), nil)
	}
	for _, c := range conns {
		recvMsgs(t, c, 0, 30)
	}
}

func TestWSResumeNoLossNoDuplicate(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	c, _ := h.wsHello(t, a.secret, "laptop", nil)
	for i := 2; i <= 5; i++ {
		h.publish(t, a.token, fmt.Sprintf("m%d", i), nil)
	}
	recvMsgs(t, c, 0, 5)
	wsSend(t, c, `{"type":"ack","seq":3}`)
	h.waitCursor(t, a.userID, "laptop", 3)
	c.Close(websocket.StatusNormalClosure, "")

	for i := 6; i <= 10; i++ {
		h.publish(t, a.token, fmt.Sprintf("m%d", i), nil)
	}
	// Resuming from the stored cursor: 4..10, once each.
	c, w := h.wsHello(t, a.secret, "laptop", nil)
	if w.From != 3 || w.LastSeq != 10 {
		t.Fatalf("welcome: %+v", w)
	}
	recvMsgs(t, c, 3, 7)
	h.publish(t, a.token, "m11", nil)
	if f := mustRecv(t, c); f.Seq != 11 {
		t.Fatalf("live after catch-up: %+v", f)
	}
	c.Close(websocket.StatusNormalClosure, "")

	// Resuming from the hello's ack, ahead of the stored cursor: it also
	// moves the cursor (the ack lost with the last connection).
	c, w = h.wsHello(t, a.secret, "laptop", ptr(9))
	if w.From != 9 {
		t.Fatalf("welcome: %+v", w)
	}
	recvMsgs(t, c, 9, 2)
	h.waitCursor(t, a.userID, "laptop", 9)
}

func TestWSSlowConsumerIsDisconnected(t *testing.T) {
	h := startHubWith(t, openConfig(), hub.Config{QueueLen: 8})
	a := h.newAccount(t)
	slow, _ := h.wsHello(t, a.secret, "stuck", nil)
	fast, _ := h.wsHello(t, a.secret, "quick", nil)
	recvMsgs(t, fast, 0, 1)

	// The stuck device reads nothing: once the socket's buffers are full its
	// queue overflows and the hub lets it go, while the quick one goes on.
	payload := strings.Repeat("x", 4000)
	sent := 1
	for h.hub.Stats().TooSlow == 0 {
		if sent == 5000 {
			t.Fatal("5000 messages and the stuck device is still connected")
		}
		h.publish(t, a.token, payload, nil)
		sent++
		recvMsgs(t, fast, mailbox.Seq(sent-1), 1)
	}
	for i := 0; i < 5; i++ {
		h.publish(t, a.token, "after", nil)
		recvMsgs(t, fast, mailbox.Seq(sent+i), 1)
	}
	if code := closeCode(t, slow); code != 4408 && code != -1 {
		t.Fatalf("stuck device closed with %d, want 4408 (or a broken connection)", code)
	}
}

func TestWSTTLZeroOnlyToConnected(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t)
	c, _ := h.wsHello(t, a.secret, "laptop", nil)
	recvMsgs(t, c, 0, 1)
	h.publish(t, a.token, "now or never", hdr("TTL", "0"))
	if f := mustRecv(t, c); f.Seq != 2 || f.Data != "now or never" {
		t.Fatalf("TTL 0 to a connected device: %+v", f)
	}
	h.publish(t, a.token, "kept", nil)
	recvMsgs(t, c, 2, 1)

	later, _ := h.wsHello(t, a.secret, "phone", nil)
	got := mustRecv(t, later)
	if got.Seq != 1 {
		t.Fatalf("first msg for a new device: %+v", got)
	}
	if f := mustRecv(t, later); f.Seq != 3 || f.Data != "kept" {
		t.Fatalf("a device that connects later must not get the TTL 0 message: %+v", f)
	}
}

func TestWSUsersAreIsolated(t *testing.T) {
	h := startHub(t, openConfig())
	alice := h.newAccount(t)
	bob := h.newAccount(t)
	ca, _ := h.wsHello(t, alice.secret, "same-device-id", nil)
	cb, _ := h.wsHello(t, bob.secret, "same-device-id", nil)
	for i := 0; i < 5; i++ {
		h.publish(t, alice.token, "for alice", nil)
	}
	h.publish(t, bob.token, "for bob", nil)
	for _, f := range recvMsgs(t, ca, 0, 6) {
		if f.Data == "for bob" {
			t.Fatal("alice got bob's message")
		}
	}
	for _, f := range recvMsgs(t, cb, 0, 2) {
		if f.Data == "for alice" {
			t.Fatal("bob got alice's message")
		}
	}
}

func TestWSBadInput(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t)

	closesWith := func(t *testing.T, want websocket.StatusCode, frames ...string) {
		t.Helper()
		c := h.dialWS(t)
		for _, f := range frames {
			wsSend(t, c, f)
		}
		if got := closeCode(t, c); got != want {
			t.Fatalf("close code %d, want %d", got, want)
		}
	}
	unused := h.ticket(t, a.secret)
	before := h.snapshot(t, a.userID)

	t.Run("bad ticket", func(t *testing.T) {
		closesWith(t, 4401, `{"type":"hello","ticket":"nope","device":"d"}`)
		closesWith(t, 4401, fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"d"}`, strings.Repeat("A", 43)))
	})
	t.Run("not json", func(t *testing.T) { closesWith(t, 4400, `hello?`) })
	t.Run("not a hello first", func(t *testing.T) { closesWith(t, 4400, `{"type":"ack","seq":1}`) })
	t.Run("bad device id", func(t *testing.T) {
		closesWith(t, 4400, fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"a/b"}`, unused))
	})
	t.Run("hello too large", func(t *testing.T) {
		closesWith(t, 4400, `{"type":"hello","ticket":"`+strings.Repeat("x", 9000)+`"}`)
	})
	t.Run("binary frame", func(t *testing.T) {
		c := h.dialWS(t)
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageBinary, []byte(`{"type":"hello"}`)); err != nil {
			t.Fatal(err)
		}
		if got := closeCode(t, c); got != 4400 {
			t.Fatalf("close code %d", got)
		}
	})
	if after := h.snapshot(t, a.userID); !equalSnapshots(before, after) {
		t.Fatalf("refused hellos changed state:\n%+v\n%+v", before, after)
	}

	t.Run("reused ticket", func(t *testing.T) {
		tk := h.ticket(t, a.secret)
		c := h.dialWS(t)
		wsSend(t, c, fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"d1"}`, tk))
		if f := mustRecv(t, c); f.Type != "welcome" {
			t.Fatalf("%+v", f)
		}
		closesWith(t, 4401, fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"d2"}`, tk))
	})

	t.Run("in session", func(t *testing.T) {
		c, _ := h.wsHello(t, a.secret, "laptop", nil)
		recvMsgs(t, c, 0, 1)
		wsSend(t, c, `{"type":"ack","seq":7}`)
		if f := mustRecv(t, c); f.Type != "error" || f.Code != "ack_beyond_sent" {
			t.Fatalf("ack beyond sent: %+v", f)
		}
		wsSend(t, c, `{"type":"ack","seq":1}`)
		h.waitCursor(t, a.userID, "laptop", 1)
		wsSend(t, c, `{"type":"ack","seq":0}`)
		if f := mustRecv(t, c); f.Type != "error" || f.Code != "ack_backwards" {
			t.Fatalf("ack backwards: %+v", f)
		}
		wsSend(t, c, `{"type":"ping"}`)
		if f := mustRecv(t, c); f.Type != "pong" {
			t.Fatalf("ping: %+v", f)
		}
		h.waitCursor(t, a.userID, "laptop", 1)
		wsSend(t, c, `{"type":"hello","ticket":"x","device":"laptop"}`)
		if got := closeCode(t, c); got != 4400 {
			t.Fatalf("second hello: close code %d", got)
		}
	})
	t.Run("unknown type", func(t *testing.T) {
		c, _ := h.wsHello(t, a.secret, "phone", nil)
		wsSend(t, c, `{"type":"subscribe"}`)
		if got := closeCode(t, c); got != 4400 {
			t.Fatalf("close code %d", got)
		}
	})
}

// equalSnapshots compares what users own. The applied index may move: a
// well-formed but unknown ticket is refused by the state machine, in the log.
func equalSnapshots(a, b snapshot) bool {
	ja, _ := json.Marshal(a.users)
	jb, _ := json.Marshal(b.users)
	return string(ja) == string(jb)
}

func TestWSSessionEnds(t *testing.T) {
	h := startHub(t, openConfig())
	for _, tc := range []struct {
		name, path string
		code       websocket.StatusCode
	}{
		{"device deleted", "/v1/devices/laptop", 4404},
		{"user deleted", "/v1/users/me", 4403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := h.newAccount(t)
			c, _ := h.wsHello(t, a.secret, "laptop", nil)
			h.expect(t, http.StatusNoContent, "DELETE", tc.path, bearer(a.secret), "")
			if got := closeCode(t, c); got != tc.code {
				t.Fatalf("close code %d, want %d", got, tc.code)
			}
		})
	}
	t.Run("going away", func(t *testing.T) {
		a := h.newAccount(t)
		c, _ := h.wsHello(t, a.secret, "laptop", nil)
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		h.hub.Close(ctx)
		if got := closeCode(t, c); got != websocket.StatusGoingAway {
			t.Fatalf("close code %d", got)
		}
		if err := h.api.Close(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWSPingTimeout(t *testing.T) {
	cfg := openConfig()
	cfg.PingInterval = 50 * time.Millisecond
	h := startHub(t, cfg)
	a := h.newAccount(t)
	c, w := h.wsHello(t, a.secret, "laptop", nil)
	if w.PingInterval != 0 {
		t.Fatalf("ping_interval is whole seconds: %+v", w)
	}
	// The device reads but never answers: first pings, then the close.
	pings := 0
	for {
		f, err := wsRecv(t, c)
		if err != nil {
			if got := websocket.CloseStatus(err); got != 4410 {
				t.Fatalf("close code %d (%v)", got, err)
			}
			break
		}
		if f.Type == "ping" {
			pings++
		}
	}
	if pings == 0 {
		t.Fatal("closed without a ping first")
	}
}

// rawWS is a device speaking the WebSocket protocol by hand over TCP, to
// send bytes the way a library would not: frames together with the
// handshake, several frames in one write.
type rawWS struct {
	conn net.Conn
	br   *bufio.Reader
}

// rawFrame is a masked client text frame (the mask key is zero).
func rawFrame(payload string) string {
	if len(payload) > 125 {
		panic("rawFrame: long payload")
	}
	return string([]byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0}) + payload
}

// dialRawWS sends the upgrade request with early (frames) right behind it,
// in one write, and reads the 101.
func (h *testHub) dialRawWS(t *testing.T, early string) *rawWS {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(clustertest.Timeout))
	req := "GET /v1/ws HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req+early); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	return &rawWS{conn: conn, br: br}
}

func (c *rawWS) send(t *testing.T, frames string) {
	t.Helper()
	if _, err := io.WriteString(c.conn, frames); err != nil {
		t.Fatal(err)
	}
}

// recv reads the next text frame that is not a ping.
func (c *rawWS) recv(t *testing.T) wsFrame {
	t.Helper()
	for {
		read := func(n uint64) []byte {
			b := make([]byte, n)
			if _, err := io.ReadFull(c.br, b); err != nil {
				t.Fatalf("read: %v", err)
			}
			return b
		}
		hdr := read(2)
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			n = uint64(binary.BigEndian.Uint16(read(2)))
		case 127:
			n = binary.BigEndian.Uint64(read(8))
		}
		payload := read(n)
		if op := hdr[0] & 0x0f; op != 1 {
			t.Fatalf("frame with opcode %d: %q", op, payload)
		}
		var f wsFrame
		if err := json.Unmarshal(payload, &f); err != nil {
			t.Fatalf("frame %s: %v", payload, err)
		}
		if f.Type != "ping" {
			return f
		}
	}
}

// The frames a device sends come in whatever pieces the network makes of
// them: with the handshake, several in one segment, or split mid-frame.
// Each is read and answered without waiting for more bytes.
func TestWSFramesInAnyPieces(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t) // seq 1 waiting
	hello := fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"raw"}`, h.ticket(t, a.secret))
	c := h.dialRawWS(t, rawFrame(hello))
	if w := c.recv(t); w.Type != "welcome" || w.Device != "raw" {
		t.Fatalf("welcome: %+v", w)
	}
	h.publish(t, a.token, "m2", nil)
	for want := uint64(1); want <= 2; want++ {
		if m := c.recv(t); m.Type != "msg" || m.Seq != want {
			t.Fatalf("msg %d: %+v", want, m)
		}
	}
	// Two acks and a ping in one write: the pong comes, the cursor moves.
	c.send(t, rawFrame(`{"type":"ack","seq":1}`)+rawFrame(`{"type":"ack","seq":2}`)+rawFrame(`{"type":"ping"}`))
	if f := c.recv(t); f.Type != "pong" {
		t.Fatalf("after ack, ack, ping: %+v, want a pong", f)
	}
	h.waitCursor(t, a.userID, "raw", 2)
	// A ping split inside its header, then inside its body.
	ping := rawFrame(`{"type":"ping"}`)
	for _, cut := range []int{1, 9} {
		c.send(t, ping[:cut])
		c.send(t, ping[cut:])
		if f := c.recv(t); f.Type != "pong" {
			t.Fatalf("split ping: %+v, want a pong", f)
		}
	}
}

// A backlog larger than one write's buffer arrives whole and in order.
func TestWSLargeBacklog(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t) // seq 1 waiting
	payload := strings.Repeat("y", 3000)
	for i := 2; i <= 100; i++ {
		h.publish(t, a.token, fmt.Sprintf("%d:%s", i, payload), nil)
	}
	c, _ := h.wsHello(t, a.secret, "laptop", nil)
	for i, m := range recvMsgs(t, c, 0, 100)[1:] {
		if m.Data != fmt.Sprintf("%d:%s", i+2, payload) {
			t.Fatalf("msg %d: %.20q...", i+2, m.Data)
		}
	}
}

// An idle connection waits in one goroutine parked a few frames deep, not
// in the websocket library's read: a goroutine's stack never shrinks below
// twice the depth it parks at, and this is what keeps an idle device at a
// 2 KiB stack (BENCHMARKS.md). The frames it had (a ping, an ack) were read
// by a goroutine that has ended.
func TestWSIdleConnectionWaitsShallow(t *testing.T) {
	switch runtime.GOOS {
	case "windows", "plan9", "js", "wasip1":
		t.Skip("no socket peek here: the reader waits in its read")
	}
	h := startHub(t, openConfig())
	a := h.newAccount(t) // seq 1 waiting
	c, _ := h.wsHello(t, a.secret, "laptop", nil)
	recvMsgs(t, c, 0, 1)
	wsSend(t, c, `{"type":"ack","seq":1}`)
	wsSend(t, c, `{"type":"ping"}`)
	if f := mustRecv(t, c); f.Type != "pong" {
		t.Fatalf("after ping: %+v", f)
	}
	h.waitCursor(t, a.userID, "laptop", 1)

	// The goroutines of the connection: its waiter, and a reader until the
	// frames are handled.
	var conn []string
	deadline := time.Now().Add(clustertest.Timeout)
	for time.Now().Before(deadline) {
		buf := make([]byte, 1<<20)
		conn = conn[:0]
		for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "(*wsConn).read") {
				conn = append(conn, g)
			}
		}
		if len(conn) == 1 && !strings.Contains(conn[0], "(*wsConn).readFrames(") {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling goroutine states; not a synchronisation by time
	}
	if len(conn) != 1 || !strings.Contains(conn[0], "transport.awaitReadable(") || strings.Contains(conn[0], "websocket.(*Conn)") {
		t.Fatalf("the idle connection does not wait in one shallow goroutine:\n%s", strings.Join(conn, "\n\n"))
	}
}
