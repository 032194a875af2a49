package transport

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/mailbox"
)

// Server-Sent Events devices: GET /v1/sse. docs/protocol.md, "Server-Sent
// Events", is the contract.

const (
	sseWriteTimeout = 10 * time.Second // one batch to a device; past it the device is gone or too slow
	sseTakeBatch    = 64               // messages taken from the session at a time
)

// GET /v1/sse?ticket=…&device=…&ack=N
//
// The handler's goroutine owns the stream: it waits for the session's wake,
// the ping ticker, the session's end or the client going away, and writes.
// Acks come through POST /v1/ack.
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	h := hello{Ticket: q.Get("ticket"), Device: q.Get("device")}
	ack := q.Get("ack")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		ack = id // the browser's own reconnect: the last msg it got
	}
	if ack != "" {
		n, err := strconv.ParseUint(ack, 10, 63)
		if err != nil {
			s.writeError(w, r, withDetail(errProtocol, "ack and Last-Event-ID must be a seq: decimal digits"))
			return
		}
		seq := mailbox.Seq(n)
		h.Ack = &seq
	}

	woken := newWakeSignal()
	sess, wel, err := s.openSession(r.Context(), h, woken.wake)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.sessionOpened(kindSSE, sess)
	defer s.sessionEnded(kindSSE, sess, endDisconnected)
	release, err := s.acquireDeviceWait(r, wel.user)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	if !s.sids.add(wel.session, sidEntry{sess: sess}) {
		s.writeError(w, r, cluster.ErrClosed)
		return
	}
	defer s.sids.remove(wel.session)

	rc := http.NewResponseController(w)
	// The deadline would outlive the stream on a kept-alive connection.
	defer rc.SetWriteDeadline(time.Time{})
	send := func(b []byte) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	hd["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusOK)

	b := make([]byte, 0, 512)
	b = append(b, "event: welcome\ndata: {"...)
	b = s.appendWelcome(b, wel)
	b = append(b, "}\n\n"...)
	if !send(b) {
		return
	}

	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	for {
		for {
			msgs, err := sess.Take(sseTakeBatch)
			if err != nil {
				rs := reasonOf(err)
				if rs == reasonInternal {
					s.log.Error("transport: SSE session", slog.Any("err", err))
				}
				b = append(b[:0], "event: error\ndata: "...)
				b = appendErrorBody(b, rs.code, rs.message)
				b = append(b, "\n\n"...)
				send(b)
				return
			}
			if len(msgs) == 0 {
				break
			}
			b = b[:0]
			for _, m := range msgs {
				b = append(b, "event: msg\nid: "...)
				b = strconv.AppendUint(b, uint64(m.Seq), 10)
				b = append(b, "\ndata: "...)
				b = appendMsg(b, m) // one line: appendString escapes line breaks
				b = append(b, "\n\n"...)
			}
			if !send(b) {
				return
			}
		}
		select {
		case <-woken:
		case <-sess.Done():
		case <-ping.C:
			if !send([]byte(": ping\n\n")) {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}
