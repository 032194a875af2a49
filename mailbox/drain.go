package mailbox

import (
	"bytes"

	"github.com/dgraph-io/badger/v4"
)

// Drains. A revoke and a user's deletion take effect in one command whose
// size does not grow with the data behind them; the data goes afterwards,
// in bounded steps, so that no mailbox or user is ever too large to revoke
// or delete (one command is one badger transaction, which holds about a
// hundred thousand keys: with badger's defaults about 20,000 pending
// messages, each ending with its receipt).
//
// The command leaves a marker, and does a first step of up to drainStep
// messages itself, so a small mailbox or user is gone at once. Every Expire
// command then goes on where the last step stopped, within its Limit, and
// NextDeadline reports work due while any marker is left, so the leader's
// expiry loop proposes Expires until the drains are done. The markers are
// state like any other: a snapshot carries them and a restart replays the
// same steps, so every node drains alike.
//
//	V/{user}     a deleted user, still draining (userDrain, JSON: when it
//	             was deleted): its messages, then its mailboxes (tokens,
//	             topics, idempotency keys, the records), then its devices.
//	             The deletion itself rewrites no mailbox: a mailbox whose
//	             user is gone opens nothing and reads as revoked as of the
//	             deletion (liveMailbox, receiptLog, MailboxByToken)
//	v/{mailbox}  a revoked mailbox, still draining (mailboxDrain, JSON): its
//	             messages in the user's stream, then its topic records
//
// Meanwhile a revoked mailbox's pending messages are still in the stream,
// and a device may be sent one; whatever ends such a message (an ack, its
// TTL, the drain) ends it revoked, as of the revoke (finish).

// drainStep is how many messages a revoke or a user's deletion ends in its
// own command: about a megabyte of writes at most.
const drainStep = 256

// drainScan is how many stream entries of other mailboxes a revoke's drain
// passes over per message it may end.
const drainScan = 8

func drainUserKey(user string) []byte  { return key(tagDrainUser, []byte(user)) }
func drainMailboxKey(mb string) []byte { return key(tagDrainMailbox, []byte(mb)) }

// userDrain is a deleted user's marker. A marker of an older version is
// empty: its deletion time is unknown, and the drain's own clock stands in.
type userDrain struct {
	DeletedAt int64 `json:"deleted_at"`
}

// userDeletedAt reports whether user was deleted and is still draining, and
// when it was deleted.
func userDeletedAt(txn *badger.Txn, user string) (at int64, deleted bool, err error) {
	item, err := txn.Get(drainUserKey(user))
	if ok, err := found(err); err != nil || !ok {
		return 0, false, err
	}
	var d userDrain
	err = item.Value(func(v []byte) error {
		if len(v) == 0 {
			return nil
		}
		return unmarshal(v, &d)
	})
	return d.DeletedAt, true, err
}

// mailboxDrain is where a revoked mailbox's drain stands: the user's stream
// is read from Next (exclusive) to Through, the stream's end at the revoke
// (nothing of the mailbox comes after it).
type mailboxDrain struct {
	UserID  string `json:"user_id"`
	Next    Seq    `json:"next"`
	Through Seq    `json:"through"`
}

// drains runs the drains left, deleted users first, each as far as budget
// allows. It reports how much of the budget it used, and whether drains
// remain.
func (a *applier) drains(budget int) (used int, more bool, err error) {
	for _, tag := range []byte{tagDrainUser, tagDrainMailbox} {
		prefix := []byte{tag, '/'}
		var ids []string
		err := iterKeys(a.txn, prefix, func(k []byte) bool {
			if len(ids) > budget-used {
				return false // one more than can be worked on: there is more
			}
			ids = append(ids, string(k[len(prefix):]))
			return true
		})
		if err != nil {
			return used, false, err
		}
		for _, id := range ids {
			if used >= budget {
				return used, true, nil
			}
			var n int
			var done bool
			if tag == tagDrainUser {
				n, done, err = a.drainUser(id, budget-used)
			} else {
				var d mailboxDrain
				if err := getJSON(a.txn, drainMailboxKey(id), &d); err != nil {
					return used, false, err
				}
				n, done, err = a.drainMailbox(id, &d, budget-used)
			}
			used += n
			if err != nil || !done {
				return used, err == nil, err
			}
		}
	}
	return used, false, nil
}

// drainMailbox ends up to budget of revoked mailbox mb's pending messages,
// revoked, passing over at most drainScan*budget stream entries; once the
// stream is done, it deletes the mailbox's topic records and the marker.
// The marker is written back while work remains.
func (a *applier) drainMailbox(mb string, d *mailboxDrain, budget int) (used int, done bool, err error) {
	if budget <= 0 {
		return 0, false, nil
	}
	if d.Next < d.Through {
		scan := drainScan * budget
		msgs, err := streamRange(a.txn, d.UserID, d.Next, d.Through, scan)
		if err != nil {
			return 0, false, err
		}
		through := len(msgs) < scan
		for _, m := range msgs {
			if used == budget {
				through = false // stopped before the end of what was read
				break
			}
			d.Next = m.Seq
			if m.MailboxID == mb {
				if err := a.dropMessage(m, StateRevoked, ""); err != nil {
					return used, false, err
				}
				used++
			}
		}
		if through {
			d.Next = d.Through
		}
	}
	if d.Next >= d.Through && used < budget {
		n, complete, err := a.deleteSome(key(tagTopic, []byte(mb), nil), budget-used)
		used += n
		if err != nil {
			return used, false, err
		}
		if complete {
			return used, true, a.txn.Delete(drainMailboxKey(mb))
		}
	}
	return used, false, setJSON(a.txn, drainMailboxKey(mb), d)
}

// drainUser removes up to budget of deleted user's things: its messages
// (ending revoked), then its mailboxes with their topic records and
// idempotency keys, then its devices, and last the marker. The outbox keeps
// the receipts, with their URL and secret, after the mailboxes are gone.
func (a *applier) drainUser(user string, budget int) (used int, done bool, err error) {
	if budget <= 0 {
		return 0, false, nil
	}
	msgs, err := streamRange(a.txn, user, 0, 0, budget)
	if err != nil {
		return 0, false, err
	}
	for _, m := range msgs {
		if err := a.dropMessage(m, StateRevoked, ""); err != nil {
			return used, false, err
		}
		used++
	}
	if len(msgs) == budget {
		return used, false, nil
	}
	prefix := userMailboxPrefix(user)
	var mbs [][]byte
	if err := iterKeys(a.txn, prefix, func(k []byte) bool {
		mbs = append(mbs, bytes.Clone(k))
		return len(mbs) <= budget-used
	}); err != nil {
		return used, false, err
	}
	// One iterator for every mailbox's records, sought to each: badger
	// copies and sorts a write transaction's pending writes for every
	// iterator made in it, and one per mailbox made a step over thousands
	// of mailboxes quadratic.
	it := a.txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	for _, k := range mbs {
		if used >= budget {
			return used, false, nil
		}
		mbID := string(k[len(prefix):])
		var mb Mailbox
		ok, err := found(getJSON(a.txn, mailboxKey(mbID), &mb))
		if err != nil {
			return used, false, err
		}
		if ok {
			for _, p := range [][]byte{key(tagTopic, []byte(mbID), nil), key(tagIdem, []byte(mbID), nil)} {
				n, complete, err := a.deleteSeek(it, p, budget-used)
				used += n
				if err != nil || !complete {
					return used, false, err
				}
			}
			if err := a.forgetReceiptLog(mbID); err != nil {
				return used, false, err
			}
			for _, k := range [][]byte{tokenKey(mb.TokenHash), mailboxKey(mbID), drainMailboxKey(mbID)} {
				if err := a.txn.Delete(k); err != nil {
					return used, false, err
				}
			}
		}
		if err := a.txn.Delete(k); err != nil {
			return used, false, err
		}
		used++
	}
	it.Close()
	n, complete, err := a.deleteSome(devicePrefix(user), budget-used)
	used += n
	if err != nil || !complete {
		return used, false, err
	}
	return used, true, a.txn.Delete(drainUserKey(user))
}

// deleteSome deletes up to n keys with prefix, and reports whether none is
// left.
func (a *applier) deleteSome(prefix []byte, n int) (deleted int, complete bool, err error) {
	var keys [][]byte
	if err := iterKeys(a.txn, prefix, func(k []byte) bool {
		keys = append(keys, bytes.Clone(k))
		return len(keys) <= n
	}); err != nil {
		return 0, false, err
	}
	complete = len(keys) <= n
	keys = keys[:min(n, len(keys))]
	for _, k := range keys {
		if err := a.txn.Delete(k); err != nil {
			return deleted, false, err
		}
		deleted++
	}
	return deleted, complete, nil
}

// deleteSeek is deleteSome through an open iterator: it deletes up to n
// keys with prefix, and reports whether none is left. Keys deleted since the
// iterator was made are still listed, so each prefix is passed only once.
func (a *applier) deleteSeek(it *badger.Iterator, prefix []byte, n int) (deleted int, complete bool, err error) {
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if deleted == n {
			return deleted, false, nil
		}
		if err := a.txn.Delete(it.Item().KeyCopy(nil)); err != nil {
			return deleted, false, err
		}
		deleted++
	}
	return deleted, true, nil
}

// draining reports whether any drain is left: NextDeadline's "due now".
func draining(txn *badger.Txn) (bool, error) {
	for _, tag := range []byte{tagDrainUser, tagDrainMailbox} {
		any := false
		if err := iterKeys(txn, []byte{tag, '/'}, func([]byte) bool { any = true; return false }); err != nil {
			return false, err
		}
		if any {
			return true, nil
		}
	}
	return false, nil
}
