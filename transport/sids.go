package transport

import (
	"net/http"
	"sync"

	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// sidRegistry holds this server's long-poll and SSE sessions by sid, the
// capability a client names them with in POST /v1/poll and POST /v1/ack.
// A sid is never logged, and never leaves this map but in its own answers.
//
// Lock order: a pollSession's mu before the registry's.
type sidRegistry struct {
	mu     sync.Mutex
	m      map[string]sidEntry
	closed bool
}

// sidEntry is one session: a long-poll session, or an event stream (poll
// is nil) whose handler goroutine owns it.
type sidEntry struct {
	sess *hub.Session
	poll *pollSession
}

// add registers a session; it refuses once closeAll has begun.
func (r *sidRegistry) add(sid string, e sidEntry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.m == nil {
		r.m = make(map[string]sidEntry)
	}
	r.m[sid] = e
	return true
}

func (r *sidRegistry) get(sid string) (sidEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[sid]
	return e, ok
}

func (r *sidRegistry) remove(sid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, sid)
}

// closeAll refuses new sessions and ends every one: long-poll sessions go
// at once (a held request answers 410 going_away), and each event stream's
// handler sees its session end, sends the error event and returns.
func (r *sidRegistry) closeAll() {
	r.mu.Lock()
	r.closed = true
	all := make([]sidEntry, 0, len(r.m))
	for _, e := range r.m {
		all = append(all, e)
	}
	r.mu.Unlock()
	for _, e := range all {
		if e.poll != nil {
			e.poll.close()
		} else {
			e.sess.Close()
		}
	}
}

type ackRequest struct {
	Sid string       `json:"sid"`
	Ack *mailbox.Seq `json:"ack"`
}

// POST /v1/ack
//
// Acknowledges for a long-poll or SSE session. An ended session is unknown:
// its device acks again in its next hello.
func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	var req ackRequest
	if err := decodeJSON(w, r, pollBodyLimit, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Ack == nil {
		s.writeError(w, r, withDetail(errProtocol, "ack is required"))
		return
	}
	e, ok := s.sids.get(req.Sid)
	if !ok || e.sess.Err() != nil {
		s.writeError(w, r, errSessionUnknown)
		return
	}
	if err := e.sess.Ack(*req.Ack); err != nil {
		s.writeError(w, r, withDetail(err, err.Error()))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
