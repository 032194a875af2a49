package mailbox

import (
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
)

// OutboxStats returns how many receipts wait in the outbox and the time
// (unix ns) the oldest of them was decided, 0 when the outbox is empty.
// It reads every outbox key (not the values) and each mailbox's oldest
// entry: meant for a metrics scrape, not for a hot path.
func (s *Store) OutboxStats() (depth int, oldest int64, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: outboxPrefix()})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			depth++
		}
		return nil
	})
	if err != nil {
		return 0, 0, s.readErr(err, nil)
	}
	if depth == 0 {
		return 0, 0, nil
	}
	heads, err := s.OutboxHeads("", 0)
	if err != nil {
		return 0, 0, err
	}
	for _, h := range heads {
		if oldest == 0 || h.At < oldest {
			oldest = h.At
		}
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
