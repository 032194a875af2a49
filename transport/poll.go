package transport

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// Long-polling devices: POST /v1/poll. docs/protocol.md, "Long-polling",
// is the contract.
//
// A long-poll session has no goroutine of its own. The request being held
// (at most one) waits on the session's wake channel, its wait timer, its
// connection, and a channel a newer request closes to take the hold over.
// Between requests an inactivity timer (time.AfterFunc) is armed. Only the
// holder calls Take, and a new holder starts taking only once the previous
// one is done, so Take is never called from two goroutines at once.

const (
	pollBodyLimit   = 8 << 10 // largest request body
	pollTakeBatch   = 100     // messages in one answer
	pollDefaultWait = 30 * time.Second
	maxFirstRid     = 1 << 52   // the first rid is 1 to 2^52
	maxRid          = 1<<53 - 1 // rids stay exact in a JavaScript number
)

// pollRequest is every request of POST /v1/poll: the first carries hello
// and rid, the others sid and rid.
type pollRequest struct {
	Hello     *hello          `json:"hello"`
	Sid       string          `json:"sid"`
	Rid       *uint64         `json:"rid"`
	Ack       *mailbox.Seq    `json:"ack"`
	Wait      json.RawMessage `json:"wait"`
	Terminate bool            `json:"terminate"`
}

// POST /v1/poll
func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	var req pollRequest
	if err := decodeJSON(w, r, pollBodyLimit, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	wait, err := s.pollWait(req.Wait)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Hello != nil {
		s.openPoll(w, r, &req)
		return
	}
	if req.Sid == "" || req.Rid == nil {
		s.writeError(w, r, withDetail(errProtocol, "a request carries sid and rid, or hello and rid"))
		return
	}
	if *req.Rid == 0 || *req.Rid > maxRid {
		s.writeError(w, r, withDetail(errProtocol, "rid must be an integer from 1 to 2^53-1"))
		return
	}
	e, ok := s.sids.get(req.Sid)
	if !ok || e.poll == nil {
		s.writeError(w, r, errSessionUnknown)
		return
	}
	e.poll.serve(w, r, *req.Rid, req.Ack, wait, req.Terminate)
}

// pollWait reads the wait field: whole seconds from 0 to PollWaitMax;
// absent or null is the default.
func (s *Server) pollWait(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return min(pollDefaultWait, s.cfg.PollWaitMax), nil
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil || n < 0 || time.Duration(n) > s.cfg.PollWaitMax/time.Second {
		return 0, withDetail(errBadWait, "wait must be whole seconds from 0 to "+
			strconv.FormatInt(int64(s.cfg.PollWaitMax/time.Second), 10))
	}
	return time.Duration(n) * time.Second, nil
}

// openPoll serves the first request: it opens the session and answers at
// once with the welcome and what the device missed.
func (s *Server) openPoll(w http.ResponseWriter, r *http.Request, req *pollRequest) {
	if req.Sid != "" || req.Ack != nil || req.Terminate {
		s.writeError(w, r, withDetail(errProtocol, "the first request carries hello and rid only; the ack goes in the hello"))
		return
	}
	if req.Rid == nil || *req.Rid == 0 || *req.Rid > maxFirstRid {
		s.writeError(w, r, withDetail(errProtocol, "the first rid must be an integer from 1 to 2^52"))
		return
	}
	rid := *req.Rid
	ps := &pollSession{
		srv:     s,
		woken:   newWakeSignal(),
		changed: make(chan struct{}),
		lastRid: rid,
	}
	sess, wel, err := s.openSession(r.Context(), *req.Hello, ps.woken.wake)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ps.sid, ps.sess = wel.session, sess
	s.sessionOpened(kindPoll, sess)
	// The session may hold a request as long as it lives: it counts
	// against its user's and its address's waits until it ends.
	release, err := s.acquireDeviceWait(r, wel.user)
	if err != nil {
		s.sessionEnded(kindPoll, sess, endRefused)
		s.writeError(w, r, err)
		return
	}
	ps.release = release
	if !s.sids.add(ps.sid, sidEntry{sess: sess, poll: ps}) {
		s.sessionEnded(kindPoll, sess, reasonGoingAway.code)
		s.writeError(w, r, cluster.ErrClosed)
		return
	}
	msgs, err := sess.Take(pollTakeBatch)
	if err != nil {
		ps.close()
		s.writeError(w, r, err)
		return
	}

	b := make([]byte, 0, 256)
	b = append(b, `{"sid":`...)
	b = appendString(b, ps.sid)
	b = append(b, `,"rid":`...)
	b = strconv.AppendUint(b, rid, 10)
	b = append(b, `,"welcome":{`...)
	b = appendWelcomeFields(b, wel)
	b = append(b, `,"inactivity":`...)
	b = strconv.AppendInt(b, int64(s.cfg.PollInactivity/time.Second), 10)
	b = append(b, `,"wait_max":`...)
	b = strconv.AppendInt(b, int64(s.cfg.PollWaitMax/time.Second), 10)
	b = append(b, '}')
	b = appendMessages(b, msgs)

	ps.mu.Lock()
	ps.record(rid, b)
	if !ps.gone { // Server.Close may have come between
		ps.idleAt = time.Now().Add(s.cfg.PollInactivity)
		ps.idle = time.AfterFunc(s.cfg.PollInactivity, ps.idleCheck)
	}
	ps.mu.Unlock()
	writePollAnswer(w, b)
}

// appendMessages appends `,"messages":[...]}`: the end of an answer.
func appendMessages(b []byte, msgs []*mailbox.Message) []byte {
	b = append(b, `,"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMsg(b, m)
	}
	return append(b, "]}"...)
}

// writePollAnswer writes an answer; it names the session, so no cache keeps it.
func writePollAnswer(w http.ResponseWriter, b []byte) {
	w.Header().Set("Cache-Control", "no-store")
	writeRaw(w, http.StatusOK, b)
}

// pollSession is one long-poll session.
type pollSession struct {
	srv   *Server
	sid   string
	sess  *hub.Session
	woken wakeSignal  // the session may have something to take
	idle  *time.Timer // ends the session when idleAt passes
	// release gives back the session's slot in the wait caps.
	release func()

	mu      sync.Mutex
	lastRid uint64        // the newest rid taken (answered, held, or abandoned unanswered)
	answers [2]pollAnswer // the answers to the two newest answered rids, newest first
	held    *pollHold     // the request holding the session, if any
	idleAt  time.Time     // when the session ends unless a request comes; zero while one is held
	gone    bool          // closed and out of the registry
	changed chan struct{} // closed and replaced when an answer is recorded, a hold ends, or the session goes
}

// pollAnswer is the exact body of the answer to one rid.
type pollAnswer struct {
	rid  uint64
	body []byte
}

// pollHold is one request that holds, or is about to hold, the session.
type pollHold struct {
	rid     uint64
	preempt chan struct{}      // closed when a newer request (or a retry of this rid) takes over
	done    chan struct{}      // closed once it takes no more from the session
	carry   []*mailbox.Message // taken by the request this one took over from, for this rid
}

// answer returns the recorded answer to rid, or nil.
func (ps *pollSession) answer(rid uint64) []byte {
	for _, a := range ps.answers {
		if a.body != nil && a.rid == rid {
			return a.body
		}
	}
	return nil
}

// record keeps body as the answer to rid, dropping the oldest of the two.
// ps.mu is held.
func (ps *pollSession) record(rid uint64, body []byte) {
	switch {
	case ps.answers[0].body == nil || rid > ps.answers[0].rid:
		ps.answers[1] = ps.answers[0]
		ps.answers[0] = pollAnswer{rid, body}
	case ps.answers[1].body == nil || rid > ps.answers[1].rid:
		ps.answers[1] = pollAnswer{rid, body}
	}
	ps.notify()
}

// notify wakes requests waiting for an answer to a rid another request
// took over. ps.mu is held.
func (ps *pollSession) notify() {
	close(ps.changed)
	ps.changed = make(chan struct{})
}

// armIdle starts the inactivity clock: nothing is held. ps.mu is held.
func (ps *pollSession) armIdle() {
	if ps.gone {
		return
	}
	ps.idleAt = time.Now().Add(ps.srv.cfg.PollInactivity)
	ps.idle.Reset(ps.srv.cfg.PollInactivity)
}

// idleCheck runs on the inactivity timer: it ends the session unless a
// request is held or came since.
func (ps *pollSession) idleCheck() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.gone || ps.held != nil || ps.idleAt.IsZero() {
		return
	}
	if d := time.Until(ps.idleAt); d > 0 {
		ps.idle.Reset(d)
		return
	}
	ps.drop(endInactive)
}

// drop ends the session and forgets its sid; why is the end's reason in
// /metrics unless the hub ended the session first. ps.mu is held.
func (ps *pollSession) drop(why string) {
	if ps.gone {
		return
	}
	ps.gone = true
	if ps.idle != nil {
		ps.idle.Stop()
	}
	ps.srv.sessionEnded(kindPoll, ps.sess, why)
	if ps.release != nil {
		ps.release()
	}
	ps.srv.sids.remove(ps.sid)
	ps.notify()
}

// close ends the session, for Server.Close.
func (ps *pollSession) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.drop(reasonGoingAway.code)
}

// serve serves a request after the first: rid is checked against the
// window, ack taken, and the request holds the session until it has
// messages, wait passes, or a newer request takes over.
func (ps *pollSession) serve(w http.ResponseWriter, r *http.Request, rid uint64, ack *mailbox.Seq, wait time.Duration, terminate bool) {
	s := ps.srv
	var me *pollHold
	following := false // this request was taken over by a retry of its rid
	for {
		ps.mu.Lock()
		if ps.gone {
			ps.mu.Unlock()
			s.writeError(w, r, errSessionUnknown)
			return
		}
		if err := ps.sess.Err(); err != nil {
			// The hub ended the session. The held request (and a retry
			// of it) hears why, and so does the next request; after that
			// the session is unknown.
			if !following {
				ps.drop(endDisconnected) // the hub's reason is counted
			}
			ps.mu.Unlock()
			s.writeError(w, r, err)
			return
		}
		if b := ps.answer(rid); b != nil {
			if ps.held == nil {
				ps.armIdle()
			}
			ps.mu.Unlock()
			writePollAnswer(w, b) // a retransmission: nothing changes
			return
		}
		switch {
		case rid == ps.lastRid+1 && !following:
		case rid == ps.lastRid && (ps.held == nil || !following):
			// A retry of the rid being held (its connection was lost, or
			// seemed so): it takes the hold over. Or a retry of one
			// abandoned unanswered, or a taken-over request whose
			// successor gave up.
		case rid == ps.lastRid && following:
			ch := ps.changed
			ps.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-r.Context().Done():
				return
			}
		default:
			next := ps.lastRid + 1
			ps.mu.Unlock()
			s.writeError(w, r, withDetail(errRidWindow,
				"rid "+strconv.FormatUint(rid, 10)+" is neither a repeat of the last two nor "+strconv.FormatUint(next, 10)))
			return
		}
		if ack != nil && !following {
			if err := ps.sess.Ack(*ack); err != nil {
				ps.mu.Unlock()
				s.writeError(w, r, withDetail(err, err.Error()))
				return
			}
		}
		prev := ps.held
		me = &pollHold{rid: rid, preempt: make(chan struct{}), done: make(chan struct{})}
		ps.held = me
		ps.lastRid = rid
		ps.idleAt = time.Time{}
		if prev != nil {
			close(prev.preempt)
		}
		ps.mu.Unlock()
		if prev != nil {
			<-prev.done
		}
		if terminate {
			ps.terminate(w, me)
			return
		}
		if !ps.hold(w, r, me, wait) {
			return
		}
		following = true
	}
}

// terminate ends the session at the client's request.
func (ps *pollSession) terminate(w http.ResponseWriter, me *pollHold) {
	ps.mu.Lock()
	ps.drop(endTerminated)
	close(me.done)
	ps.mu.Unlock()
	b := append([]byte(`{"sid":`), appendString(nil, ps.sid)...)
	b = append(b, `,"rid":`...)
	b = strconv.AppendUint(b, me.rid, 10)
	b = append(b, `,"terminated":true}`...)
	writePollAnswer(w, b)
}

// hold waits for messages and answers. It returns true when a retry of
// the same rid took over, so this request must wait for that one's answer
// and send the same bytes.
func (ps *pollSession) hold(w http.ResponseWriter, r *http.Request, me *pollHold, wait time.Duration) bool {
	msgs := me.carry // set by the previous holder before its done closed
	var endErr error
	var expired <-chan time.Time
	if wait > 0 && len(msgs) == 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	abandoned := false
waiting:
	for len(msgs) == 0 {
		select {
		case <-me.preempt:
			break waiting
		default:
		}
		m, err := ps.sess.Take(pollTakeBatch)
		if err != nil {
			endErr = err
			break
		}
		if len(m) > 0 {
			msgs = m
			break
		}
		if wait == 0 {
			break
		}
		select {
		case <-ps.woken:
		case <-ps.sess.Done():
		case <-me.preempt:
			break waiting
		case <-expired:
			break waiting
		case <-r.Context().Done():
			abandoned = true
			break waiting
		}
	}

	ps.mu.Lock()
	holder := ps.held == me
	if holder {
		ps.held = nil
		ps.armIdle()
	}
	switch {
	case endErr != nil:
		close(me.done)
		ps.notify()
		ps.mu.Unlock()
		ps.srv.writeError(w, r, endErr)
		return false
	case !holder && ps.held != nil && ps.held.rid == me.rid:
		// A retry of this rid took over: it answers the rid, with what
		// this one took.
		ps.held.carry = msgs
		close(me.done)
		ps.mu.Unlock()
		return !abandoned
	case abandoned && holder:
		// The client went away before anything was taken: the rid stays
		// unanswered, and a retry of it holds again.
		close(me.done)
		ps.notify()
		ps.mu.Unlock()
		return false
	}
	b := make([]byte, 0, 128)
	b = append(b, `{"sid":`...)
	b = appendString(b, ps.sid)
	b = append(b, `,"rid":`...)
	b = strconv.AppendUint(b, me.rid, 10)
	b = appendMessages(b, msgs)
	ps.record(me.rid, b)
	close(me.done)
	ps.mu.Unlock()
	if !abandoned {
		writePollAnswer(w, b)
	}
	return false
}
