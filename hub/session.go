package hub

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/notifyhub/hub/mailbox"
)

// Why a session ended. Transports map each to their own close code.
var (
	// ErrTooSlow: the session's queue overflowed; the device should reconnect.
	ErrTooSlow = errors.New("hub: session too slow")
	// ErrUserDeleted: the user was deleted.
	ErrUserDeleted = errors.New("hub: user deleted")
	// ErrRestored: the cluster's state was replaced by a backup; the device
	// should reconnect and resume from its own cursor.
	ErrRestored = errors.New("hub: state restored from a backup")
	// ErrDeviceDeleted: the device was deleted.
	ErrDeviceDeleted = errors.New("hub: device deleted")
	// ErrClosed: the hub is shutting down (or the session was closed by its
	// transport).
	ErrClosed = errors.New("hub: closed")
)

// Refusals of Session.Ack. They change nothing.
var (
	// ErrAckBeyondSent: the ack names a seq this session never handed out.
	ErrAckBeyondSent = errors.New("ack beyond what was sent")
	// ErrAckBackwards: the ack is below one the session already took.
	ErrAckBackwards = errors.New("ack below an earlier ack")
)

// Session is one connected device. Take and Ack are meant for its transport;
// Take must not be called from two goroutines at once.
type Session struct {
	hub    *Hub
	user   string
	device string
	wake   func()

	mu     sync.Mutex
	sent   mailbox.Seq        // highest seq handed out by Take
	acked  mailbox.Seq        // highest ack taken from the device
	queue  []*mailbox.Message // live messages with seq > sent, in seq order
	behind bool               // the store may hold messages after sent that are not queued
	drops  uint64             // live messages dropped while behind
	err    error              // why the session ended; nil while it is open
	done   chan struct{}
	live   Observer // takes the delay of each live message handed out; may be nil
}

// Observer takes one value; a prometheus.Observer (a histogram) satisfies
// it. Observe must be safe for concurrent use and must not block.
type Observer interface {
	Observe(float64)
}

// ObserveLive makes the session report, for every message its transport
// takes from the live queue (pushed when it was applied, not read back from
// the store), the seconds from the message's acceptance (its At, the
// leader's clock) to now. Backlog read from the store is not reported: it
// measures how long the device was away, not the hub.
func (s *Session) ObserveLive(o Observer) {
	s.mu.Lock()
	s.live = o
	s.mu.Unlock()
}

// Done is closed when the session ends; Err then says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, or nil while it is open.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Take returns up to max messages to send next, in seq order, and marks them
// sent. It returns no messages and a nil error when there is nothing to send
// now (the session's wake callback fires when there is), and the reason once
// the session has ended.
func (s *Session) Take(limit int) ([]*mailbox.Message, error) {
	limit = max(limit, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, s.err
	}
	if !s.behind {
		out := s.takeQueued(limit, 0)
		s.mu.Unlock()
		return out, nil
	}
	after, drops := s.sent, s.drops
	s.mu.Unlock()

	// Read without the lock: the FSM goroutine queues into this session
	// meanwhile, and must not wait for a disk read.
	stored, err := s.hub.store.Messages(s.user, after, limit, time.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("hub: read stream of %s after %d: %w", s.user, after, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if s.sent != after {
		return nil, errors.New("hub: Take called concurrently")
	}
	full := len(stored) == limit
	if !full && s.drops == drops {
		s.behind = false // the store had nothing more, and the queue has all since
	}
	// Merge: the store's messages, and queued ones that fall between them
	// (a TTL-0 message is never read back from the store). When the read
	// was full, queued messages past it wait for the next Take.
	var upTo mailbox.Seq
	if full {
		upTo = stored[len(stored)-1].Seq
	}
	queued := s.takeQueued(limit, upTo)
	out := make([]*mailbox.Message, 0, len(stored)+len(queued))
	i, j := 0, 0
	for i < len(stored) || j < len(queued) {
		var m *mailbox.Message
		switch {
		case j == len(queued) || (i < len(stored) && stored[i].Seq < queued[j].Seq):
			m = &stored[i]
			i++
		case i == len(stored) || queued[j].Seq < stored[i].Seq:
			m = queued[j]
			j++
		default: // the same seq from both
			m = queued[j]
			i++
			j++
		}
		if m.Seq > after {
			out = append(out, m)
			after = m.Seq
		}
	}
	if len(out) > 0 {
		s.sent = max(s.sent, out[len(out)-1].Seq)
	}
	s.dropSent()
	return out, nil
}

// takeQueued removes up to max queued messages (only those at or below upTo,
// unless upTo is 0) and marks them sent. s.mu is held.
func (s *Session) takeQueued(limit int, upTo mailbox.Seq) []*mailbox.Message {
	s.dropSent()
	n := 0
	for n < len(s.queue) && n < limit && (upTo == 0 || s.queue[n].Seq <= upTo) {
		n++
	}
	if n == 0 {
		return nil
	}
	out := append([]*mailbox.Message(nil), s.queue[:n]...)
	s.queue = append(s.queue[:0], s.queue[n:]...)
	s.sent = max(s.sent, out[n-1].Seq)
	if s.live != nil {
		now := time.Now().UnixNano()
		for _, m := range out {
			s.live.Observe(float64(max(now-m.At, 0)) / 1e9)
		}
	}
	return out
}

// dropSent removes queued messages at or below sent. s.mu is held.
func (s *Session) dropSent() {
	k := 0
	for k < len(s.queue) && s.queue[k].Seq <= s.sent {
		k++
	}
	if k > 0 {
		s.queue = append(s.queue[:0], s.queue[k:]...)
	}
}

// pushResult is what push did with a message.
type pushResult int

const (
	pushIgnored pushResult = iota // already sent, dropped for the store, or the session ended
	pushQueued
	pushTooSlow // the queue overflowed: the session ended
)

// push queues a live message. It runs on the FSM goroutine and never blocks
// on the transport; the caller wakes the transport unless it was ignored.
func (s *Session) push(m *mailbox.Message) pushResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || m.Seq <= s.sent {
		return pushIgnored
	}
	if len(s.queue) >= s.hub.cfg.QueueLen {
		if s.behind {
			s.drops++ // the store has it; Take reads it from there
			return pushIgnored
		}
		s.endLocked(ErrTooSlow)
		return pushTooSlow
	}
	s.queue = append(s.queue, m)
	return pushQueued
}

// Pending reports whether Take would return something now: messages, or the
// reason the session ended. A transport that stops taking checks it after,
// so that a wake between its last Take and its stopping is not lost.
func (s *Session) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropSent()
	return s.err != nil || s.behind || len(s.queue) > 0
}

// rewind makes the session read the store again from what it sent: after a
// snapshot was restored, the stream may have moved without events.
func (s *Session) rewind() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.behind = true
		s.drops++
	}
}

// Ack takes the device's cumulative ack of seq. An ack beyond what this
// session sent, or below an earlier ack, is refused and changes nothing; a
// repeated ack is accepted and changes nothing. Accepted acks reach the store
// in the hub's next batch.
func (s *Session) Ack(seq mailbox.Seq) error {
	s.mu.Lock()
	switch {
	case seq > s.sent:
		sent := s.sent
		s.mu.Unlock()
		return fmt.Errorf("ack %d, sent up to %d: %w", seq, sent, ErrAckBeyondSent)
	case seq < s.acked:
		acked := s.acked
		s.mu.Unlock()
		return fmt.Errorf("ack %d after ack %d: %w", seq, acked, ErrAckBackwards)
	case seq == s.acked:
		s.mu.Unlock()
		return nil
	}
	prev := s.acked
	s.acked = seq
	s.mu.Unlock()
	s.hub.acks.add(s.user, s.device, prev, seq)
	return nil
}

// Close ends the session (if it has not ended) and removes it from the hub.
// The transport calls it when its connection ends.
func (s *Session) Close() {
	s.end(ErrClosed)
	s.hub.remove(s)
}

// end ends the session with err and wakes its transport, unless it had
// already ended.
func (s *Session) end(err error) {
	s.mu.Lock()
	ended := s.endLocked(err)
	s.mu.Unlock()
	if ended {
		s.wake()
	}
}

func (s *Session) endLocked(err error) bool {
	if s.err != nil {
		return false
	}
	s.err = err
	s.queue = nil
	close(s.done)
	return true
}
