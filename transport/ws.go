package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

const (
	wsReadLimit    = 8 << 10          // largest client frame
	wsHelloTimeout = 10 * time.Second // the hello must come within this
	wsWriteTimeout = 10 * time.Second // one frame to a device; past it the device is too slow
	wsTakeBatch    = 64               // messages taken from the session at a time
	// wsBufSize is the size of each of a connection's read and write
	// buffers. net/http's are 4 KiB each and would stay with the connection
	// for its life; frames are small, and a larger one is read or written
	// straight through.
	wsBufSize = 512
)

// GET /v1/ws
//
// The handler upgrades and returns: the connection's reader runs on a
// goroutine of its own whose stack starts small, and a writer goroutine
// exists only while the session has something to send.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	sb := &smallBuffers{ResponseWriter: w}
	c, err := websocket.Accept(sb, r, &websocket.AcceptOptions{
		// Devices authenticate with a ticket in their first frame, never
		// with cookies, so a page of any origin may connect: there is no
		// ambient credential for another site to ride on.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept has answered the request
	}
	c.SetReadLimit(wsReadLimit)
	wc := &wsConn{srv: s, c: c, netConn: sb.conn}
	wc.heard.Store(time.Now().UnixNano())
	if !s.ws.add(wc) {
		c.Close(reasonGoingAway.ws, reasonGoingAway.code)
		return
	}
	// The hello is read and the session opened on the handler's goroutine,
	// whose stack grows through JSON, raft and the store and goes away with
	// the handler; the reader that stays for the connection's life starts
	// afresh with a small stack.
	if !wc.open() {
		wc.finish()
		return
	}
	go wc.readLoop()
}

// wsConn is one WebSocket: its reader goroutine owns it, and a writer
// goroutine runs while there is something to send.
type wsConn struct {
	srv     *Server
	c       *websocket.Conn
	netConn net.Conn     // under c: closed by force when the close handshake stalls
	sess    *hub.Session // set before ready
	ready   atomic.Bool  // the welcome was sent: messages may follow

	writing atomic.Bool  // a writer goroutine runs
	pingDue atomic.Bool  // the pinger asked for a ping frame
	heard   atomic.Int64 // unix ns of the last frame from the device
	closing atomic.Bool
}

// wake is the session's callback: it never blocks.
func (wc *wsConn) wake() {
	if !wc.ready.Load() {
		return // the reader kicks once the welcome is out
	}
	if err := wc.sess.Err(); err != nil {
		wc.closeAsync(reasonOf(err))
		return
	}
	wc.kick()
}

// kick starts a writer unless one runs.
func (wc *wsConn) kick() {
	if wc.writing.CompareAndSwap(false, true) {
		wc.srv.ws.wg.Add(1)
		go wc.writeLoop()
	}
}

func (wc *wsConn) writeLoop() {
	defer wc.srv.ws.wg.Done()
	var buf []byte
	for {
		if !wc.flush(&buf) {
			return
		}
		wc.writing.Store(false)
		// A wake between the last Take and the Store above found a writer
		// running and did nothing: look again.
		if !(wc.sess.Pending() || wc.pingDue.Load()) || !wc.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

// flush writes a due ping and every message the session has now. It returns
// false when the connection is done for.
func (wc *wsConn) flush(buf *[]byte) bool {
	if wc.pingDue.Swap(false) {
		if !wc.write([]byte(`{"type":"ping"}`)) {
			return false
		}
	}
	for {
		msgs, err := wc.sess.Take(wsTakeBatch)
		if err != nil {
			wc.close(reasonOf(err))
			return false
		}
		if len(msgs) == 0 {
			return true
		}
		for _, m := range msgs {
			*buf = appendMsg((*buf)[:0], m)
			if !wc.write(*buf) {
				return false
			}
		}
	}
}

// write sends one text frame; a device that does not take it within
// wsWriteTimeout is too slow.
func (wc *wsConn) write(frame []byte) bool {
	ctx, cancel := context.WithTimeout(context.Background(), wsWriteTimeout)
	defer cancel()
	if err := wc.c.Write(ctx, websocket.MessageText, frame); err != nil {
		if ctx.Err() != nil {
			wc.close(reasonTooSlow)
		} else {
			wc.c.CloseNow()
		}
		return false
	}
	return true
}

// frame is any frame a device sends.
type frame struct {
	Type string `json:"type"`
	hello
	Seq *mailbox.Seq `json:"seq"`
}

// open reads the hello, opens the session and sends the welcome. It
// reports whether the session is open; if not, the connection was closed
// with the reason.
func (wc *wsConn) open() bool {
	ctx, cancel := context.WithTimeout(context.Background(), wsHelloTimeout)
	f, err := wc.read(ctx)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			wc.close(reasonProtocol)
		}
		return false
	}
	if f.Type != "hello" {
		wc.close(reasonProtocol)
		return false
	}
	sess, wel, err := wc.srv.openSession(context.Background(), f.hello, wc.wake)
	if err != nil {
		wc.close(reasonOf(err))
		return false
	}
	wc.sess = sess
	b := wc.srv.appendWelcome([]byte(`{"type":"welcome",`), wel)
	b = append(b, '}')
	if !wc.write(b) {
		return false
	}
	wc.ready.Store(true)
	wc.kick()
	return true
}

// finish releases the connection: the session, the socket, the registry.
func (wc *wsConn) finish() {
	if wc.sess != nil {
		wc.sess.Close()
	}
	wc.c.CloseNow()
	wc.srv.ws.remove(wc)
}

// readLoop reads the device's frames for the life of the session.
func (wc *wsConn) readLoop() {
	defer wc.finish()
	sess := wc.sess
	for {
		f, err := wc.read(context.Background())
		if err != nil {
			return
		}
		switch f.Type {
		case "ack":
			if f.Seq == nil {
				wc.close(reasonProtocol)
				return
			}
			if err := sess.Ack(*f.Seq); err != nil {
				we, _ := lookup(err)
				b := appendErrorBody(nil, we.code, err.Error())
				b = append([]byte(`{"type":"error",`), b[1:]...)
				if !wc.write(b) {
					return
				}
			}
		case "pong":
		case "ping":
			if !wc.write([]byte(`{"type":"pong"}`)) {
				return
			}
		default: // a second hello, or an unknown type
			wc.close(reasonProtocol)
			return
		}
	}
}

// read reads one frame. A frame that is not a JSON object, or is binary,
// closes the connection with protocol_error; an oversized one is closed by
// the websocket library with 1009.
func (wc *wsConn) read(ctx context.Context) (frame, error) {
	var f frame
	typ, data, err := wc.c.Read(ctx)
	if err != nil {
		return f, err
	}
	wc.heard.Store(time.Now().UnixNano())
	if typ != websocket.MessageText {
		wc.close(reasonProtocol)
		return f, errProtocol
	}
	if err := json.Unmarshal(data, &f); err != nil {
		wc.close(reasonProtocol)
		return f, errProtocol
	}
	return f, nil
}

// wsCloseGrace bounds the close handshake: a device too slow to take its
// messages will not take a close frame either.
const wsCloseGrace = time.Second

// close ends the connection with reason: a close frame, then the socket.
func (wc *wsConn) close(r endReason) {
	if wc.closing.Swap(true) {
		return
	}
	force := time.AfterFunc(wsCloseGrace, func() { wc.netConn.Close() })
	defer force.Stop()
	wc.c.Close(r.ws, r.code)
}

// closeAsync closes on another goroutine, for callers that must not block.
func (wc *wsConn) closeAsync(r endReason) {
	if wc.closing.Load() {
		return
	}
	wc.srv.ws.wg.Add(1)
	go func() {
		defer wc.srv.ws.wg.Done()
		wc.close(r)
	}()
}

// wsConns is the registry of this server's WebSockets, for the pinger and
// for shutdown.
type wsConns struct {
	mu     sync.Mutex
	conns  map[*wsConn]struct{}
	closed bool
	wg     sync.WaitGroup // readers, writers and closers
}

func (r *wsConns) add(wc *wsConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.conns == nil {
		r.conns = make(map[*wsConn]struct{})
	}
	r.conns[wc] = struct{}{}
	r.wg.Add(1) // the reader's
	return true
}

func (r *wsConns) remove(wc *wsConn) {
	r.mu.Lock()
	delete(r.conns, wc)
	r.mu.Unlock()
	r.wg.Done()
}

func (r *wsConns) snapshot() []*wsConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*wsConn, 0, len(r.conns))
	for wc := range r.conns {
		out = append(out, wc)
	}
	return out
}

// pingLoop asks every WebSocket for a sign of life each interval, and closes
// those from which nothing was heard for two intervals.
func (s *Server) pingLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			dead := now.Add(-2 * s.cfg.PingInterval).UnixNano()
			for _, wc := range s.ws.snapshot() {
				if !wc.ready.Load() {
					continue // the hello timeout covers it
				}
				if wc.heard.Load() < dead {
					wc.closeAsync(reasonPingTimeout)
					continue
				}
				wc.pingDue.Store(true)
				wc.kick()
			}
		}
	}
}

// closeAll closes every WebSocket with going_away and refuses new ones.
func (r *wsConns) closeAll() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	for _, wc := range r.snapshot() {
		wc.closeAsync(reasonGoingAway)
	}
}

// smallBuffers hands websocket.Accept a hijacked connection with small
// buffers instead of net/http's, keeping what the client already sent. It
// remembers the connection.
type smallBuffers struct {
	http.ResponseWriter
	conn net.Conn
}

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Writer.Buffered() > 0 {
		if err := brw.Writer.Flush(); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	w.conn = conn
	// Bytes the client sent right after its handshake may sit in net/http's
	// reader. websocket.Accept keeps a reader's buffered bytes, but only
	// those of the reader it is handed: keep net/http's in that case.
	br := brw.Reader
	if br.Buffered() == 0 {
		br = bufio.NewReaderSize(conn, wsBufSize)
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, wsBufSize)), nil
}
