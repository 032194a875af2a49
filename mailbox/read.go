package mailbox

import (
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// Reads. Each runs in its own read-only badger transaction: a consistent view.

// Authenticate returns the user that secret belongs to. A malformed secret,
// an unknown user and a wrong secret are all ErrUserUnknown.
func (s *Store) Authenticate(secret string) (User, error) {
	return User{}, errors.New("TODO")
}

// User returns the user with that id, or ErrUserUnknown.
func (s *Store) User(id string) (User, error) { return User{}, errors.New("TODO") }

// MailboxByToken returns the mailbox a token opens, revoked or not, or ErrTokenUnknown.
func (s *Store) MailboxByToken(token string) (Mailbox, error) { return Mailbox{}, errors.New("TODO") }

// Mailbox returns the user's mailbox with that id, or ErrMailboxUnknown
// (also when it exists but belongs to another user).
func (s *Store) Mailbox(userID, id string) (Mailbox, error) { return Mailbox{}, errors.New("TODO") }

// Mailboxes returns the user's mailboxes, revoked ones included, by id.
func (s *Store) Mailboxes(userID string) ([]Mailbox, error) { return nil, errors.New("TODO") }

// Status returns a message's status, or ErrMessageUnknown.
func (s *Store) Status(id string) (MessageStatus, error) { return MessageStatus{}, errors.New("TODO") }

// Messages returns up to limit unexpired messages of the user's stream with
// seq > after, in seq order. now (unix ns) decides what has expired.
func (s *Store) Messages(userID string, after Seq, limit int, now int64) ([]Message, error) {
	return nil, errors.New("TODO")
}

// Devices returns the user's devices, by id.
func (s *Store) Devices(userID string) ([]Device, error) { return nil, errors.New("TODO") }

// NextDeadline returns the earliest time at which an Expire command has work:
// a message's TTL or a kept record's window ends. ok is false when there is none.
func (s *Store) NextDeadline() (at int64, ok bool, err error) { return 0, false, errors.New("TODO") }

var _ = fmt.Sprintf
var _ = badger.ErrKeyNotFound
var _ io.Reader
