package mailbox

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// iterPrefix calls fn for every key with prefix and its value, in key order.
// k and v are valid only during the call.
func iterPrefix(txn *badger.Txn, prefix []byte, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

// iterKeys calls fn for every key with prefix, in key order, without reading
// values, until fn returns false. k is valid only during the call.
func iterKeys(txn *badger.Txn, prefix []byte, fn func(k []byte) bool) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if !fn(it.Item().Key()) {
			break
		}
	}
	return nil
}

// streamRange returns the messages of the user's stream with from < seq <= to
// (to == 0: to the end), at most limit of them (0: all).
func streamRange(txn *badger.Txn, userID string, from, to Seq, limit int) ([]Message, error) {
	prefix := streamPrefix(userID)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	var out []Message
	for it.Seek(streamKey(userID, from+1)); it.Valid(); it.Next() {
		item := it.Item()
		if to != 0 && Seq(be64dec(item.Key()[len(prefix):])) > to {
			break
		}
		var m Message
		if err := item.Value(func(v []byte) error { return decodeMessage(v, &m) }); err != nil {
			return nil, err
		}
		out = append(out, m)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

func unmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("mailbox: decode %T: %w", v, err)
	}
	return nil
}

func be64dec(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// getMessage reads one message of a user's stream; absent is
// badger.ErrKeyNotFound, unwrapped.
func getMessage(txn *badger.Txn, user string, seq Seq, m *Message) error {
	item, err := txn.Get(streamKey(user, seq))
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error { return decodeMessage(v, m) })
}
