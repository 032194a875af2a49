package mailbox

import (
	"sync"
	"sync/atomic"
)

// liveTokens remembers tokens this store last read as open (known and not
// revoked), so that the check a publish makes before it is proposed
// (TokenOpen) costs a map lookup instead of a badger read and a JSON decode
// of the mailbox: that read took a fifth of a publish's CPU.
//
// It is exact as of the last applied command that could close a token: Apply
// calls closed after committing a revoke or a user's deletion, and Restore
// after putting a backup in, which empties the set. Entries are added with
// the generation read before the store was, so a lookup that raced a close
// is not kept. The set is a cache for refusing early, never a source of
// truth: the state machine checks every token again when it applies.
type liveTokens struct {
	gen atomic.Uint64
	mu  sync.RWMutex
	set map[string]uint64 // token hash -> generation it was read in
}

// liveTokensMax bounds the set: past it, the set starts again empty.
const liveTokensMax = 1 << 16

func (l *liveTokens) has(h string) bool {
	gen := l.gen.Load()
	l.mu.RLock()
	g, ok := l.set[h]
	l.mu.RUnlock()
	return ok && g == gen
}

func (l *liveTokens) add(h string, gen uint64) {
	l.mu.Lock()
	if l.set == nil || len(l.set) >= liveTokensMax {
		l.set = make(map[string]uint64)
	}
	l.set[h] = gen
	l.mu.Unlock()
}

// closed forgets every token: one may have been revoked or its user deleted.
func (l *liveTokens) closed() { l.gen.Add(1) }

// TokenOpen reports whether token can be published to as this store knows
// it: nil, ErrTokenUnknown or ErrTokenRevoked (or a storage error). It is
// MailboxByToken's answer without the mailbox, served from memory for a
// token already seen open.
func (s *Store) TokenOpen(token string) error {
	h := string(Hash(token))
	if s.live.has(h) {
		return nil
	}
	gen := s.live.gen.Load()
	mb, err := s.MailboxByToken(token)
	if err != nil {
		return err
	}
	if mb.Revoked() {
		return ErrTokenRevoked
	}
	s.live.add(h, gen)
	return nil
}
