package mailbox

import (
	"bytes"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
)

// OutboxStats returns how many receipts wait in the outbox and the time
// (unix ns) the oldest of them was decided, 0 when the outbox is empty.
// One pass over the outbox keys in one transaction: a value is read only
// for each mailbox's first key, its oldest entry (keys are o/{mailbox}/{seq},
// in seq order). Meant for a metrics scrape, not for a hot path.
func (s *Store) OutboxStats() (depth int, oldest int64, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: outboxPrefix()})
		defer it.Close()
		var mailbox []byte // the current key's mailbox part: o/{mailbox}/
		for it.Rewind(); it.Valid(); it.Next() {
			depth++
			k := it.Item().Key()
			if len(k) < 8 || bytes.Equal(k[:len(k)-8], mailbox) {
				continue
			}
			mailbox = append(mailbox[:0], k[:len(k)-8]...)
			var e OutboxEntry
			if err := it.Item().Value(func(v []byte) error { return unmarshal(v, &e) }); err != nil {
				return err
			}
			if oldest == 0 || e.At < oldest {
				oldest = e.At
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, s.readErr(err, nil)
	}
	return depth, oldest, nil
}

// DiskSize returns the bytes of the store's files: the LSM tree (sst
// files, the manifest, the memtables' logs) and the value log. It reads
// the directory (badger's own Size needs its metrics, which the store
// turns off): meant for a metrics scrape.
func (s *Store) DiskSize() (lsm, vlog int64, err error) {
	dir := s.db.Opts().Dir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue // gone since the listing (a compaction), or not a file
		}
		if filepath.Ext(e.Name()) == ".vlog" {
			vlog += info.Size()
		} else {
			lsm += info.Size()
		}
	}
	return lsm, vlog, nil
}
