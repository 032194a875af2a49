package mailbox

import (
	"bytes"

	"github.com/dgraph-io/badger/v4"
)

// Listings for operators and users. Each is a page in key order that starts after a
// given id, read in one read-only transaction, so a page is consistent but
// pages are not with each other.

// Users returns up to limit users (at least 1, at most 1000) with an id
// greater than after, by id.
func (s *Store) Users(after string, limit int) ([]User, error) {
	var out []User
	err := s.db.View(func(txn *badger.Txn) error {
		return pageJSON(txn, []byte{tagUser, '/'}, after, limit, func(v []byte) error {
			var u User
			if err := unmarshal(v, &u); err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	return out, s.readErr(err, nil)
}

// AllMailboxes returns up to limit mailboxes of every user (at least 1, at
// most 1000) with an id greater than after, by id; revoked ones included.
func (s *Store) AllMailboxes(after string, limit int) ([]Mailbox, error) {
	var out []Mailbox
	err := s.db.View(func(txn *badger.Txn) error {
		return pageJSON(txn, []byte{tagMailbox, '/'}, after, limit, func(v []byte) error {
			var mb Mailbox
			if err := unmarshal(v, &mb); err != nil {
				return err
			}
			out = append(out, mb)
			return nil
		})
	})
	return out, s.readErr(err, nil)
}

// pageJSON calls fn with the values of up to limit keys under prefix whose
// rest is greater than after.
func pageJSON(txn *badger.Txn, prefix []byte, after string, limit int, fn func(v []byte) error) error {
	limit = min(max(limit, 1), 1000)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(limit, 100)})
	defer it.Close()
	start := append(append([]byte(nil), prefix...), after...)
	n := 0
	for it.Seek(start); it.Valid() && n < limit; it.Next() {
		item := it.Item()
		if string(item.Key()[len(prefix):]) <= after && after != "" {
			continue // the key of after itself
		}
		if err := item.Value(fn); err != nil {
			return err
		}
		n++
	}
	return nil
}

// UserMailboxes returns up to limit of the user's mailboxes (at least 1, at
// most 1000) with an id greater than after, by id; revoked ones included.
func (s *Store) UserMailboxes(userID, after string, limit int) ([]Mailbox, error) {
	limit = min(max(limit, 1), 1000)
	var out []Mailbox
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := userMailboxPrefix(userID)
		var ids []string
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		for it.Seek(append(bytes.Clone(prefix), after...)); it.Valid() && len(ids) < limit; it.Next() {
			if id := string(it.Item().Key()[len(prefix):]); id > after {
				ids = append(ids, id)
			}
		}
		it.Close()
		var err error
		out, err = readMailboxes(txn, userID, ids)
		return err
	})
	return out, s.readErr(err, nil)
}

// UserDevices returns up to limit of the user's devices (at least 1, at
// most 1000) with an id greater than after, by id.
func (s *Store) UserDevices(userID, after string, limit int) ([]Device, error) {
	var out []Device
	err := s.db.View(func(txn *badger.Txn) error {
		return pageJSON(txn, devicePrefix(userID), after, limit, func(v []byte) error {
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
