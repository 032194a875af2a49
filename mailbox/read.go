package mailbox

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Reads. Each runs in its own read-only badger transaction: a consistent view
// of the state at some applied index.

// Authenticate returns the user that secret belongs to, comparing hashes in
// constant time. A malformed secret, an unknown user and a wrong secret are
// all ErrUserUnknown.
func (s *Store) Authenticate(secret string) (User, error) {
	id := SecretUser(secret)
	if id == "" {
		return User{}, ErrUserUnknown
	}
	u, err := s.User(id)
	if err != nil {
		return User{}, err
	}
	if !hashEqual(Hash(secret), u.SecretHash) {
		return User{}, ErrUserUnknown
	}
	return u, nil
}

// User returns the user with that id, or ErrUserUnknown.
func (s *Store) User(id string) (User, error) {
	var u User
	return u, s.get(userKey(id), &u, ErrUserUnknown)
}

// MailboxByToken returns the mailbox a token opens, revoked or not, or
// ErrTokenUnknown, also when the mailbox's user was deleted and its
// mailboxes are still draining.
func (s *Store) MailboxByToken(token string) (Mailbox, error) {
	var mb Mailbox
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(tokenKey(Hash(token)))
		if err != nil {
			return err
		}
		id, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if err := getJSON(txn, mailboxKey(string(id)), &mb); err != nil {
			return err
		}
		_, err = txn.Get(userKey(mb.UserID))
		return err
	})
	return mb, s.readErr(err, ErrTokenUnknown)
}

// Mailbox returns the user's mailbox with that id, or ErrMailboxUnknown, also
// when it exists but belongs to another user.
func (s *Store) Mailbox(userID, id string) (Mailbox, error) {
	var mb Mailbox
	if err := s.get(mailboxKey(id), &mb, ErrMailboxUnknown); err != nil {
		return Mailbox{}, err
	}
	if mb.UserID != userID {
		return Mailbox{}, ErrMailboxUnknown
	}
	return mb, nil
}

// Mailboxes returns the user's mailboxes, revoked ones included, by id.
func (s *Store) Mailboxes(userID string) ([]Mailbox, error) {
	var out []Mailbox
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := userMailboxPrefix(userID)
		var ids []string
		iterKeys(txn, prefix, func(k []byte) bool {
			ids = append(ids, string(k[len(prefix):]))
			return true
		})
		var err error
		out, err = readMailboxes(txn, userID, ids)
		return err
	})
	return out, s.readErr(err, nil)
}

// readMailboxes reads the user's mailboxes with these ids, in order.
func readMailboxes(txn *badger.Txn, userID string, ids []string) ([]Mailbox, error) {
	var out []Mailbox
	for _, id := range ids {
		var mb Mailbox
		if err := getJSON(txn, mailboxKey(id), &mb); err != nil {
			return nil, fmt.Errorf("mailbox %s of user %s: %w", id, userID, err)
		}
		out = append(out, mb)
	}
	return out, nil
}

// Status returns a message's status, or ErrMessageUnknown.
func (s *Store) Status(id string) (MessageStatus, error) {
	var st MessageStatus
	err := s.db.View(func(txn *badger.Txn) error {
		var ok bool
		var err error
		st, ok, err = readStatus(txn, id)
		if err == nil && !ok {
			return ErrMessageUnknown
		}
		return err
	})
	if errors.Is(err, ErrMessageUnknown) {
		return st, err
	}
	return st, s.readErr(err, nil)
}

// readStatus reads a status record: a final status, or a pointer to the
// pending message from which the status is derived.
func readStatus(txn *badger.Txn, id string) (st MessageStatus, ok bool, err error) {
	item, err := txn.Get(statusKey(id))
	if ok, err := found(err); err != nil || !ok {
		return st, false, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return st, false, err
	}
	if len(v) > 0 && v[0] == pendingRecord {
		user, seq, err := decodePending(v)
		if err != nil {
			return st, false, fmt.Errorf("mailbox: status %s: %w", id, err)
		}
		var m Message
		if err := getMessage(txn, user, seq, &m); err != nil {
			return st, false, fmt.Errorf("mailbox: status %s: pending message %s/%d: %w", id, user, seq, err)
		}
		return statusOf(&m), true, nil
	}
	if err := unmarshal(v, &st); err != nil {
		return st, false, err
	}
	if st.Webhook == WebhookPending {
		if _, err := txn.Get(outboxKey(st.MailboxID, st.Receipt)); errors.Is(err, badger.ErrKeyNotFound) {
			st.Webhook = WebhookSent
		} else if err != nil {
			return st, false, err
		}
	}
	return st, true, nil
}

// Messages returns up to limit (0: all) unexpired messages of the user's
// stream with seq > after, in seq order. now (unix ns) decides what has
// expired: reads may run ahead of the Expire command that removes them.
func (s *Store) Messages(userID string, after Seq, limit int, now int64) ([]Message, error) {
	var out []Message
	err := s.db.View(func(txn *badger.Txn) error {
		for {
			msgs, err := streamRange(txn, userID, after, 0, limit)
			if err != nil || len(msgs) == 0 {
				return err
			}
			for _, m := range msgs {
				if !m.Expired(now) {
					out = append(out, m)
				}
			}
			if limit == 0 || len(out) >= limit || len(msgs) < limit {
				return nil
			}
			after = msgs[len(msgs)-1].Seq
		}
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, s.readErr(err, nil)
}

// Devices returns the user's devices, by id.
func (s *Store) Devices(userID string) ([]Device, error) {
	var out []Device
	err := s.db.View(func(txn *badger.Txn) error {
		return iterPrefix(txn, devicePrefix(userID), func(_, v []byte) error {
			var d Device
			if err := unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	return out, s.readErr(err, nil)
}

// NextDeadline returns the earliest time at which an Expire command has work:
// a message's TTL or a kept record's window ends, or 0 while a revoked
// mailbox or a deleted user is still draining (drain.go). ok is false when
// there is none.
func (s *Store) NextDeadline() (at int64, ok bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		if d, err := draining(txn); err != nil || d {
			at, ok = 0, d
			return err
		}
		for _, p := range [][]byte{expiryPrefix(), garbagePrefix()} {
			iterKeys(txn, p, func(k []byte) bool {
				if len(k) >= 10 {
					t := int64(be64dec(k[2:10]))
					if !ok || t < at {
						at, ok = t, true
					}
				}
				return false
			})
		}
		return nil
	})
	return at, ok, s.readErr(err, nil)
}

// get reads one JSON record, mapping absence to notFound.
func (s *Store) get(k []byte, v any, notFound error) error {
	return s.readErr(s.db.View(func(txn *badger.Txn) error { return getJSON(txn, k, v) }), notFound)
}

// readErr maps badger's not-found to the caller's sentinel and wraps the rest.
func (s *Store) readErr(err, notFound error) error {
	if err == nil {
		return nil
	}
	if notFound != nil && errors.Is(err, badger.ErrKeyNotFound) {
		return notFound
	}
	return fmt.Errorf("mailbox: read: %w", err)
}
