package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/dgraph-io/badger/v4"
)

// Receipts are state. The command that decides a message's fate (an ack, an
// expiry, a replacing publish, a revoke, a user's deletion) also appends one
// receipt to its mailbox's receipt log and, when the mailbox has a receipt
// URL, puts it in the outbox. Both happen in the entry's one transaction, so
// a fate is never decided without its receipt, on any node, after any crash.
//
// The receipt log (r/) is what apps long-poll; it is kept StatusRetention,
// like statuses. The outbox (o/) is what the leader's dispatcher POSTs; an
// entry leaves it by a SettleReceipts command, sent or given up. Entries
// carry their URL and signing secret, so that the receipts of a deleted
// user's mailboxes still go out after the mailbox itself is gone.

// Receipt tells an app the fate of one of its messages. Every message gets
// exactly one.
type Receipt struct {
	// Seq numbers the mailbox's receipts from 1, in the order the fates were
	// decided; it is the long-poll cursor and the webhook's per-mailbox order.
	Seq        uint64 `json:"seq"`
	MailboxID  string `json:"mailbox_id"`
	MessageID  string `json:"message_id"`
	State      State  `json:"state"`
	At         int64  `json:"at"`                    // unix ns: when the fate was decided
	DeviceID   string `json:"device_id,omitempty"`   // delivered: the device whose ack decided it
	ReplacedBy string `json:"replaced_by,omitempty"` // replaced: the newer message
}

// ID is the receipt's stable id: the same on every node and every resend,
// so an app drops duplicates by it.
func (r Receipt) ID() string { return r.MailboxID + "." + strconv.FormatUint(r.Seq, 10) }

// OutboxEntry is a receipt waiting to be POSTed to its mailbox's URL.
type OutboxEntry struct {
	Receipt
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// WebhookState is where a receipt's webhook delivery stands.
type WebhookState string

// The webhook states. A status records pending; reads tell sent from pending
// by whether the outbox still holds the receipt.
const (
	WebhookPending WebhookState = "pending" // in the outbox
	WebhookSent    WebhookState = "sent"    // the endpoint answered 2xx
	WebhookFailed  WebhookState = "failed"  // the dispatcher gave up after its retry period
)

// SettleReceipts takes receipts out of the outbox. The leader's dispatcher
// proposes it when an endpoint accepted a batch, or when it gave up.
type SettleReceipts struct {
	Items []Settle `json:"items"`
}

// Settle removes the outbox entries of one mailbox with From <= seq <=
// Through. With Failed, the statuses of their messages also record that the
// webhook failed. Entries already gone are skipped: settling is idempotent.
type Settle struct {
	MailboxID string `json:"mailbox_id"`
	From      uint64 `json:"from"`
	Through   uint64 `json:"through"`
	Failed    bool   `json:"failed,omitempty"`
}

func receiptSeqKey(mb string) []byte { return key(tagReceiptSeq, []byte(mb)) }
func receiptKey(mb string, seq uint64) []byte {
	return key(tagReceipt, []byte(mb), be64(seq))
}
func receiptPrefix(mb string) []byte { return key(tagReceipt, []byte(mb), nil) }
func outboxKey(mb string, seq uint64) []byte {
	return key(tagOutbox, []byte(mb), be64(seq))
}
func outboxMailboxPrefix(mb string) []byte { return key(tagOutbox, []byte(mb), nil) }
func outboxPrefix() []byte                 { return []byte{tagOutbox, '/'} }

// receiptLog is one mailbox's receipt counter and target, read once per
// Apply and written back at its end.
type receiptLog struct {
	mb    Mailbox
	last  uint64
	dirty bool
}

// receiptLog returns the mailbox's log state, or nil if the mailbox is gone.
func (a *applier) receiptLog(mbID string) (*receiptLog, error) {
	if l, ok := a.logs[mbID]; ok {
		return l, nil
	}
	l := new(receiptLog)
	if ok, err := found(getJSON(a.txn, mailboxKey(mbID), &l.mb)); err != nil {
		return nil, err
	} else if !ok {
		l = nil
	} else {
		if !l.mb.Revoked() {
			// A deleted user's mailboxes are not rewritten at the
			// deletion (drain.go): they read as revoked from then on.
			at, deleted, err := userDeletedAt(a.txn, l.mb.UserID)
			if err != nil {
				return nil, err
			}
			if deleted {
				l.mb.RevokedAt = at
			}
		}
		item, err := a.txn.Get(receiptSeqKey(mbID))
		if ok, err := found(err); err != nil {
			return nil, err
		} else if ok {
			if err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("mailbox: receipt counter of %d bytes", len(v))
				}
				l.last = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return nil, err
			}
		}
	}
	if a.logs == nil {
		a.logs = make(map[string]*receiptLog)
	}
	a.logs[mbID] = l
	return l, nil
}

// recordReceipt appends st's receipt to its mailbox's log and outbox and
// notes it in st. st is final.
func (a *applier) recordReceipt(st *MessageStatus) (*Receipt, *Mailbox, error) {
	l, err := a.receiptLog(st.MailboxID)
	if err != nil || l == nil {
		// A mailbox outlives its pending messages (deleteUser drops them
		// first), so nil means a broken store; there is no one to tell.
		return nil, nil, err
	}
	l.last++
	l.dirty = true
	r := Receipt{
		Seq: l.last, MailboxID: st.MailboxID, MessageID: st.ID, State: st.State,
		At: st.FinalAt, DeviceID: st.DeliveredTo, ReplacedBy: st.ReplacedBy,
	}
	rk := receiptKey(r.MailboxID, r.Seq)
	if err := setJSON(a.txn, rk, r); err != nil {
		return nil, nil, err
	}
	if err := a.collectAt(a.at+int64(a.policy.StatusRetention), rk); err != nil {
		return nil, nil, err
	}
	st.Receipt = r.Seq
	if l.mb.ReceiptURL != "" {
		e := OutboxEntry{Receipt: r, URL: l.mb.ReceiptURL, Secret: l.mb.ReceiptSecret}
		if err := setJSON(a.txn, outboxKey(r.MailboxID, r.Seq), e); err != nil {
			return nil, nil, err
		}
		st.Webhook = WebhookPending
	}
	mb := l.mb
	return &r, &mb, nil
}

// forgetReceiptLog drops a deleted mailbox's counter: no receipt is made for
// it again, and its id is never reused.
func (a *applier) forgetReceiptLog(mbID string) error {
	if a.logs == nil {
		a.logs = make(map[string]*receiptLog)
	}
	a.logs[mbID] = nil
	return a.txn.Delete(receiptSeqKey(mbID))
}

// flushReceiptLogs writes back the counters that moved.
func (a *applier) flushReceiptLogs() error {
	for id, l := range a.logs {
		if l != nil && l.dirty {
			if err := a.txn.Set(receiptSeqKey(id), be64(l.last)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *applier) settleReceipts(c *SettleReceipts) (Result, error) {
	for _, it := range c.Items {
		if !ValidID(it.MailboxID) || it.From > it.Through {
			return refuse(ErrInvalid, "settle receipts of mailbox %q", it.MailboxID), nil
		}
	}
	for _, it := range c.Items {
		var keys [][]byte
		var entries []OutboxEntry
		prefix := outboxMailboxPrefix(it.MailboxID)
		opts := badger.IteratorOptions{Prefix: prefix, PrefetchValues: it.Failed}
		iter := a.txn.NewIterator(opts)
		for iter.Seek(outboxKey(it.MailboxID, it.From)); iter.Valid(); iter.Next() {
			item := iter.Item()
			if be64dec(item.Key()[len(prefix):]) > it.Through {
				break
			}
			keys = append(keys, item.KeyCopy(nil))
			if it.Failed {
				var e OutboxEntry
				if err := item.Value(func(v []byte) error { return unmarshal(v, &e) }); err != nil {
					iter.Close()
					return Result{}, err
				}
				entries = append(entries, e)
			}
		}
		iter.Close()
		for _, e := range entries {
			if err := a.webhookFailed(e.MessageID); err != nil {
				return Result{}, err
			}
		}
		for _, k := range keys {
			if err := a.txn.Delete(k); err != nil {
				return Result{}, err
			}
		}
	}
	return Result{}, nil
}

// webhookFailed records in a message's final status that its receipt's
// webhook was given up. A status already collected stays gone.
func (a *applier) webhookFailed(messageID string) error {
	var st MessageStatus
	item, err := a.txn.Get(statusKey(messageID))
	if ok, err := found(err); err != nil || !ok {
		return err
	}
	v, err := item.ValueCopy(nil)
	if err != nil || len(v) == 0 || v[0] == pendingRecord {
		return err
	}
	if err := unmarshal(v, &st); err != nil {
		return err
	}
	st.Webhook, st.WebhookFailedAt = WebhookFailed, a.at
	return setJSON(a.txn, statusKey(messageID), st)
}

// ---- reads ----

// Receipts returns up to limit (0: all) receipts of the mailbox with seq >
// after, in order. Receipts older than StatusRetention are gone.
func (s *Store) Receipts(mailboxID string, after uint64, limit int) ([]Receipt, error) {
	var out []Receipt
	err := s.db.View(func(txn *badger.Txn) error {
		return iterFrom(txn, receiptPrefix(mailboxID), receiptKey(mailboxID, after+1), func(_, v []byte) (bool, error) {
			var r Receipt
			if err := unmarshal(v, &r); err != nil {
				return false, err
			}
			out = append(out, r)
			return limit == 0 || len(out) < limit, nil
		})
	})
	return out, s.readErr(err, nil)
}

// LastReceipt returns the seq of the mailbox's newest receipt, 0 if none was
// ever made.
func (s *Store) LastReceipt(mailboxID string) (uint64, error) {
	var last uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(receiptSeqKey(mailboxID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) == 8 {
				last = binary.BigEndian.Uint64(v)
			}
			return nil
		})
	})
	return last, s.readErr(err, nil)
}

// Outbox returns up to limit (0: all) outbox entries of the mailbox with seq
// > after, in order.
func (s *Store) Outbox(mailboxID string, after uint64, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.db.View(func(txn *badger.Txn) error {
		return iterFrom(txn, outboxMailboxPrefix(mailboxID), outboxKey(mailboxID, after+1), func(_, v []byte) (bool, error) {
			var e OutboxEntry
			if err := unmarshal(v, &e); err != nil {
				return false, err
			}
			out = append(out, e)
			return limit == 0 || len(out) < limit, nil
		})
	})
	return out, s.readErr(err, nil)
}

// OutboxHeads returns the oldest outbox entry of each mailbox whose id sorts
// after the given one, up to limit mailboxes, by mailbox id: where a
// dispatcher starts.
func (s *Store) OutboxHeads(after string, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: outboxPrefix()})
		defer it.Close()
		// Mailbox ids have no '/' and one length, so "o/{id}0" sorts right
		// after every key of mailbox id.
		seek := outboxPrefix()
		if after != "" {
			seek = append(outboxMailboxPrefix(after)[:len(outboxMailboxPrefix(after))-1], '0')
		}
		for it.Seek(seek); it.Valid(); {
			var e OutboxEntry
			if err := it.Item().Value(func(v []byte) error { return unmarshal(v, &e) }); err != nil {
				return err
			}
			out = append(out, e)
			if limit > 0 && len(out) == limit {
				return nil
			}
			p := outboxMailboxPrefix(e.MailboxID)
			it.Seek(append(p[:len(p)-1], '0'))
		}
		return nil
	})
	return out, s.readErr(err, nil)
}

// iterFrom calls fn for the keys with prefix from start on, with their
// values, until fn returns false.
func iterFrom(txn *badger.Txn, prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Seek(start); it.Valid(); it.Next() {
		item := it.Item()
		var more bool
		if err := item.Value(func(v []byte) error {
			var err error
			more, err = fn(item.Key(), v)
			return err
		}); err != nil || !more {
			return err
		}
	}
	return nil
}
