package hub

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/notifyhub/hub/mailbox"
)

// Store is what the hub reads: the stream a session missed.
type Store interface {
	Messages(userID string, after mailbox.Seq, limit int, now int64) ([]mailbox.Message, error)
}

// Proposer is what the hub writes through: batched acks. *cluster.Node
// satisfies it.
type Proposer interface {
	Propose(ctx context.Context, cmd *mailbox.Command) (mailbox.Result, error)
}

// Config configures a Hub. Zero fields take the defaults.
type Config struct {
	// QueueLen is how many live messages a session may hold unsent before
	// it ends with ErrTooSlow; default 1024.
	QueueLen int
	// Logger receives failures of ack batches; nil discards.
	Logger *slog.Logger
}

// DefaultQueueLen is Config.QueueLen's default.
const DefaultQueueLen = 1024

// Hub is the registry of this node's sessions. Its methods are safe for
// concurrent use.
type Hub struct {
	cfg   Config
	store Store
	log   *slog.Logger
	acks  *acker

	mu     sync.RWMutex
	users  map[string]map[*Session]struct{}
	closed bool

	sessions  atomic.Int64  // open sessions
	published atomic.Uint64 // messages applied (on every node, whichever took the publish)
	delivered atomic.Uint64 // messages queued to sessions by live pushes
	tooSlow   atomic.Uint64 // sessions ended by ErrTooSlow
}

// New returns a hub that reads missed messages from store. Acks are
// proposed once Start has been called.
func New(cfg Config, store Store) *Hub {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		cfg:   cfg,
		store: store,
		log:   cfg.Logger,
		users: make(map[string]map[*Session]struct{}),
	}
	h.acks = newAcker(h.log)
	return h
}

// Start begins proposing the sessions' acks through p, on a goroutine that
// Close stops. The hub is built before the raft node it hears from, and the
// node proposes for it, hence the two steps.
func (h *Hub) Start(p Proposer) { h.acks.start(p) }

// Attach registers a session for a device of user that has acknowledged
// everything up to from. wake is called, from any goroutine and without
// blocking, whenever Take has something new: messages or the end of the
// session. The first call to Take reads what the device missed.
func (h *Hub) Attach(user, device string, from mailbox.Seq, wake func()) (*Session, error) {
	s := &Session{
		hub:    h,
		user:   user,
		device: device,
		wake:   wake,
		sent:   from,
		acked:  from,
		behind: true,
		done:   make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	set := h.users[user]
	if set == nil {
		set = make(map[*Session]struct{})
		h.users[user] = set
	}
	set[s] = struct{}{}
	h.sessions.Add(1)
	return s, nil
}

func (h *Hub) remove(s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[s.user]
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(h.users, s.user)
	}
	h.sessions.Add(-1)
}

// Applied takes the events of one applied raft entry. It runs on raft's FSM
// goroutine: it queues and wakes, and never waits for a transport.
func (h *Hub) Applied(events []mailbox.Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for i := range events {
		e := &events[i]
		if e.Kind == mailbox.EventPublished {
			h.published.Add(1)
		}
		set := h.users[e.UserID]
		if len(set) == 0 {
			continue
		}
		switch e.Kind {
		case mailbox.EventPublished:
			for s := range set {
				switch s.push(e.Message) {
				case pushQueued:
					h.delivered.Add(1)
					s.wake()
				case pushTooSlow:
					h.tooSlow.Add(1)
					s.wake()
				}
			}
		case mailbox.EventUserDeleted:
			for s := range set {
				s.end(ErrUserDeleted)
			}
		case mailbox.EventDeviceDeleted:
			for s := range set {
				if s.device == e.Device {
					s.end(ErrDeviceDeleted)
				}
			}
		}
	}
}

// Restored is called after the store was replaced by a snapshot: every
// session reads the store again from what it sent.
func (h *Hub) Restored() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, set := range h.users {
		for s := range set {
			s.rewind()
			s.wake()
		}
	}
}

// BackupRestored is called, before Restored, when the store was replaced by
// a backup (cluster.Node.Restore): every session ends with ErrRestored, so
// that its device starts again from the restored state (the cursor it sends
// in its hello stays good: a restore never reuses a seq).
func (h *Hub) BackupRestored() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, set := range h.users {
		for s := range set {
			s.end(ErrRestored)
		}
	}
}

// Stats is a point-in-time view of the hub.
type Stats struct {
	Sessions   int64  // open sessions
	Users      int    // users with at least one open session
	Published  uint64 // messages applied since start
	Delivered  uint64 // live messages queued to sessions since start
	TooSlow    uint64 // sessions ended for being too slow since start
	AckBatches uint64 // ack batches committed since start
	Acks       uint64 // device acks committed since start
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	users := len(h.users)
	h.mu.RUnlock()
	return Stats{
		Sessions:   h.sessions.Load(),
		Users:      users,
		Published:  h.published.Load(),
		Delivered:  h.delivered.Load(),
		TooSlow:    h.tooSlow.Load(),
		AckBatches: h.acks.batches.Load(),
		Acks:       h.acks.count.Load(),
	}
}

// Close ends every session with ErrClosed, refuses new ones, and proposes
// the acks still waiting (within ctx) before it stops the ack goroutine.
func (h *Hub) Close(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	var all []*Session
	for _, set := range h.users {
		for s := range set {
			all = append(all, s)
		}
	}
	h.mu.Unlock()
	for _, s := range all {
		s.end(ErrClosed)
	}
	h.acks.stop(ctx)
}
