package transport

import (
	"bufio"
	"bytes"
	"context"
	"io"
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
	wsDrainLimit   = 64 << 10         // bytes of an oversized frame read and dropped before its 1009
	wsWriteTimeout = 10 * time.Second // one write to a device (a batch of frames); past it the device is too slow
	wsTakeBatch    = 64               // messages taken from the session at a time

	// wsReadBufSize is the size of a connection's read buffer, which stays
	// with it for its life (net/http's is 4 KiB): room for the header and
	// body of an ack, a ping or a pong; a larger frame's body is read
	// straight into the library's message buffer.
	wsReadBufSize = 64
	// wsWriteBufSize is the size of the bufio.Writer the websocket library
	// insists on; the bytes gather in a corkWriter's pooled buffer instead.
	wsWriteBufSize = 16
)

// GET /v1/ws
//
// The handler upgrades, opens the session and returns: what stays for the
// connection's life is one goroutine waiting with a small stack (readLoop);
// a reader goroutine exists only while the device's frames come in, and a
// writer goroutine only while the session has something to send.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	wc := &wsConn{srv: s}
	c, err := websocket.Accept(&wsHijacker{ResponseWriter: w, wc: wc}, r, &websocket.AcceptOptions{
		// Devices authenticate with a ticket in their first frame, never
		// with cookies, so a page of any origin may connect: there is no
		// ambient credential for another site to ride on.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept has answered the request
	}
	wc.c = c
	// The connection is the socket's now: no deadline of the request may
	// stay on it (corkWriter sets one per write).
	wc.out.conn.SetDeadline(time.Time{})
	wc.heard.Store(time.Now().UnixNano())
	if !s.ws.add(wc) {
		c.Close(reasonGoingAway.ws, reasonGoingAway.code)
		return
	}
	// The hello is read and the session opened on the handler's goroutine,
	// whose stack grows through JSON, raft and the store and goes away with
	// the handler.
	if !wc.open() {
		wc.finish()
		return
	}
	go wc.readLoop()
}

// wsConn is one WebSocket: its waiter goroutine owns it, a reader goroutine
// runs while the device's frames come in, and a writer goroutine while there
// is something to send.
//
// It is kept small, since every idle device has one: the socket is out.conn,
// and the small fields come together.
type wsConn struct {
	srv  *Server
	c    *websocket.Conn
	br   *bufio.Reader // c's: frames may wait in it (see buffered)
	out  corkWriter    // under c's bufio.Writer; out.conn is the socket
	wmu  sync.Mutex    // one write (cork, frames, uncork) at a time
	sess *hub.Session  // set before ready

	heard   atomic.Int64 // unix ns of the last frame from the device
	ready   atomic.Bool  // the welcome was sent: messages may follow
	writing atomic.Bool  // a writer goroutine runs
	pingDue atomic.Bool  // the pinger asked for a ping frame
	slot    uint8        // in the registry
	why     uint8        // the first close's reason (endReasonIndex), under mu; 0: none

	// mu orders closing against buffered: once a close has begun, its
	// handshake reads br on the closing goroutine.
	mu      sync.Mutex
	closing atomic.Bool
}

// wake is the session's callback: it never blocks.
func (wc *wsConn) wake() {
	if !wc.ready.Load() {
		return // open kicks once the welcome is out
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

// The frames an idle connection sends and reads, as bytes: an idle
// connection makes no garbage, so that the GC has no reason to run and the
// runtime returns what it does not use (see BENCHMARKS.md).
var (
	pingFrame = []byte(`{"type":"ping"}`)
	pongFrame = []byte(`{"type":"pong"}`)
)

// flush writes a due ping and every message the session has now. It returns
// false when the connection is done for.
func (wc *wsConn) flush(buf *[]byte) bool {
	wc.begin()
	ok, ended := wc.flushCorked(buf)
	if !wc.end(ok) {
		return false
	}
	if ended != nil {
		wc.close(reasonOf(ended)) // after what was taken
		return false
	}
	return true
}

// flushCorked writes the frames of flush. It returns false when a write
// failed, and why the session ended if it has.
func (wc *wsConn) flushCorked(buf *[]byte) (bool, error) {
	if wc.pingDue.Swap(false) && !wc.frame(pingFrame) {
		return false, nil
	}
	for {
		msgs, err := wc.sess.Take(wsTakeBatch)
		if err != nil || len(msgs) == 0 {
			return true, err
		}
		for _, m := range msgs {
			*buf = appendMsg((*buf)[:0], m)
			if !wc.frame(*buf) {
				return false, nil
			}
		}
	}
}

// send writes one frame.
func (wc *wsConn) send(b []byte) bool {
	wc.begin()
	return wc.end(wc.frame(b))
}

// begin starts a write: frames gather until end sends them to the device in
// one write. A device that does not take it within wsWriteTimeout is too
// slow: its connection is cut without a close frame, since the stream may
// have stopped inside a frame (and a device that takes nothing would not
// take a close frame either).
func (wc *wsConn) begin() {
	wc.wmu.Lock()
	wc.out.cork(time.Now().Add(wsWriteTimeout))
}

// end ends the write begin started; ok is whether its frames were taken. It
// reports whether the connection goes on.
func (wc *wsConn) end(ok bool) bool {
	err := wc.out.uncork()
	wc.wmu.Unlock()
	if err != nil || !ok {
		wc.c.CloseNow()
		return false
	}
	return true
}

// frame hands one text frame to the corked connection.
func (wc *wsConn) frame(b []byte) bool {
	// No context deadline: the corkWriter's socket writes have one. A
	// context with a timeout would stay with the connection (the library
	// keeps the last write's): a timer and a context for every idle device.
	return wc.c.Write(context.Background(), websocket.MessageText, b) == nil
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
	// A hello that does not come within the hello timeout ends the
	// connection with 4400. Not a context deadline on the read: the library
	// answers an expired read context by dropping the socket, and the
	// device would see a bare EOF.
	late := &wc.srv.ws.wg
	late.Add(1)
	timer := time.AfterFunc(wc.srv.limits.HelloTimeout, func() {
		defer late.Done()
		wc.close(reasonProtocol)
	})
	data, err := wc.readHello()
	if !timer.Stop() {
		return false // too late: the close has begun
	}
	late.Done()
	if err != nil {
		return false
	}
	var f frame
	if err := decodeStrict(data, &f, false); err != nil || f.Type != "hello" {
		wc.close(reasonProtocol)
		return false
	}
	b := data[:0]
	sess, wel, err := wc.srv.openSession(context.Background(), f.hello, wc.wake)
	if err != nil {
		wc.close(reasonOf(err))
		return false
	}
	wc.sess = sess
	wc.srv.sessionOpened(kindWS, sess)
	b = wc.srv.appendWelcome(append(b[:0], `{"type":"welcome",`...), wel)
	b = append(b, '}')
	if !wc.send(b) {
		return false
	}
	wc.ready.Store(true)
	wc.kick()
	return true
}

// finish releases the connection: the session, the socket, the registry.
func (wc *wsConn) finish() {
	if wc.sess != nil {
		wc.mu.Lock()
		why := wc.why
		wc.mu.Unlock()
		wc.srv.sessionEnded(kindWS, wc.sess, endReasonName(why))
	}
	wc.c.CloseNow()
	wc.srv.ws.remove(wc)
}

// readLoop is the connection's waiter: it owns the connection for its life
// and waits for the device's frames with a stack that stays small. Reading
// a frame takes a deep stack (the websocket library's frame parser, JSON,
// the ack's path into the hub), and a goroutine's stack never shrinks below
// twice the depth it is parked at; so the frames are read and handled on a
// reader goroutine that ends once they are, and this one parks in
// awaitReadable, a few frames deep. Idle, a connection costs one 2 KiB
// stack, not the 8 KiB that a goroutine parked in the library's Read keeps.
func (wc *wsConn) readLoop() {
	defer wc.finish()
	var burst sync.WaitGroup
	for {
		if !wc.buffered() {
			if err := awaitReadable(wc.out.conn); err != nil {
				return
			}
		}
		more := false
		burst.Go(func() { more = wc.readFrames() })
		burst.Wait()
		if !more {
			return
		}
	}
}

// readFrames reads and handles the device's frames until none is waiting.
// It reports whether the connection goes on.
func (wc *wsConn) readFrames() bool {
	for {
		if !wc.readFrame() {
			return false
		}
		if !wc.buffered() {
			return true
		}
	}
}

// buffered reports whether bytes of a frame wait in the connection's
// buffer, where awaitReadable cannot see them.
func (wc *wsConn) buffered() bool {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return !wc.closing.Load() && wc.br.Buffered() > 0
}

// readFrame reads one frame and handles it. It reports whether the
// connection goes on.
func (wc *wsConn) readFrame() bool {
	bp := wsInBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= wsReadLimit+1 {
			wsInBufs.Put(bp)
		}
	}()
	data, err := wc.read(context.Background(), bp)
	if err != nil {
		return false
	}
	// The frames of an idle device, without JSON.
	switch {
	case bytes.Equal(data, pongFrame):
		return true
	case bytes.Equal(data, pingFrame):
		return wc.send(pongFrame)
	}
	var f frame
	if err := decodeStrict(data, &f, false); err != nil {
		wc.close(reasonProtocol)
		return false
	}
	switch f.Type {
	case "ack":
		if f.Seq == nil {
			wc.close(reasonProtocol)
			return false
		}
		if err := wc.sess.Ack(*f.Seq); err != nil {
			we, _ := lookup(err)
			b := appendErrorBody(nil, we.code, err.Error())
			b = append([]byte(`{"type":"error",`), b[1:]...)
			return wc.send(b)
		}
	case "pong":
	case "ping":
		return wc.send(pongFrame)
	default: // a second hello, or an unknown type
		wc.close(reasonProtocol)
		return false
	}
	return true
}

// wsInBufs holds the buffers frames are read into.
var wsInBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// read reads one frame's bytes into *bp. A binary frame closes the
// connection with protocol_error; one over wsReadLimit with 1009.
//
// The limit is ours, not the library's (its read limit is off): the
// library closes the socket at once when a frame passes its limit, with
// the rest of the frame still unread in the kernel's buffer, and a socket
// closed with unread bytes sends a reset that can overtake the close
// frame, so the device saw a bare reset instead of 1009. Here the rest of
// the frame is read and dropped first, up to wsDrainLimit, then closed.
func (wc *wsConn) read(ctx context.Context, bp *[]byte) ([]byte, error) {
	typ, r, err := wc.c.Reader(ctx)
	if err != nil {
		return nil, err
	}
	b := (*bp)[:0]
	lr := io.LimitReader(r, wsReadLimit+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = b
			return nil, err
		}
	}
	*bp = b
	wc.heard.Store(time.Now().UnixNano())
	if len(b) > wsReadLimit {
		_, _ = io.Copy(io.Discard, io.LimitReader(r, wsDrainLimit))
		wc.close(reasonTooBig)
		return nil, errTooBig
	}
	if typ != websocket.MessageText {
		wc.close(reasonProtocol)
		return nil, errProtocol
	}
	return b, nil
}

// readHello reads the first frame. It is read without the library's
// limit, which would close an oversized frame with 1009 itself: a hello
// over wsReadLimit, or one that is not a text frame, is a protocol error
// (4400), like any other malformed hello. What is read stops at the limit.
func (wc *wsConn) readHello() ([]byte, error) {
	wc.c.SetReadLimit(-1)
	typ, r, err := wc.c.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, wsReadLimit+1))
	if err != nil {
		return nil, err
	}
	wc.heard.Store(time.Now().UnixNano())
	if typ != websocket.MessageText || len(b) > wsReadLimit {
		wc.close(reasonProtocol)
		return nil, errProtocol
	}
	return b, nil
}

// wsCloseGrace bounds the close handshake: a device too slow to take its
// messages will not take a close frame either.
const wsCloseGrace = time.Second

// close ends the connection with reason: a close frame, then the socket.
func (wc *wsConn) close(r endReason) {
	wc.mu.Lock()
	closing := wc.closing.Swap(true)
	if !closing {
		wc.why = endReasonIndex(r)
	}
	wc.mu.Unlock()
	if closing {
		return
	}
	force := time.AfterFunc(wsCloseGrace, func() { wc.out.conn.Close() }) // the socket, under c
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
// for shutdown. The connections are spread over wsPingSlots slots, pinged
// one slot at a time.
type wsConns struct {
	mu     sync.Mutex
	slots  [wsPingSlots]map[*wsConn]struct{}
	next   uint8 // the slot of the next connection
	closed bool
	wg     sync.WaitGroup // waiters (each waits for its readers), writers, closers
}

// wsPingSlots is in how many parts the pinger goes through the connections
// in a ping interval: the pings, the pongs and the goroutines that write
// and read them come a part at a time, not all at once. (Goroutines are
// cheap, but the runtime keeps a descriptor for as many as ever ran at
// once.)
const wsPingSlots = 16

func (r *wsConns) add(wc *wsConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	wc.slot = r.next
	r.next = (r.next + 1) % wsPingSlots
	if r.slots[wc.slot] == nil {
		r.slots[wc.slot] = make(map[*wsConn]struct{})
	}
	r.slots[wc.slot][wc] = struct{}{}
	r.wg.Add(1) // the waiter's
	return true
}

func (r *wsConns) remove(wc *wsConn) {
	r.mu.Lock()
	delete(r.slots[wc.slot], wc)
	r.mu.Unlock()
	r.wg.Done()
}

// pingLoop asks every WebSocket for a sign of life each interval, and closes
// those from which nothing was heard for two intervals.
func (s *Server) pingLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PingInterval / wsPingSlots)
	defer t.Stop()
	for slot := 0; ; slot = (slot + 1) % wsPingSlots {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.ws.ping(slot, now.Add(-2*s.cfg.PingInterval).UnixNano())
		}
	}
}

// ping pings the connections of slot, and closes those from which nothing
// was heard since dead. Neither waits: a writer or a closer goroutine does.
func (r *wsConns) ping(slot int, dead int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for wc := range r.slots[slot] {
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

// closeAll closes every WebSocket with going_away and refuses new ones.
func (r *wsConns) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, conns := range r.slots {
		for wc := range conns {
			wc.closeAsync(reasonGoingAway)
		}
	}
}

// wsHijacker hands websocket.Accept the hijacked connection with small
// buffers instead of net/http's 4 KiB ones, keeping what the client already
// sent, and gives wc the connection and its reader.
type wsHijacker struct {
	http.ResponseWriter
	wc *wsConn
}

func (w *wsHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
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
	// Bytes the client sent right after its handshake may sit in net/http's
	// reader: they move to the small one, which is made big enough to hold
	// them (the library keeps only what the reader it is handed buffers).
	var br *bufio.Reader
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(n, wsReadBufSize))
		if _, err := br.Peek(n); err != nil {
			conn.Close()
			return nil, nil, err
		}
	} else {
		br = bufio.NewReaderSize(conn, wsReadBufSize)
	}
	w.wc.br, w.wc.out.conn = br, conn
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(&w.wc.out, wsWriteBufSize)), nil
}

// corkWriter is what a connection's bufio.Writer writes to. While the
// connection's own write has it corked, the bytes gather in a buffer from a
// pool and reach the socket in one write (or a few, for a large batch),
// under the write's deadline; the rest of the time (the library's close and
// pong frames) they go straight through. An idle connection holds no write
// buffer, and a batch of messages costs one system call, not one each.
type corkWriter struct {
	mu   sync.Mutex
	conn net.Conn
	buf  *[]byte // from wsOutBufs, while corked
}

// wsOutBufs holds the corkWriters' buffers. A corked write that reaches
// wsOutFlushAt bytes goes out then; a buffer that grew past wsOutKeep is
// not kept.
var wsOutBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

const (
	wsOutFlushAt = 32 << 10
	wsOutKeep    = 64 << 10
)

func (w *corkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf == nil {
		return w.conn.Write(p)
	}
	*w.buf = append(*w.buf, p...)
	if len(*w.buf) >= wsOutFlushAt {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// cork starts gathering writes, which must reach the socket by deadline.
func (w *corkWriter) cork(deadline time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = wsOutBufs.Get().(*[]byte)
	w.conn.SetWriteDeadline(deadline)
}

// uncork writes what was gathered and returns the buffer to the pool.
func (w *corkWriter) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.flushLocked()
	if cap(*w.buf) <= wsOutKeep {
		wsOutBufs.Put(w.buf)
	}
	w.buf = nil
	w.conn.SetWriteDeadline(time.Time{})
	return err
}

func (w *corkWriter) flushLocked() error {
	if len(*w.buf) == 0 {
		return nil
	}
	_, err := w.conn.Write(*w.buf)
	*w.buf = (*w.buf)[:0]
	return err
}
